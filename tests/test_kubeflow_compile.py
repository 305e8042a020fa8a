"""The pipeline factory compiles unchanged for Vertex AI / Kubeflow, with
the image, the GPU Trainer, Dataflow and the run-time fingerprint."""

import json

from google.protobuf import json_format
import pytest
from tfx.utils import import_utils
import yaml

from components import transform
from cxr import cli
from kubeflow import v2_runner
from pipeline import pipeline as pipeline_lib
from schema import layout
from schema import settings

IMAGE = "example.com/cxr-tfx-gpu:1.0"
MODELS = ("cnn", "mobilenet_v2")
RESOLVER_STEPS = ("-model-resolver", "-model-blessing-resolver")
BEAM_NODES = ("ImageExampleGen", "CrossImageExampleGen", "StatisticsGen",
              "ImageStatisticsGen",
              "Transform", "Evaluator_cnn", "CrossEvaluator_cnn")


def _compile(tmp_path, engine="vertex", gpu="", beam_runner="dataflow",
             task="multiclass"):
  cloud = settings.CloudSettings(engine=engine, image=IMAGE, gpu=gpu,
                                 beam_runner=beam_runner, project="proj",
                                 region="europe-west4")
  path = v2_runner.compile_pipeline(
      str(tmp_path / f"{engine}.json"), data_root="gs://bucket/chest_xray",
      pipeline_root="gs://bucket/root", serving_base="gs://bucket/serving",
      task=task, cloud=cloud, run=settings.RunSettings(models=MODELS),
      cross_data_root="gs://bucket/chest_xray_binary_layout")
  with open(path) as f:
    job = json.load(f)
  return job, v2_runner.check_spec(job)


def _executor(spec, task_name):
  label = spec.components[
      spec.root.dag.tasks[task_name].component_ref.name].executor_label
  return spec.deployment_spec.fields["executors"].struct_value.fields[label]


def _local_id(task_name):
  """KFP v2 compiles one Resolver into two steps; both are that node."""
  for step in RESOLVER_STEPS:
    if task_name.endswith(step):
      return task_name[:-len(step)]
  return task_name


@pytest.mark.parametrize("engine", ["vertex", "kubeflow"])
def test_every_node_and_edge_of_the_local_pipeline_is_compiled(tmp_path,
                                                               engine):
  job, spec = _compile(tmp_path, engine)
  local = pipeline_lib.create_pipeline(
      "cxr-multiclass", "/root", "/data", "multiclass", "/serving",
      settings.RunSettings(models=MODELS), cross_data_root="/cross")
  local_edges = {(up.id, node.id) for node in local.components
                 for up in node.upstream_nodes}
  tasks = spec.root.dag.tasks
  assert {_local_id(t) for t in tasks} == {n.id for n in local.components}
  assert {(_local_id(up), _local_id(name)) for name, task in tasks.items()
          for up in task.dependent_tasks} == local_edges
  # User code by module path: the image's installed package provides it.
  assert "components.trainer.run_fn" in json.dumps(job)
  for name in tasks:
    executor = _executor(spec, name)
    if "container" in executor.struct_value.fields:
      assert executor.struct_value.fields["container"].struct_value.fields[
          "image"].string_value == IMAGE, name


def _container(spec, task_name):
  """A task's container spec as plain JSON values."""
  return json_format.MessageToDict(_executor(spec, task_name))["container"]


