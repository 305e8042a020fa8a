"""serving.server answers TF Serving's gRPC API as TF Serving does.

The cases that hold for any TF Serving run against serving.server and, when
tensorflow_model_server is on PATH, against it too (the `served` and
`start_any` fixtures); the version-loading policy and the message size limit
are serving.server's own.
"""

import io
import logging
import os
import shutil
import socket
import subprocess
import threading
import time

import grpc
import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

# The serving tests' models, exported as the Trainer exports them; the
# benchmarks export theirs with the same code.
from bench import exported
from bench.exported import export_test_model  # noqa: F401  (other tests)
from bench.exported import transform_output  # noqa: F401
from schema import contract
from schema import layout
from schema.settings import ServeSettings
from serving import server
from serving.server import tensors

LIMITS = tensors.RequestLimits(ServeSettings().max_batch,
                               ServeSettings().max_input_bytes)

SIZE = exported.SMALLEST_CNN_SIZE
BINARY = "cxr_binary_cnn"
MULTICLASS = "cxr_multiclass_cnn"
POLL = 0.2  # seconds between the test servers' looks at the model base
_Code = grpc.StatusCode
_AVAILABLE = get_model_status_pb2.ModelVersionStatus.State.AVAILABLE

def _push_copy(source: str, model_dir: str, version: int) -> None:
  """Pushes a copy of the SavedModel at source as model_dir/version."""
  staging = os.path.join(model_dir, f".staging-{version}")
  shutil.copytree(source, staging)
  os.rename(staging, os.path.join(model_dir, str(version)))


def png(h: int, w: int, seed: int = 0) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(np.random.default_rng(seed + h).integers(
      0, 255, (h, w), dtype=np.uint8)).save(buf, format="PNG")
  return buf.getvalue()


def _strings(values):
  return tf.make_tensor_proto(values, dtype=tf.string, shape=[len(values)])


def _request(model: str = BINARY, images=None, signature: str = "",
             version=None) -> predict_pb2.PredictRequest:
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model
  request.model_spec.signature_name = signature
  if version is not None:
    request.model_spec.version.value = version
  request.inputs["images"].CopyFrom(
      _strings(images if images is not None else [png(40, 50), png(90, 60)]))
  return request


def _stub(address: str) -> prediction_service_pb2_grpc.PredictionServiceStub:
  return prediction_service_pb2_grpc.PredictionServiceStub(
      grpc.insecure_channel(address))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _wait_for(condition, seconds: float, what: str) -> None:
  deadline = time.monotonic() + seconds
  while not condition():
    if time.monotonic() > deadline:
      pytest.fail(f"waited {seconds} s for {what}")
    time.sleep(0.05)


class _ModelServer:
  """tensorflow_model_server over a model base, as `cxr serve` serves it."""

  def __init__(self, binary: str, base: str, work_dir: str):
    self.port = _free_port()
    self.address = f"localhost:{self.port}"
    names = sorted(n for n in os.listdir(base) if not n.startswith("."))
    config = os.path.join(work_dir, "models.config")
    with open(config, "w") as f:
      f.write("model_config_list {\n" + "".join(
          f'  config {{ name: "{n}" base_path: "{os.path.join(base, n)}" '
          'model_platform: "tensorflow" }\n' for n in names) + "}\n")
    self._log_path = os.path.join(work_dir, "model_server.log")
    self._log = open(self._log_path, "wb")
    self._process = subprocess.Popen(
        [binary, f"--port={self.port}", f"--model_config_file={config}",
         "--file_system_poll_wait_seconds=1"],
        stdout=self._log, stderr=subprocess.STDOUT)
    stub = model_service_pb2_grpc.ModelServiceStub(
        grpc.insecure_channel(self.address))
    def available(name):
      if self._process.poll() is not None:
        with open(self._log_path) as log:
          pytest.fail("tensorflow_model_server exited:\n" + log.read()[-3000:])
      request = get_model_status_pb2.GetModelStatusRequest()
      request.model_spec.name = name
      try:
        return any(s.state == _AVAILABLE for s in stub.GetModelStatus(
            request, timeout=2).model_version_status)
      except grpc.RpcError:
        return False
    _wait_for(lambda: all(available(n) for n in names), 120,
              "tensorflow_model_server to load " + ", ".join(names))

  def stop(self) -> None:
    self._process.terminate()
    self._process.wait(30)
    self._log.close()


