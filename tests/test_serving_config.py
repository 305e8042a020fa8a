"""TF Serving deployment files: models.config, batching, Docker, Kubernetes."""

import os
import shutil
import socket
import subprocess
import sys
import time

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory
from google.protobuf import text_format
import pytest
from tensorflow_serving.config import model_server_config_pb2
import yaml

from schema import contract
from schema import layout
from schema import settings
from serving import tf_serving_config
from serving.server import batching

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVING = os.path.join(REPO, "serving")
KUBERNETES = os.path.join(SERVING, "kubernetes")
VERSION = "1795745553"  # The Pusher names versions by push time.


def _push(base, name, *versions):
  for version in versions:
    os.makedirs(os.path.join(base, name, version))
    with open(os.path.join(base, name, version, "saved_model.pb"), "wb"):
      pass


def _parse(text):
  return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def _read(*path):
  with open(os.path.join(*path)) as f:
    return f.read()


def test_models_config_lists_every_pushed_model(tmp_path, caplog):
  base = str(tmp_path)
  _push(base, "cxr_binary_cnn", "1", "12")
  _push(base, "cxr_multiclass_vgg16", VERSION)
  os.makedirs(tmp_path / "cxr_multiclass_vgg16" / "tmp-copy")
  os.makedirs(tmp_path / "not_pushed" / "latest")  # no integer version
  os.makedirs(tmp_path / "half_pushed" / "3")  # no saved_model.pb
  (tmp_path / "models.config").write_text("an old config, not a model")

  config = _parse(tf_serving_config.models_config(base))

  models = config.model_config_list.config
  assert [m.name for m in models] == ["cxr_binary_cnn", "cxr_multiclass_vgg16"]
  for model in models:
    assert model.base_path == f"/models/{model.name}"
    assert model.model_platform == "tensorflow"
    assert model.model_version_policy.WhichOneof("policy_choice") == "latest"
    assert model.model_version_policy.latest.num_versions == 1
  warnings = [r.getMessage() for r in caplog.records
              if r.levelname == "WARNING"]
  assert len(warnings) == 2
  assert any("half_pushed" in w for w in warnings)
  assert any("not_pushed" in w for w in warnings)


def test_models_config_for_given_names_and_another_mount(tmp_path, caplog):
  _push(str(tmp_path), "a", "1")
  _push(str(tmp_path), "b", "2")
  text = tf_serving_config.models_config(
      str(tmp_path), model_names=["b", "missing"],
      container_base="gs://bucket/serving/")
  models = _parse(text).model_config_list.config
  assert [(m.name, m.base_path) for m in models] == [
      ("b", "gs://bucket/serving/b")]
  assert "missing" in caplog.text


def test_models_config_fails_clearly_without_models(tmp_path):
  with pytest.raises(FileNotFoundError, match="serving folder not found"):
    tf_serving_config.models_config(str(tmp_path / "absent"))
  os.makedirs(tmp_path / "empty_model")
  with pytest.raises(ValueError, match="no servable model"):
    tf_serving_config.models_config(str(tmp_path))


def test_models_config_lists_a_remote_folder_through_gfile(tmp_path):
  _push(str(tmp_path), "cxr_binary_cnn", "7")
  text = tf_serving_config.models_config(
      "file://" + str(tmp_path), container_base="gs://bucket/serving")
  assert [m.base_path for m in _parse(text).model_config_list.config] == [
      "gs://bucket/serving/cxr_binary_cnn"]


def test_write_and_command_line(tmp_path, capsys):
  _push(str(tmp_path), "cxr_binary_cnn_aug", VERSION)
  path = tf_serving_config.write_models_config(str(tmp_path))
  assert path == str(tmp_path / "models.config")
  # The server's container user must be able to read it.
  assert os.stat(path).st_mode & 0o044 == 0o044
  assert [m.name for m in _parse(_read(path)).model_config_list.config] == [
      "cxr_binary_cnn_aug"]

  out = tmp_path / "elsewhere.config"
  assert tf_serving_config.main([str(tmp_path), "--output", str(out),
                                 "--container-base", "/srv"]) == 0
  assert "1 models: cxr_binary_cnn_aug" in capsys.readouterr().out
  assert "base_path: \"/srv/cxr_binary_cnn_aug\"" in out.read_text()
  assert tf_serving_config.main([str(tmp_path / "absent")]) == 1
  assert "serving folder not found" in capsys.readouterr().err