def test_vertex_trains_as_a_custom_job_with_the_gpu(tmp_path):
  _, spec = _compile(tmp_path, "vertex", gpu="NVIDIA_L4:2")
  trainer = _container(spec, "Trainer_cnn")
  assert ("tfx.extensions.google_cloud_ai_platform.trainer.executor."
          "GenericExecutor") in trainer["args"]
  params = spec.root.dag.tasks["Trainer_cnn"].inputs.parameters
  config = json.loads(params["custom_config"].runtime_value.constant_value
                      .string_value)
  assert config["ai_platform_enable_vertex"] is True
  assert config["ai_platform_vertex_region"] == "europe-west4"
  pool = config["ai_platform_training_args"]["worker_pool_specs"]
  assert pool == [{"machine_spec": {"machine_type": "n1-standard-8",
                                    "accelerator_type": "NVIDIA_L4",
                                    "accelerator_count": 2},
                   "replica_count": 1,
                   "container_spec": {"image_uri": IMAGE}}]
  assert config["ai_platform_training_args"]["project"] == "proj"
  # The training job runs our run_fn, which takes its settings back.
  assert settings.TrainerConfig.from_custom_config(config).model == "cnn"
  assert "tfx.extensions" not in json.dumps(_container(spec, "Pusher_cnn"))


def test_kubeflow_asks_for_the_accelerator_on_the_trainer_task(tmp_path):
  _, spec = _compile(tmp_path, "kubeflow")
  trainer = _container(spec, "Trainer_cnn")
  assert trainer["resources"]["accelerator"] == {
      "type": settings.DEFAULT_GPUS["kubeflow"].split(":")[0], "count": "1"}
  assert "tfx.components.trainer.executor.GenericExecutor" in trainer["args"]
  assert "resources" not in _container(spec, "Transform")


@pytest.mark.parametrize("engine", ["vertex", "kubeflow"])
def test_no_gpu_trains_in_the_component_container(tmp_path, engine):
  _, spec = _compile(tmp_path, engine, gpu="none")
  trainer = _container(spec, "Trainer_cnn")
  assert "resources" not in trainer
  assert "tfx.components.trainer.executor.GenericExecutor" in trainer["args"]


def test_beam_components_run_on_dataflow_with_the_image(tmp_path):
  _, spec = _compile(tmp_path)
  for name in BEAM_NODES:
    args = _container(spec, name)["args"]
    assert "--runner=DataflowRunner" in args, name
    assert {"--project=proj", "--region=europe-west4",
            "--temp_location=gs://bucket/root/tmp",
            f"--sdk_container_image={IMAGE}"} <= set(args), name
  _, direct = _compile(tmp_path, beam_runner="direct")
  args = _container(direct, "Transform")["args"]
  assert "--direct_running_mode=multi_processing" in args
  assert not [a for a in args if a.startswith("--runner")]


@pytest.mark.parametrize("engine", ["vertex", "kubeflow"])
def test_ingestion_fingerprints_its_folder_at_run_time(tmp_path, engine):
  job, spec = _compile(tmp_path, engine)
  # No compile-time fingerprint anywhere; the folder is a runtime parameter.
  assert "input_fingerprint" not in json.dumps(job)
  for node, parameter in ((layout.EXAMPLE_GEN,
                           v2_runner.DATA_ROOT_PARAMETER),
                          (layout.CROSS_EXAMPLE_GEN,
                           v2_runner.CROSS_DATA_ROOT_PARAMETER)):
    task = spec.root.dag.tasks[node]
    assert task.inputs.parameters[
        "input_base"].component_input_parameter == parameter
    hook = _container(spec, node)["lifecycle"]["preCacheCheck"]
    assert hook["command"] == list(v2_runner.FINGERPRINT_COMMAND)
    assert hook["args"][:2] == ["--json_serialized_invocation_args", "{{$}}"]
    # Vertex runs the hook before its cache lookup; on Kubeflow ingestion
    # is never a cache hit.
    assert task.caching_options.enable_cache == (engine == "vertex")
  assert spec.root.dag.tasks["Transform"].caching_options.enable_cache
  assert job["runtimeConfig"]["parameters"][v2_runner.DATA_ROOT_PARAMETER][
      "stringValue"] == "gs://bucket/chest_xray"