SERVER_KINDS = ("serving.server", "tensorflow_model_server")


def _start(kind: str, base: str, work_dir: str):
  if kind == "serving.server":
    return server.start_server(base, ServeSettings(port=0, poll_seconds=POLL))
  binary = shutil.which("tensorflow_model_server")
  if binary is None:
    pytest.skip("tensorflow_model_server is not on PATH (it cannot be "
                "installed here); these cases ran against serving.server")
  return _ModelServer(binary, base, work_dir)


@pytest.fixture(scope="module")
def model_base(exported_test_models):
  """Version 1 of BINARY and MULTICLASS (conftest.py; read-only)."""
  return exported_test_models


@pytest.fixture(scope="module")
def local_server(model_base):
  """serving.server over model_base, with REST on a free port."""
  handle = server.start_server(
      model_base, ServeSettings(port=0, rest_port=0, poll_seconds=POLL))
  yield handle
  handle.stop()


@pytest.fixture(scope="module", params=SERVER_KINDS)
def served(request, model_base, tmp_path_factory):
  """The address of a server of each kind over model_base."""
  if request.param == "serving.server":
    yield request.getfixturevalue("local_server").address
    return
  handle = _start(request.param, model_base,
                  str(tmp_path_factory.mktemp("tfs")))
  yield handle.address
  handle.stop()


@pytest.fixture(params=SERVER_KINDS)
def start_any(request, tmp_path):
  """start_any(base) starts a server of each kind, stopped after the test."""
  handles = []
  def start(base):
    handles.append(_start(request.param, base, str(tmp_path)))
    return handles[-1]
  yield start
  for handle in handles:
    handle.stop()


def _saved_model_signature(model_base, name, signature):
  return tf.saved_model.load(
      os.path.join(model_base, name, "1")).signatures[signature]


SERVING_DEFAULT_OUTPUTS = {
    contract.PROBABILITIES, contract.CLASS_ID, contract.CLASS_NAME,
    contract.PNEUMONIA_PROBABILITY, contract.THRESHOLD,
    contract.PNEUMONIA_DECISION}


def test_predict_serving_default(served, model_base):
  images = [png(40, 50), png(300, 200), png(64, 64)]
  response = _stub(served).Predict(_request(images=images), timeout=30)
  assert response.model_spec.name == BINARY
  assert response.model_spec.version.value == 1
  assert response.model_spec.signature_name == "serving_default"
  # Typed fields, as TF Serving answers and clients read them.
  assert len(response.outputs["probabilities"].float_val) == 6
  assert len(response.outputs["class_id"].int64_val) == 3
  out = {k: tf.make_ndarray(v) for k, v in response.outputs.items()}
  assert set(out) == SERVING_DEFAULT_OUTPUTS
  assert out["probabilities"].shape == (3, 2)
  assert out["probabilities"].dtype == np.float32
  assert out["class_id"].dtype == np.int64
  # A binary model's class is its decision at its threshold.
  assert out["class_id"].tolist() == (
      out["probabilities"][:, 1] >= out["threshold"]).astype(int).tolist()
  assert out["class_id"].tolist() == out["pneumonia_decision"].tolist()
  assert {n.decode() for n in out["class_name"]} <= {"normal", "pneumonia"}
  direct = _saved_model_signature(model_base, BINARY, "serving_default")(
      images=tf.constant(images))
  np.testing.assert_allclose(out["probabilities"],
                             direct["probabilities"].numpy(), atol=1e-6)


