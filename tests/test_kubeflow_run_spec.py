"""The compiled KFP v2 spec runs: every task through its own container command.

Compiling proves the spec is well formed; this runs it. For each task of
the compiled pipeline.json, in dependency order, tests/kfp_spec_runner.py
runs the command and arguments the spec gives the container (TFX's KFP v2
entrypoint, the executor class path, the serialized ExecutorInput) as a
subprocess of this environment, with KFP's placeholders resolved to local
folders; the blessed-model resolvers are answered from the artifacts the
runs under the same pipeline root produced. On a tiny synthetic set it
goes from ingestion to the Pusher, whose SavedModel then classifies
images. What compile-only tests cannot see fails here: a module path the
image would lack, a custom_config that does not survive serialization, an
executor that needs the local runner's globals.
"""

import glob
import json
import os
import sys

import numpy as np
import pytest

from kubeflow import v2_runner
from pipeline import synthetic
from schema import contract
from schema import layout
from schema import settings
from tests import kfp_spec_runner

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASK, MODEL = contract.BINARY, contract.CNN
N_IMAGES = 80  # every split gets patients at seed 7
CONTAINER_TASKS = {
    "ImageExampleGen", "ImportSchemaGen", "StatisticsGen",
    "ImageStatisticsGen", "ExampleValidator",
    "DataValidationGate", "Transform", layout.node_id(layout.TRAINER, MODEL),
    layout.node_id(layout.EVALUATOR, MODEL),
    layout.node_id(layout.PUSHER, MODEL)}
_RESOLVER = layout.node_id(layout.RESOLVER, MODEL)
BLESSING_RESOLVER = f"{_RESOLVER}-model-blessing-resolver"
MODEL_RESOLVER = f"{_RESOLVER}-model-resolver"


def compile_spec(output_file: str, data_root: str, pipeline_root: str,
                 serving_base: str) -> str:
  """The one call to compile_pipeline: tiny training, floors at 0 so the
  model is blessed, local paths, any image name (nothing pulls it)."""
  return v2_runner.compile_pipeline(
      output_file, data_root=data_root, pipeline_root=pipeline_root,
      serving_base=serving_base, task=TASK,
      # The DirectRunner and the CPU Trainer: the cloud's own services are
      # not reachable here.
      cloud=settings.CloudSettings(engine="vertex", image="local/cxr-tfx:test",
                                   gpu=settings.NO_GPU, beam_runner="direct"),
      run=settings.RunSettings(models=(MODEL,), confidence_intervals=False),
      training=settings.TrainingSettings(image_size=64, epochs=1,
                                         batch_size=16, seed=7),
      gates=settings.GateSettings(0.0, 0.0, 0.0))


@pytest.fixture(scope="module")
def spec_run(tmp_path_factory):
  """One run of the compiled spec, task by task, and what it was given."""
  root = tmp_path_factory.mktemp("kfp_spec_run")
  data, pipeline_root, serving = (str(root / "data"), str(root / "root"),
                                  str(root / "serving"))
  generated = synthetic.generate(data, n=N_IMAGES, size=64, seed=7)
  spec_path = compile_spec(str(root / "pipeline.json"), data, pipeline_root,
                           serving)
  # The worktree's packages, as the image's installed package would be.
  env = dict(os.environ, PYTHONPATH=REPO)
  results = kfp_spec_runner.run_spec(spec_path, pipeline_root, env)
  return {"spec": kfp_spec_runner.load_spec(spec_path)["pipelineSpec"],
          "spec_path": spec_path, "pipeline_root": pipeline_root,
          "env": env, "data": data, "serving": serving,
          "generated": generated, "results": results}


def _succeeded(spec_run):
  results = spec_run["results"]
  assert not kfp_spec_runner.failures(results), kfp_spec_runner.failures(
      results)
  return results