def test_custom_artifact_types_import_by_their_type_names(tmp_path):
  """TFX's KFP v2 entrypoint rebuilds each artifact from its type name."""
  job, _ = _compile(tmp_path, task="binary")
  # TFX writes each type as an instance schema whose title is its name.
  titles = {yaml.safe_load(artifact["artifactType"]["instanceSchema"])[
                "title"]
            for component in job["pipelineSpec"]["components"].values()
            for artifact in component.get("outputDefinitions", {}).get(
                "artifacts", {}).values()}
  custom = {t for t in titles if not t.startswith(("tfx.", "system."))}
  assert custom, titles  # the quarantine's type at least
  for title in custom:
    artifact_class = import_utils.import_class_by_path(title)
    assert artifact_class.TYPE_NAME == title


def test_cloud_settings_refuse_what_cannot_run():
  with pytest.raises(ValueError, match="image is required"):
    settings.CloudSettings(project="p")
  with pytest.raises(ValueError, match="TYPE:COUNT"):
    settings.CloudSettings(image=IMAGE, project="p", gpu="T4")
  with pytest.raises(ValueError, match="project is required"):
    settings.CloudSettings(image=IMAGE)
  # Kubeflow with the DirectRunner needs no Google Cloud project.
  assert settings.CloudSettings(image=IMAGE, engine="kubeflow",
                                beam_runner="direct").accelerator == (
                                    "nvidia.com/gpu", 1)


def test_cxr_compile_writes_the_job(tmp_path, capsys):
  out = tmp_path / "job.json"
  code = cli.main(["compile", "--engine", "kubeflow", "--task", "binary",
                   "--output", str(out), "--image", IMAGE,
                   "--pipeline-root", "gs://b/root", "--data", "gs://b/data",
                   "--beam-runner", "direct", "--models", "cnn",
                   "--epochs", "3", "--gpu", "none", "--resize", "pad"])
  assert code == 0, capsys.readouterr()
  job = json.loads(out.read_text())
  spec = v2_runner.check_spec(job)

  def custom_config(task):
    return json.loads(spec.root.dag.tasks[task].inputs.parameters[
        "custom_config"].runtime_value.constant_value.string_value)

  config = custom_config("Trainer_cnn")
  assert config["epochs"] == 3 and config["model"] == "cnn"
  # The resize mode is Transform's: every signature runs its graph.
  assert transform.resize_from(custom_config("Transform")) == settings.PAD
  pusher = json.dumps(json.loads(spec.root.dag.tasks[
      "Pusher_cnn"].inputs.parameters["push_destination"].runtime_value
                                 .constant_value.string_value))
  assert "gs://b/root/serving/cxr_binary_cnn" in pusher
  assert cli.main(["compile", "--task", "binary", "--output", str(out),
                   "--pipeline-root", "gs://b/r", "--data", "gs://b/d"]) == 2
  assert "image is required" in capsys.readouterr().err


def test_data_root_takes_several_data_sets_as_a_comma_list(tmp_path, capsys):
  out = tmp_path / "job.json"
  common = ["compile", "--engine", "kubeflow", "--task", "binary",
            "--output", str(out), "--image", IMAGE, "--pipeline-root",
            "gs://b/root", "--beam-runner", "direct", "--models", "cnn",
            "--gpu", "none"]
  assert cli.main(common + ["--data", "gs://b/a", "--data",
                            "gs://b/c,gs://b/d"]) == 0, capsys.readouterr()
  job = json.loads(out.read_text())
  assert job["runtimeConfig"]["parameters"][v2_runner.DATA_ROOT_PARAMETER][
      "stringValue"] == "gs://b/a,gs://b/c,gs://b/d"
  tasks = v2_runner.check_spec(job).root.dag.tasks
  # One ingestion node reads them all.
  assert [t for t in tasks if t.endswith("ExampleGen")] == [
      layout.EXAMPLE_GEN]
  assert tasks[layout.EXAMPLE_GEN].inputs.parameters[
      "input_base"].component_input_parameter == (
          v2_runner.DATA_ROOT_PARAMETER)
  assert cli.main(common + ["--data", "gs://b/a,gs://b/a/"]) == 2
  assert "given twice" in capsys.readouterr().err
  with pytest.raises(SystemExit):
    cli.main(["compile", "--help"])
  assert "comma list" in capsys.readouterr().out