def test_predict_tf_example_signature(served, model_base):
  images = [png(40, 50), png(70, 30)]
  examples = [tf.train.Example(features=tf.train.Features(feature={
      "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[i]))
  })).SerializeToString() for i in images]
  request = predict_pb2.PredictRequest()
  request.model_spec.name = BINARY
  request.model_spec.signature_name = "serving_tf_example"
  request.inputs["examples"].CopyFrom(_strings(examples))
  response = _stub(served).Predict(request, timeout=30)
  outputs = tf.make_ndarray(response.outputs["outputs"])
  assert outputs.shape == (2, 1) and outputs.dtype == np.float32
  direct = _saved_model_signature(model_base, BINARY, "serving_tf_example")(
      examples=tf.constant(examples))
  np.testing.assert_allclose(outputs, direct["outputs"].numpy(), atol=1e-6)
  # The same images through serving_default: p(pneumonia) agrees.
  default = _stub(served).Predict(_request(images=images), timeout=30)
  np.testing.assert_allclose(
      tf.make_ndarray(default.outputs["probabilities"])[:, 1], outputs[:, 0],
      atol=1e-5)


def test_output_filter_and_version_by_number(served):
  request = _request(version=1)
  request.output_filter.append("class_id")
  response = _stub(served).Predict(request, timeout=30)
  assert list(response.outputs) == ["class_id"]
  assert response.model_spec.version.value == 1


def test_two_models_at_once(served):
  stub = _stub(served)
  binary = stub.Predict(_request(BINARY), timeout=30)
  multiclass = stub.Predict(_request(MULTICLASS), timeout=30)
  assert tf.make_ndarray(binary.outputs["probabilities"]).shape == (2, 2)
  probabilities = tf.make_ndarray(multiclass.outputs["probabilities"])
  assert probabilities.shape == (2, 3)
  np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
  assert multiclass.model_spec.name == MULTICLASS


def test_model_status(served):
  stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(served))
  request = get_model_status_pb2.GetModelStatusRequest()
  request.model_spec.name = BINARY
  [status] = stub.GetModelStatus(request, timeout=30).model_version_status
  assert (status.version, status.state) == (1, _AVAILABLE)
  request.model_spec.version.value = 7
  with pytest.raises(grpc.RpcError) as raised:
    stub.GetModelStatus(request, timeout=30)
  assert raised.value.code() == _Code.NOT_FOUND


def test_model_metadata_lists_the_signatures(served):
  request = get_model_metadata_pb2.GetModelMetadataRequest(
      metadata_field=["signature_def"])
  request.model_spec.name = BINARY
  response = _stub(served).GetModelMetadata(request, timeout=30)
  assert response.model_spec.name == BINARY
  assert response.model_spec.version.value == 1
  signature_defs = get_model_metadata_pb2.SignatureDefMap()
  assert response.metadata["signature_def"].Unpack(signature_defs)
  signature_defs = signature_defs.signature_def
  assert {"serving_default", "serving_tf_example"} <= set(signature_defs)
  default = signature_defs["serving_default"]
  assert default.inputs["images"].dtype == types_pb2.DT_STRING
  assert set(default.outputs) == SERVING_DEFAULT_OUTPUTS
  assert signature_defs["serving_tf_example"].inputs["examples"].dtype == (
      types_pb2.DT_STRING)


def test_an_empty_batch_gives_empty_outputs(served):
  # The models take an empty batch (TF Serving runs it too): no error, on
  # every CPU kernel (oneDNN's convolutions reject a zero-size batch).
  response = _stub(served).Predict(_request(images=[]), timeout=30)
  assert tf.make_ndarray(response.outputs["probabilities"]).shape == (0, 2)
  assert tf.make_ndarray(response.outputs["class_name"]).shape == (0,)
  response = _stub(served).Predict(_request(images=[], signature="gradcam"),
                                   timeout=30)
  assert tf.make_ndarray(response.outputs["probabilities"]).shape == (0, 2)
  assert tf.make_ndarray(response.outputs["heatmap"]).shape == (0, SIZE, SIZE)
  assert tf.make_ndarray(response.outputs["overlay_png"]).shape == (0,)
  request = predict_pb2.PredictRequest()
  request.model_spec.name = BINARY
  request.model_spec.signature_name = "serving_tf_example"
  request.inputs["examples"].CopyFrom(_strings([]))
  response = _stub(served).Predict(request, timeout=30)
  assert tf.make_ndarray(response.outputs["outputs"]).shape == (0, 1)