def test_checked_in_models_config_is_the_generated_one(tmp_path):
  """serving/models.config: the default pipeline's pushes, both tasks."""
  for task in contract.TASKS:
    for model in settings.RunSettings().models:
      _push(str(tmp_path), layout.serving_model_name(task, model),
            VERSION)
  expected = tf_serving_config.models_config(str(tmp_path))
  assert _read(SERVING, "models.config") == expected, (
      "regenerate serving/models.config (see this test)")
  assert len(_parse(expected).model_config_list.config) == 10


def _monitoring_config_class():
  """tensorflow.serving.MonitoringConfig, declared as
  tensorflow_serving/config/monitoring_config.proto does (the wheel ships
  no such module); text parsing fails on any other field."""
  field = descriptor_pb2.FieldDescriptorProto
  proto = descriptor_pb2.FileDescriptorProto(
      name="cxr_tests/monitoring_config.proto", package="tensorflow.serving",
      syntax="proto3")
  prometheus = proto.message_type.add(name="PrometheusConfig")
  prometheus.field.add(name="enable", number=1, type=field.TYPE_BOOL,
                       label=field.LABEL_OPTIONAL)
  prometheus.field.add(name="path", number=2, type=field.TYPE_STRING,
                       label=field.LABEL_OPTIONAL)
  monitoring = proto.message_type.add(name="MonitoringConfig")
  monitoring.field.add(name="prometheus_config", number=1,
                       type=field.TYPE_MESSAGE, label=field.LABEL_OPTIONAL,
                       type_name=".tensorflow.serving.PrometheusConfig")
  pool = descriptor_pool.DescriptorPool()
  pool.AddSerializedFile(proto.SerializeToString())
  return message_factory.MessageFactory(pool).GetPrototype(
      pool.FindMessageTypeByName("tensorflow.serving.MonitoringConfig"))


def _monitoring(text):
  return text_format.Parse(text, _monitoring_config_class()())


def test_monitoring_config_turns_on_prometheus():
  config = _monitoring(_read(SERVING, "monitoring.config"))
  assert config.prometheus_config.enable
  assert config.prometheus_config.path == "/monitoring/prometheus/metrics"


def _batching(text):
  return text_format.Parse(text, batching.batching_parameters_class()())


@pytest.mark.parametrize("name,threads,batch,timeout,allowed", [
    ("batching_cpu.config", 4, 32, 0, []),
    ("batching_gpu.config", 4, 128, 2000, [1, 2, 4, 8, 16, 32, 64, 128]),
])
def test_batching_parameters(name, threads, batch, timeout, allowed):
  params = _batching(_read(SERVING, name))
  assert params.num_batch_threads.value == threads
  assert params.max_batch_size.value == batch
  assert params.batch_timeout_micros.value == timeout
  # The guide's online-serving rule: a queue as long as the thread count.
  assert params.max_enqueued_batches.value == threads
  assert not params.pad_variable_length_inputs
  assert list(params.allowed_batch_sizes) == allowed
  if allowed:  # The proto's rules: increasing, ending at max_batch_size.
    assert allowed == sorted(set(allowed)) and allowed[-1] == batch
  if name == "batching_cpu.config":
    # Every export's warm-up file sends a batch this full.
    assert max(contract.WARMUP_BATCH_SIZES) == batch


def _kubernetes():
  docs = {}
  for name in sorted(os.listdir(KUBERNETES)):
    with open(os.path.join(KUBERNETES, name)) as f:
      for doc in yaml.safe_load_all(f):
        docs[doc["kind"]] = doc
  return docs


def _flags(args):
  return dict(a[2:].split("=", 1) if "=" in a else (a[2:], True)
              for a in args)