def _executor(spec, task_name):
  component = spec["components"][
      spec["root"]["dag"]["tasks"][task_name]["componentRef"]["name"]]
  return spec["deploymentSpec"]["executors"][component["executorLabel"]]


def test_every_container_task_ran_its_own_command_in_dependency_order(
    spec_run):
  results, spec = _succeeded(spec_run), spec_run["spec"]
  tasks = spec["root"]["dag"]["tasks"]
  containers = {n for n in tasks if "container" in _executor(spec, n)}
  assert containers == CONTAINER_TASKS
  ran = [n for n, r in results.items() if r.kind == kfp_spec_runner.CONTAINER]
  assert set(ran) == containers and len(ran) == len(containers)
  assert all(results[n].returncode == 0 for n in ran)
  assert set(results) == set(tasks)
  position = {name: i for i, name in enumerate(results)}
  for name in results:
    upstream = set(kfp_spec_runner.upstream_tasks(tasks[name]))
    assert all(position[u] < position[name] for u in upstream), name

  for name in ran:
    container = _executor(spec, name)["container"]
    written = container["command"] + container["args"]
    command = results[name].command
    assert len(command) == len(written), name
    assert command[0] == sys.executable and written[0] == "python"
    for got, want in zip(command[1:], written[1:]):
      if want == "{{$}}":  # the ExecutorInput this task was given
        executor_input = json.loads(got)
        assert executor_input["outputs"]["outputFile"].startswith(
            results[name].task_root)
      else:
        assert got == want, name
    assert "--executor_class_path" in command


def test_the_resolvers_find_nothing_on_a_first_run(spec_run):
  results = _succeeded(spec_run)
  assert results[BLESSING_RESOLVER].outputs == {"model_blessing": []}
  assert results[MODEL_RESOLVER].outputs == {"model": []}
  evaluator = results[layout.node_id(layout.EVALUATOR, MODEL)]
  assert evaluator.inputs["baseline_model"] == []
  assert evaluator.inputs["model"] == results[
      layout.node_id(layout.TRAINER, MODEL)].outputs["model"]


def test_ingestion_parameters_and_its_pre_cache_check(spec_run):
  """The fingerprint a Vertex cache key holds: the hook's, taken at run
  time, and the one the executor got and recorded."""
  results = _succeeded(spec_run)
  example_gen = results[layout.EXAMPLE_GEN]
  container = _executor(spec_run["spec"], layout.EXAMPLE_GEN)["container"]
  assert "preCacheCheck" in container.get("lifecycle", {})
  assert example_gen.parameters["input_base"] == spec_run["data"]
  assert example_gen.parameters["eval_percent"] == 10
  assert "input_fingerprint" not in example_gen.spec_parameters
  assert example_gen.hook and example_gen.hook.returncode == 0
  fingerprint = layout.fingerprint(spec_run["data"])
  assert example_gen.hook.parameter_updates["input_fingerprint"] == (
      fingerprint)
  assert example_gen.parameters["input_fingerprint"] == fingerprint
  examples, = example_gen.outputs["examples"]
  assert examples["metadata"]["input_fingerprint"] == fingerprint


def test_the_examples_account_for_every_synthetic_image(spec_run):
  results = _succeeded(spec_run)
  examples, = results[layout.EXAMPLE_GEN].outputs["examples"]
  counts = json.loads(examples["metadata"][layout.COUNTS_PROPERTY])
  assert sum(spec_run["generated"].values()) == N_IMAGES
  assert counts["seen"] == N_IMAGES
  assert counts["ingested"] == N_IMAGES and counts["quarantined"] == 0
  assert sum(counts[s] for s in contract.SPLITS) == N_IMAGES
  assert all(counts[s] > 0 for s in contract.SPLITS), counts
  assert json.loads(examples["metadata"]["split_names"]) == list(
      contract.SPLITS)