def test_warm_up_runs_every_signature_on_a_real_image(model_base):
  # An empty batch would skip the model (see the test above), so warm-up
  # sends one image, and every signature must answer it.
  servable = server.Servable(BINARY, 1, os.path.join(model_base, BINARY, "1"))
  answered = {}
  for name, signature in servable.signature_defs.items():
    if name.startswith("__"):
      continue
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = name
    for alias, proto in tensors.warm_up_inputs(signature).items():
      request.inputs[alias].CopyFrom(proto)
    outputs = servable.predict(request, LIMITS).outputs
    answered[name] = {k: tuple(tf.make_ndarray(v).shape)
                      for k, v in outputs.items()}
  assert answered["serving_default"]["probabilities"] == (1, 2)
  assert answered["serving_tf_example"]["outputs"] == (1, 1)
  assert answered["gradcam"]["heatmap"] == (1, SIZE, SIZE)
  assert answered["pneumonia_label"]["pneumonia_label"] == (1, 1)


def test_every_export_carries_a_warm_up_file_both_servers_replay(
    model_base, caplog):
  path = os.path.join(model_base, BINARY, "1")
  logged = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
            for r in tf.data.TFRecordDataset(
                os.path.join(path, layout.WARMUP_FILE))]
  requests = [log.predict_log.request for log in logged]
  # TF Serving's format: predict logs of real-sized images, both decoding
  # branches, serving_default at every warm-up batch size, and gradcam.
  shapes = [(r.model_spec.signature_name,
             tuple(d.size for d in r.inputs["images"].tensor_shape.dim),
             r.inputs["images"].string_val[0][:4]) for r in requests]
  jpeg, png_magic = b"\xff\xd8", b"\x89PNG"
  assert [s[:2] for s in shapes] == (
      [("serving_default", (1,))]
      + [("serving_default", (b,)) for b in contract.WARMUP_BATCH_SIZES]
      + [("gradcam", (1,))])
  assert shapes[0][2] == png_magic
  assert all(s[2][:2] == jpeg for s in shapes[1:])
  with Image.open(io.BytesIO(requests[0].inputs["images"].string_val[0])) \
      as image:
    assert image.mode == "I;16" and min(image.size) >= 1024
  # cxr serve replays it on load, and every request answers.
  servable = server.Servable(BINARY, 1, path)
  with caplog.at_level(logging.WARNING):
    assert servable.warm_up(LIMITS) == len(requests)
  assert not [r for r in caplog.records if "warm-up" in r.getMessage()]
  for request in requests:
    outputs = servable.predict(request, LIMITS).outputs
    batch = request.inputs["images"].tensor_shape.dim[0].size
    assert tf.make_ndarray(outputs["probabilities"]).shape == (batch, 2)


def _garbage_image(r):
  r.inputs["images"].CopyFrom(_strings([png(40, 50), b"not an image"]))


def _float_images(r):
  r.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros(2, np.float32)))


def _rank_2_images(r):
  r.inputs["images"].CopyFrom(tf.make_tensor_proto(
      np.array([[png(40, 50)], [png(50, 40)]], dtype=object),
      dtype=tf.string))


def _set(path, value):
  def mutate(r):
    target = r
    for attribute in path[:-1]:
      target = getattr(target, attribute)
    setattr(target, path[-1], value)
  return mutate