def test_kubernetes_manifests_agree():
  docs = _kubernetes()
  assert set(docs) == {"ConfigMap", "Deployment", "Service",
                       "PersistentVolumeClaim"}
  config_map, service = docs["ConfigMap"], docs["Service"]
  pod = docs["Deployment"]["spec"]["template"]
  (container,) = pod["spec"]["containers"]
  assert container["image"] == "tensorflow/serving:2.16.1"
  flags = _flags(container["args"])
  ports = {p["name"]: p["containerPort"] for p in container["ports"]}
  assert ports == {"grpc": 8500, "http": 8501}
  assert int(flags["port"]) == ports["grpc"]
  assert int(flags["rest_api_port"]) == ports["http"]
  assert flags["enable_batching"] is True

  # Service: ClusterIP onto the pod's named ports.
  assert service["spec"]["type"] == "ClusterIP"
  assert service["spec"]["selector"].items() <= (
      pod["metadata"]["labels"].items())
  assert docs["Deployment"]["spec"]["selector"]["matchLabels"].items() <= (
      pod["metadata"]["labels"].items())
  assert {(p["name"], p["port"], p["targetPort"])
          for p in service["spec"]["ports"]} == {
              ("grpc", 8500, "grpc"), ("http", 8501, "http")}

  # Config files: the ConfigMap's keys, mounted where the flags point.
  volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
  mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
  for flag, key in (("model_config_file", "models.config"),
                    ("batching_parameters_file", "batching.config"),
                    ("monitoring_config_file", "monitoring.config")):
    folder, file_name = os.path.split(flags[flag])
    assert file_name == key
    assert volumes[mounts[folder]]["configMap"]["name"] == (
        config_map["metadata"]["name"])
  # Its contents: the checked-in files, which other tests check.
  assert config_map["data"]["models.config"] == _read(SERVING, "models.config")
  assert config_map["data"]["batching.config"] == _read(
      SERVING, "batching_cpu.config")
  assert config_map["data"]["monitoring.config"] == _read(
      SERVING, "monitoring.config")
  # A Prometheus that discovers pods scrapes TF Serving's own metrics.
  prometheus = _monitoring(config_map["data"]["monitoring.config"]
                           ).prometheus_config
  annotations = pod["metadata"]["annotations"]
  assert annotations["prometheus.io/scrape"] == "true"
  assert int(annotations["prometheus.io/port"]) == ports["http"]
  assert annotations["prometheus.io/path"] == prometheus.path

  # Models: the claim, mounted where models.config's base paths point.
  models = _parse(config_map["data"]["models.config"]).model_config_list.config
  models_volume = volumes[mounts[tf_serving_config.CONTAINER_BASE]]
  assert models_volume["persistentVolumeClaim"]["claimName"] == (
      docs["PersistentVolumeClaim"]["metadata"]["name"])
  assert {os.path.dirname(m.base_path) for m in models} == {
      tf_serving_config.CONTAINER_BASE}

  # Probes: the status of a configured model on the REST port.
  names = {m.name for m in models}
  for probe in ("startupProbe", "readinessProbe"):
    get = container[probe]["httpGet"]
    assert get["port"] in ("http", ports["http"])
    prefix, name = get["path"].rsplit("/", 1)
    assert prefix == "/v1/models" and name in names
  assert container["livenessProbe"]["tcpSocket"]["port"] in (
      "grpc", ports["grpc"])

  # Threads: TensorFlow's pools and the batch threads match the CPU cores.
  cpu = container["resources"]["limits"]["cpu"]
  assert container["resources"]["requests"]["cpu"] == cpu
  threads = _batching(config_map["data"]["batching.config"]).num_batch_threads
  assert int(cpu) == threads.value
  assert int(flags["tensorflow_intra_op_parallelism"]) == int(cpu)
  assert int(flags["tensorflow_inter_op_parallelism"]) == int(cpu)