def test_the_pushed_saved_model_classifies_images(spec_run):
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  results = _succeeded(spec_run)
  blessing, = results[layout.node_id(layout.EVALUATOR, MODEL)].outputs[
      "blessing"]
  assert blessing["metadata"]["blessed"] == 1
  pushed, = results[layout.node_id(layout.PUSHER, MODEL)].outputs[
      "pushed_model"]
  assert pushed["metadata"]["pushed"] == 1
  model_dir = os.path.join(spec_run["serving"],
                           layout.serving_model_name(TASK, MODEL))
  version = pushed["metadata"]["pushed_version"]
  assert layout.model_versions(model_dir) == {
      int(version): os.path.join(model_dir, version)}
  assert pushed["metadata"]["pushed_destination"] == os.path.join(
      model_dir, version)
  assert layout.is_servable(os.path.join(model_dir, version))

  loaded = tf.saved_model.load(os.path.join(model_dir, version))
  paths = (sorted(glob.glob(os.path.join(spec_run["data"], "test", "NORMAL",
                                         "*.jpeg")))[:2]
           + sorted(glob.glob(os.path.join(spec_run["data"], "test",
                                           "PNEUMONIA", "*.jpeg")))[:2])
  images = []
  for path in paths:
    with open(path, "rb") as f:
      images.append(f.read())
  out = loaded.signatures[contract.SERVING_DEFAULT](
      **{contract.IMAGES_INPUT: tf.constant(images)})
  probabilities = out[contract.PROBABILITIES].numpy()
  classes = contract.class_count(TASK)
  assert probabilities.shape == (len(images), classes)
  assert ((probabilities >= 0) & (probabilities <= 1)).all()
  assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
  names = [n.decode() for n in out[contract.CLASS_NAME].numpy()]
  assert names == [contract.CLASS_NAMES[TASK][i]
                   for i in out[contract.CLASS_ID].numpy()]


def test_a_second_run_resolves_the_first_runs_blessed_model(spec_run):
  """The resolvers of a second run under the same pipeline root (only
  they run: the containers would take as long again)."""
  first = _succeeded(spec_run)
  second = kfp_spec_runner.run_spec(
      spec_run["spec_path"], spec_run["pipeline_root"], spec_run["env"],
      only={BLESSING_RESOLVER, MODEL_RESOLVER})
  assert list(second) == [BLESSING_RESOLVER, MODEL_RESOLVER]
  blessing, = second[BLESSING_RESOLVER].outputs["model_blessing"]
  assert blessing == first[layout.node_id(layout.EVALUATOR, MODEL)].outputs[
      "blessing"][0]
  model, = second[MODEL_RESOLVER].outputs["model"]
  trained, = first[layout.node_id(layout.TRAINER, MODEL)].outputs["model"]
  assert model == trained
  assert blessing["metadata"]["current_model_id"] == model["name"]


# --- the harness's own handling of a preCacheCheck hook, on a toy spec ---

_HOOK = """
import json, sys
executor_input = json.loads(sys.argv[1])
with open(executor_input["outputs"]["outputFile"], "w") as f:
  json.dump({"parameterValues": {"fingerprint": "from-the-hook"},
             "artifacts": {"out": {"artifacts": [
                 {"metadata": {"span": 3}}]}}}, f)
"""
_MAIN = """
import json, os, sys
executor_input = json.loads(sys.argv[1])
out = executor_input["outputs"]["artifacts"]["out"]["artifacts"][0]
os.makedirs(out["uri"], exist_ok=True)
with open(os.path.join(out["uri"], "seen.json"), "w") as f:
  json.dump(executor_input["inputs"], f)
with open(executor_input["outputs"]["outputFile"], "w") as f:
  json.dump({"artifacts": {"out": {"artifacts": [dict(
      uri=out["uri"], name=out["name"],
      metadata=dict(out.get("metadata", {}), done=1))]}}}, f)
"""
_CONSUMER = """
import json, sys
executor_input = json.loads(sys.argv[1])
given, = executor_input["inputs"]["artifacts"]["data"]["artifacts"]
assert given["type"]["schemaTitle"] == "system.Dataset", given
assert given["metadata"] == {"span": 3, "done": 1}, given
"""