BAD_REQUESTS = [
    ("garbage image bytes", _garbage_image, _Code.INVALID_ARGUMENT),
    ("float images", _float_images, _Code.INVALID_ARGUMENT),
    ("rank 2 images", _rank_2_images, _Code.INVALID_ARGUMENT),
    ("missing input", lambda r: r.inputs.pop("images"),
     _Code.INVALID_ARGUMENT),
    ("unknown input", lambda r: r.inputs["extra"].CopyFrom(_strings([b""])),
     _Code.INVALID_ARGUMENT),
    ("unknown output", lambda r: r.output_filter.append("logits"),
     _Code.INVALID_ARGUMENT),
    ("unknown model", _set(("model_spec", "name"), "no_such_model"),
     _Code.NOT_FOUND),
    ("unknown version", _set(("model_spec", "version", "value"), 99),
     _Code.NOT_FOUND),
    ("unknown signature", _set(("model_spec", "signature_name"), "nope"),
     _Code.FAILED_PRECONDITION),
]


@pytest.mark.parametrize("mutate,code", [(m, c) for _, m, c in BAD_REQUESTS],
                         ids=[name for name, _, _ in BAD_REQUESTS])
def test_bad_request_status_and_server_still_answers(served, mutate, code):
  stub = _stub(served)
  request = _request()
  mutate(request)
  with pytest.raises(grpc.RpcError) as raised:
    stub.Predict(request, timeout=30)
  assert raised.value.code() == code, raised.value.details()
  if code == _Code.NOT_FOUND:
    assert "Servable not found for request" in raised.value.details()
  if code == _Code.FAILED_PRECONDITION:
    assert raised.value.details() == 'Serving signature key "nope" not found.'
  response = stub.Predict(_request(), timeout=30)
  assert tf.make_ndarray(response.outputs["class_id"]).shape == (2,)


def test_garbage_image_is_refused_by_its_format(served):
  request = _request()
  _garbage_image(request)
  with pytest.raises(grpc.RpcError) as raised:
    _stub(served).Predict(request, timeout=30)
  assert "not a JPEG or PNG image" in raised.value.details()


def test_a_truncated_png_reports_the_decoder_message(served):
  with pytest.raises(grpc.RpcError) as raised:
    _stub(served).Predict(_request(images=[png(40, 50)[:30]]), timeout=30)
  assert raised.value.code() == _Code.INVALID_ARGUMENT
  assert "Invalid PNG" in raised.value.details()


@pytest.mark.parametrize("image_format", ["GIF", "BMP"])
def test_formats_ingestion_quarantines_are_refused(served, image_format):
  # TensorFlow would decode them; the model takes what it was trained on.
  buf = io.BytesIO()
  Image.new("L", (50, 40), 128).save(buf, format=image_format)
  with pytest.raises(grpc.RpcError) as raised:
    _stub(served).Predict(_request(images=[buf.getvalue()]), timeout=30)
  assert raised.value.code() == _Code.INVALID_ARGUMENT
  assert "not a JPEG or PNG image" in raised.value.details()


def test_payload_above_the_message_limit(tmp_path, model_base):
  _push_copy(os.path.join(model_base, BINARY, "1"), str(tmp_path / BINARY), 1)
  handle = server.start_server(str(tmp_path), ServeSettings(
      port=0, poll_seconds=POLL, max_message_bytes=64 * 1024))
  try:
    stub = _stub(handle.address)
    with pytest.raises(grpc.RpcError) as raised:
      stub.Predict(_request(images=[b"x" * 100_000]), timeout=30)
    assert raised.value.code() == _Code.RESOURCE_EXHAUSTED
    response = stub.Predict(_request(), timeout=30)
    assert response.model_spec.version.value == 1
  finally:
    handle.stop()


