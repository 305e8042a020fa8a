"""The pipeline factory compiles unchanged for Kubeflow Pipelines / Vertex."""

import json

from tfx.utils import import_utils
import yaml

from kubeflow import v2_runner
from schema import settings


def test_compiles_to_a_kfp_v2_spec(tmp_path):
  path = v2_runner.compile_pipeline(
      str(tmp_path / "cxr.json"), data_root="gs://bucket/chest_xray",
      pipeline_root="gs://bucket/root", serving_base="gs://bucket/serving",
      task="multiclass", image="example.com/cxr-tfx:latest",
      run=settings.RunSettings(models=("cnn", "mobilenet_v2")),
      cross_data_root="gs://bucket/chest_xray_binary_layout")
  with open(path) as f:
    spec = json.load(f)
  tasks = spec["pipelineSpec"]["root"]["dag"]["tasks"]
  branches = set()
  for model in ("cnn", "mobilenet_v2"):
    resolver = f"latest_blessed_model_resolver_{model}"
    branches |= {f"Trainer_{model}", f"Evaluator_{model}", f"Pusher_{model}",
                 f"CrossEvaluator_{model}",
                 # KFP v2 compiles the blessed-model Resolver into two steps.
                 f"{resolver}-model-resolver",
                 f"{resolver}-model-blessing-resolver"}
  assert {"ImageExampleGen", "CrossImageExampleGen", "ImportSchemaGen",
          "StatisticsGen",
          "ExampleValidator", "DataValidationGate",
          "Transform"} | branches == set(tasks)
  executors = json.dumps(spec["pipelineSpec"]["deploymentSpec"])
  assert "example.com/cxr-tfx:latest" in executors
  # User code by module path: the image's installed package provides it.
  assert "components.trainer.run_fn" in json.dumps(spec)
  assert "gs://bucket/chest_xray" in json.dumps(spec)
  assert "gs://bucket/chest_xray_binary_layout" in json.dumps(spec)


def test_custom_artifact_types_import_by_their_type_names(tmp_path):
  """TFX's KFP v2 entrypoint rebuilds each artifact from its type name."""
  path = v2_runner.compile_pipeline(
      str(tmp_path / "cxr.json"), data_root="gs://bucket/chest_xray",
      pipeline_root="gs://bucket/root", serving_base="gs://bucket/serving",
      task="binary", image="example.com/cxr-tfx:latest",
      run=settings.RunSettings(models=("cnn",)))
  with open(path) as f:
    spec = json.load(f)
  # TFX writes each type as an instance schema whose title is its name.
  titles = {yaml.safe_load(artifact["artifactType"]["instanceSchema"])[
                "title"]
            for component in spec["pipelineSpec"]["components"].values()
            for artifact in component.get("outputDefinitions", {}).get(
                "artifacts", {}).values()}
  custom = {t for t in titles if not t.startswith(("tfx.", "system."))}
  assert custom, titles  # the quarantine's type at least
  for title in custom:
    artifact_class = import_utils.import_class_by_path(title)
    assert artifact_class.TYPE_NAME == title