@pytest.mark.parametrize("gpu", [False, True])
def test_docker_run_script(tmp_path, gpu):
  _push(str(tmp_path), "cxr_binary_cnn_aug", VERSION)
  env = dict(os.environ, DOCKER="echo", PYTHON=sys.executable)
  env.pop("SERVING_BASE", None)
  if gpu:
    env["GPU"] = "1"
  result = subprocess.run(
      ["bash", os.path.join(SERVING, "docker-run.sh"), str(tmp_path),
       "--file_system_poll_wait_seconds=5"],
      env=env, capture_output=True, text=True, check=True)
  *_, command = result.stdout.strip().splitlines()
  args = command.split()
  assert args[:2] == ["run", "--rm"]
  image = "tensorflow/serving:2.16.1" + ("-gpu" if gpu else "")
  assert image in args and (("--gpus" in args) == gpu)
  server_flags = _flags(args[args.index(image) + 1:])
  assert server_flags == {
      "model_config_file": "/models/models.config",
      "model_config_file_poll_wait_seconds": "60",
      "enable_batching": True,
      "batching_parameters_file": "/config/batching.config",
      "monitoring_config_file": "/config/monitoring.config",
      "file_system_poll_wait_seconds": "5"}
  batching_file = os.path.join(SERVING,
                               f"batching_{'gpu' if gpu else 'cpu'}.config")
  assert f"{tmp_path}:/models:ro" in args
  assert f"{batching_file}:/config/batching.config:ro" in args
  monitoring = os.path.join(SERVING, "monitoring.config")
  assert f"{monitoring}:/config/monitoring.config:ro" in args
  assert {"8500:8500", "8501:8501"} <= set(args)
  assert [m.name for m in _parse(_read(tmp_path, "models.config"))
          .model_config_list.config] == ["cxr_binary_cnn_aug"]


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_tensorflow_model_server_serves_the_generated_config(tmp_path):
  binary = shutil.which("tensorflow_model_server")
  if binary is None:
    pytest.skip("tensorflow_model_server is not on PATH (no pip package; "
                "serving/docker-run.sh runs it in Docker)")
  # pylint: disable=g-import-not-at-top
  import grpc
  import tensorflow as tf
  from tensorflow_serving.apis import get_model_status_pb2
  from tensorflow_serving.apis import model_service_pb2_grpc
  from tensorflow_serving.apis import predict_pb2
  from tensorflow_serving.apis import prediction_service_pb2_grpc
  # pylint: enable=g-import-not-at-top

  class Tiny(tf.Module):
    """serving_default like the cxr models': a [None] batch of strings."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string,
                                                name="images")])
    def serve(self, images):
      return {"length": tf.strings.length(images)}

  tiny = Tiny()
  base = tmp_path / "serving"
  tf.saved_model.save(tiny, str(base / "tiny" / "1"),
                      signatures={"serving_default": tiny.serve})
  config = tf_serving_config.write_models_config(str(base),
                                                 container_base=str(base))
  grpc_port, http_port = _free_port(), _free_port()
  log_path = tmp_path / "server.log"
  with open(log_path, "w") as log:
    server = subprocess.Popen(
        [binary, f"--port={grpc_port}", f"--rest_api_port={http_port}",
         f"--model_config_file={config}", "--enable_batching",
         "--batching_parameters_file="
         + os.path.join(SERVING, "batching_cpu.config")],
        stdout=log, stderr=subprocess.STDOUT)
  try:
    channel = grpc.insecure_channel(f"localhost:{grpc_port}")
    status = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = "tiny"
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    state, deadline = None, time.monotonic() + 120
    while time.monotonic() < deadline:
      assert server.poll() is None, log_path.read_text()
      try:
        response = status.GetModelStatus(request, timeout=5)
        state = response.model_version_status[0].state
      except grpc.RpcError:
        pass  # Not listening until the model is loaded.
      if state == available:
        break
      time.sleep(1)
    assert state == available, log_path.read_text()

    predict = predict_pb2.PredictRequest()
    predict.model_spec.name = "tiny"
    predict.model_spec.signature_name = "serving_default"
    predict.inputs["images"].CopyFrom(tf.make_tensor_proto([b"ab", b"cde"]))
    response = prediction_service_pb2_grpc.PredictionServiceStub(
        channel).Predict(predict, timeout=30)
    assert tf.make_ndarray(response.outputs["length"]).tolist() == [2, 3]
  finally:
    server.terminate()
    server.wait(timeout=30)