class RequestLoop:
  """Sends a Predict request (default: one PNG to BINARY) back to back on a
  thread, noting each outcome."""

  def __init__(self, address: str, request=None):
    self.versions, self.failures = [], []
    self._stop = threading.Event()
    self._thread = threading.Thread(
        target=self._run,
        args=(address, request or _request(images=[png(40, 50)])))
    self._thread.start()

  def _run(self, address, request):
    stub = _stub(address)
    while not self._stop.is_set():
      try:
        response = stub.Predict(request, timeout=60)
        self.versions.append(response.model_spec.version.value)
      except grpc.RpcError as e:
        self.failures.append(f"{e.code()}: {e.details()}")
      time.sleep(0.01)

  def wait_for_version(self, version: int, seconds: float = 90) -> None:
    count = len(self.versions)
    _wait_for(lambda: len(self.versions) > count + 2
              and self.versions[-1] == version, seconds,
              f"requests answered by version {version}")

  def stop(self) -> None:
    self._stop.set()
    self._thread.join()


def test_hot_swap_fails_no_request(start_any, tmp_path, model_base):
  base = tmp_path / "base"
  model_dir = str(base / BINARY)
  _push_copy(os.path.join(model_base, BINARY, "1"), model_dir, 1)
  handle = start_any(str(base))
  loop = RequestLoop(handle.address)
  try:
    loop.wait_for_version(1)
    _push_copy(os.path.join(model_base, BINARY, "1"), model_dir, 2)
    loop.wait_for_version(2)
  finally:
    loop.stop()
  assert loop.failures == []
  assert loop.versions[0] == 1 and loop.versions[-1] == 2
  assert loop.versions == sorted(loop.versions)


def test_half_written_and_broken_versions_leave_the_old_one_serving(
    tmp_path, model_base, caplog):
  source = os.path.join(model_base, BINARY, "1")
  model_dir = tmp_path / BINARY
  _push_copy(source, str(model_dir), 1)
  handle = server.start_server(str(tmp_path),
                               ServeSettings(port=0, poll_seconds=POLL))
  status = model_service_pb2_grpc.ModelServiceStub(
      grpc.insecure_channel(handle.address))
  def states():
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = BINARY
    return {s.version: s.state for s in status.GetModelStatus(
        request, timeout=30).model_version_status}
  loop = RequestLoop(handle.address)
  try:
    loop.wait_for_version(1)
    # 2 is being copied in place: variables, no saved_model.pb yet.
    shutil.copytree(os.path.join(source, "variables"),
                    model_dir / "2" / "variables")
    # 3 is broken.
    (model_dir / "3").mkdir()
    (model_dir / "3" / "saved_model.pb").write_bytes(b"not a SavedModel")
    _wait_for(lambda: 3 in states(), 30, "version 3 to fail")
    time.sleep(5 * POLL)
    assert states() == {1: _AVAILABLE,
                        3: get_model_status_pb2.ModelVersionStatus.State.END}
    assert set(loop.versions) == {1}
    assert "model cxr_binary_cnn version 3 failed to load" in caplog.text
    # The copy of 2 completes: it loads on a later poll.
    for name in os.listdir(source):
      if name != "variables":
        (shutil.copytree if os.path.isdir(os.path.join(source, name))
         else shutil.copy)(os.path.join(source, name), model_dir / "2" / name)
    loop.wait_for_version(2)
    # 3 is fixed in place: its files changed, so it is tried again.
    shutil.rmtree(model_dir / "3")
    shutil.copytree(source, model_dir / "3")
    loop.wait_for_version(3)
  finally:
    loop.stop()
  try:
    assert loop.failures == []
    assert loop.versions == sorted(loop.versions)
    # The previous version stays for pinned requests; older ones go.
    assert states() == {2: _AVAILABLE, 3: _AVAILABLE}
    pinned = _stub(handle.address).Predict(_request(version=2), timeout=30)
    assert pinned.model_spec.version.value == 2
    with pytest.raises(grpc.RpcError) as raised:
      _stub(handle.address).Predict(_request(version=1), timeout=30)
    assert raised.value.code() == _Code.NOT_FOUND
  finally:
    handle.stop()