def _toy_spec(path):
  artifact_type = {"schemaTitle": "system.Dataset"}
  spec = {"pipelineInfo": {"name": "toy"}, "components": {
      "comp-make": {"executorLabel": "exec-make", "inputDefinitions": {
          "parameters": {"fingerprint": {"type": "STRING"},
                         "count": {"type": "INT"}}},
                    "outputDefinitions": {"artifacts": {
                        "out": {"artifactType": artifact_type}}}},
      "comp-use": {"executorLabel": "exec-use", "inputDefinitions": {
          "artifacts": {"data": {"artifactType": artifact_type}}}}},
          "deploymentSpec": {"executors": {
              "exec-make": {"container": {
                  "image": "any", "command": ["python", "-c", _MAIN],
                  "args": ["{{$}}"], "lifecycle": {"preCacheCheck": {
                      "command": ["python", "-c", _HOOK],
                      "args": ["{{$}}"]}}}},
              "exec-use": {"container": {
                  "image": "any", "command": ["python", "-c", _CONSUMER],
                  "args": ["{{$}}"]}}}},
          "root": {"dag": {"tasks": {
              "make": {"componentRef": {"name": "comp-make"},
                       "taskInfo": {"name": "make"}, "inputs": {
                           "parameters": {
                               "fingerprint": {"runtimeValue": {
                                   "constantValue": {"stringValue": ""}}},
                               "count": {"runtimeValue": {"constantValue": {
                                   "intValue": "7"}}}}}},
              "use": {"componentRef": {"name": "comp-use"},
                      "taskInfo": {"name": "use"}, "dependentTasks": ["make"],
                      "inputs": {"artifacts": {"data": {
                          "taskOutputArtifact": {
                              "producerTask": "make",
                              "outputArtifactKey": "out"}}}}}}}}}
  with open(path, "w") as f:
    json.dump({"pipelineSpec": spec, "runtimeConfig": {}}, f)
  return str(path)


def test_a_pre_cache_check_hook_updates_the_parameters_first(tmp_path):
  results = kfp_spec_runner.run_spec(_toy_spec(tmp_path / "toy.json"),
                                     str(tmp_path / "root"))
  assert not kfp_spec_runner.failures(results), kfp_spec_runner.failures(
      results)
  make = results["make"]
  assert make.spec_parameters == {"fingerprint": "", "count": 7}
  assert make.hook.returncode == 0
  assert make.hook.parameter_updates == {"fingerprint": "from-the-hook"}
  assert make.parameters == {"fingerprint": "from-the-hook", "count": 7}
  out, = make.outputs["out"]
  with open(os.path.join(out["uri"], "seen.json")) as f:
    seen = json.load(f)
  # Both forms: parameterValues, and the typed parameters TFX reads.
  assert seen["parameterValues"] == {"fingerprint": "from-the-hook",
                                     "count": 7}
  assert seen["parameters"] == {"fingerprint": {"stringValue": "from-the-hook"},
                                "count": {"intValue": "7"}}
  assert out["type"] == {"schemaTitle": "system.Dataset"}
  assert results["use"].returncode == 0


def test_a_failed_task_is_named_with_its_stderr(tmp_path):
  path = _toy_spec(tmp_path / "toy.json")
  with open(path) as f:
    spec = json.load(f)
  spec["pipelineSpec"]["deploymentSpec"]["executors"]["exec-make"][
      "container"]["command"] = ["python", "-c",
                                 "raise SystemExit('no such module')"]
  with open(path, "w") as f:
    json.dump(spec, f)
  results = kfp_spec_runner.run_spec(path, str(tmp_path / "root"))
  assert list(results) == ["make"]  # stopped there
  message = kfp_spec_runner.failures(results)
  assert "task make failed (exit 1)" in message
  assert "no such module" in message
