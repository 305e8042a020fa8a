"""Runs a compiled KFP v2 pipeline spec task by task, on this machine.

A test harness, not a product runner (the product runs on Vertex AI / KFP):
for each task of a pipeline spec, in dependency order, it runs **the
container command and arguments written in the spec** as a subprocess of
this environment, with the KFP placeholders resolved to local folders the
way the KFP backend resolves them. So it catches what compiling alone
cannot: a module path the image would not have, a custom_config that does
not survive serialization, an executor that needs the local runner's
globals.

    results = run_spec("pipeline.json", "/tmp/root", env={...})
    assert not failures(results), failures(results)
    results["Pusher_cnn"].outputs["pushed_model"][0]["metadata"]

What kfp 2.5's local-execution helpers do, and are used for:

* `executor_input_utils.construct_executor_input` builds a task's
  ExecutorInput (parameter values, output artifacts under the task root,
  the executor output file); `executor_input_to_dict` turns it into the
  JSON dict the `{{$}}` placeholder stands for;
* `placeholder_utils.replace_placeholders` resolves a command's
  placeholders (`{{$}}`, `{{$.inputs...}}`, `{{$.outputs...}}`, the
  pipeline and task names), and `placeholder_utils.resolve_io_placeholders`
  the `{{$.inputs.artifacts[...]}}` in a resolver's query;
* `construct_local_task_root` / `get_local_pipeline_resource_name` lay out
  `<pipeline_root>/<pipeline>-<timestamp>/<task>/`.

What they do not do, filled in here by hand:

* TFX 1.16 writes parameters the older way: task arguments as
  `runtimeValue.constantValue` (`intValue`/`stringValue`/`doubleValue`) and
  input definitions with `type` (INT/STRING/DOUBLE) instead of
  `parameterType`. The arguments are turned into plain values and the
  definitions get the matching `parameterType`, so the helpers fill
  `parameterValues` with the right types.
* TFX's entrypoint (kubeflow_v2_run_executor, without
  `--json_serialized_inputs_spec_args`) reads the older typed
  `inputs.parameters`, not `parameterValues`, so both are written.
* `construct_executor_input` refuses input artifacts, so each input
  artifact list is added here from its producer task's outputs.
* Output artifacts get unique names (as MLMD resource names are), not just
  their output key: TFX's Evaluator records the candidate model by name in
  its blessing, and the blessed-model resolver looks the model up by it.
* A task's outputs are its `executor_output.json` artifacts (URI and
  metadata, which the executor may update) with the artifact type from the
  ExecutorInput built here; the executor output carries no types.
* A container's `lifecycle.preCacheCheck` hook (TFX's ExampleGen driver
  and the like) runs first, as Vertex runs it; the ExecutorOutput it writes
  to `outputs.output_file` updates the task's parameters (both forms) and
  its output artifacts' metadata before the main command. Its file is then
  moved to `<task root>/pre_cache_check/`, so what the executor sees is
  the ExecutorInput built here.
* System nodes: a `resolver` executor runs its artifact queries against
  the artifacts earlier runs of this pipeline (under the same pipeline
  root) and this run produced, newest first, `limit` (default 1) of them,
  as KFP's metadata store answers them; the filter language is the small
  part TFX writes (`a="b" AND state=LIVE AND metadata.k.number_value=1`).
  An `importer` yields its constant URI as an artifact.

Not emulated: KFP's cache (every container task runs; the resolved
parameters are recorded so a test can check what a cache key would hold),
conditions, loops, runtime parameters other than constants and the
runtimeConfig's, and output parameters between tasks. A spec using one
fails here with NotImplementedError naming it.

The container's `python` (the command's first word) is this environment's
interpreter (`python=`, default sys.executable); the working directory is
the task root, so user code is imported from `env`'s PYTHONPATH or the
installed package, as the image would, not from the current directory.
"""

import copy
import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
from typing import Any, Collection, Dict, List, Mapping, Optional

from google.protobuf import json_format
from kfp.local import executor_input_utils
from kfp.local import placeholder_utils
from kfp.pipeline_spec import pipeline_spec_pb2
import yaml

CONTAINER, RESOLVER, IMPORTER = "container", "resolver", "importer"
# Every artifact a run produced, kept under the pipeline root so that a
# later run's resolvers find it, as KFP's metadata store would.
METADATA_FILE = "kfp_spec_runner_artifacts.json"
HOOK_DIR = "pre_cache_check"

_PRIMITIVE_TO_PARAMETER_TYPE = {
    pipeline_spec_pb2.PrimitiveType.INT:
        pipeline_spec_pb2.ParameterType.NUMBER_INTEGER,
    pipeline_spec_pb2.PrimitiveType.DOUBLE:
        pipeline_spec_pb2.ParameterType.NUMBER_DOUBLE,
    pipeline_spec_pb2.PrimitiveType.STRING:
        pipeline_spec_pb2.ParameterType.STRING,
}
# The older typed Value's field per parameter type; other types (bool,
# list, struct) have no older form.
_TYPED_FIELD = {
    pipeline_spec_pb2.ParameterType.NUMBER_INTEGER: "intValue",
    pipeline_spec_pb2.ParameterType.NUMBER_DOUBLE: "doubleValue",
    pipeline_spec_pb2.ParameterType.STRING: "stringValue",
}


@dataclasses.dataclass
class HookRun:
  """A container's lifecycle.preCacheCheck run."""
  command: List[str]
  returncode: int
  # parameter name -> plain value, from the ExecutorOutput it wrote.
  parameter_updates: Dict[str, Any]
  stdout_path: str
  stderr_path: str


@dataclasses.dataclass
class TaskRun:
  """What one task did.

  parameters: plain values the executor was given (after the hook);
  spec_parameters: the same as the spec wrote them. inputs/outputs: key ->
  list of RuntimeArtifact dicts (name, type, uri, metadata), as the
  ExecutorInput / executor output JSON spell them.
  """
  name: str
  kind: str
  task_root: str
  parameters: Dict[str, Any] = dataclasses.field(default_factory=dict)
  spec_parameters: Dict[str, Any] = dataclasses.field(default_factory=dict)
  inputs: Dict[str, List[dict]] = dataclasses.field(default_factory=dict)
  outputs: Dict[str, List[dict]] = dataclasses.field(default_factory=dict)
  command: List[str] = dataclasses.field(default_factory=list)
  returncode: Optional[int] = None  # containers only
  hook: Optional[HookRun] = None
  stdout_path: str = ""
  stderr_path: str = ""
  seconds: float = 0.0

  @property
  def succeeded(self) -> bool:
    return self.kind != CONTAINER or (
        self.returncode == 0
        and (self.hook is None or self.hook.returncode == 0))

  def stderr_tail(self, lines: int = 40) -> str:
    path = (self.hook.stderr_path if self.hook and self.hook.returncode
            else self.stderr_path)
    if not path or not os.path.exists(path):
      return ""
    with open(path, errors="replace") as f:
      return "".join(f.readlines()[-lines:])


def failures(results: Mapping[str, TaskRun], lines: int = 40) -> str:
  """Each failed task's name, exit code and stderr tail; '' if none."""
  return "\n".join(
      f"task {r.name} failed"
      + (f" in its preCacheCheck hook (exit {r.hook.returncode})"
         if r.hook and r.hook.returncode else f" (exit {r.returncode})")
      + f"; last {lines} lines of its stderr:\n{r.stderr_tail(lines)}"
      for r in results.values() if not r.succeeded)


def load_spec(spec_path: str) -> Dict[str, Any]:
  """{'pipelineSpec': ..., 'runtimeConfig': ...} of a PipelineJob JSON (as
  TFX writes it) or of a bare PipelineSpec."""
  with open(spec_path) as f:
    spec = json.load(f)
  if "pipelineSpec" not in spec:
    spec = {"pipelineSpec": spec, "runtimeConfig": {}}
  return spec


def dependency_order(dag: Dict[str, Any]) -> List[str]:
  """Task names, each after every task it depends on (by name otherwise)."""
  deps = {name: set(upstream_tasks(task))
          for name, task in dag["tasks"].items()}
  order, done = [], set()
  while len(order) < len(deps):
    ready = sorted(n for n, d in deps.items() if n not in done and d <= done)
    if not ready:
      raise ValueError(f"cycle or unknown dependency among "
                       f"{sorted(set(deps) - done)}")
    order.append(ready[0])
    done.add(ready[0])
  return order


def upstream_tasks(task: Dict[str, Any]) -> List[str]:
  """Names of the tasks a task waits for: its dependentTasks and the
  producers of its inputs."""
  names = list(task.get("dependentTasks", []))
  for kind in ("artifacts", "parameters"):
    for value in task.get("inputs", {}).get(kind, {}).values():
      for ref in ("taskOutputArtifact", "taskOutputParameter"):
        if ref in value:
          names.append(value[ref]["producerTask"])
  return names


def run_spec(spec_path: str, pipeline_root: str,
             env: Optional[Mapping[str, str]] = None, *,
             python: str = sys.executable, timeout: float = 1800,
             only: Optional[Collection[str]] = None) -> Dict[str, TaskRun]:
  """Runs every task of the spec in dependency order; stops at a failure.

  pipeline_root: local folder for artifacts (task roots) and the artifact
  records later runs resolve against. env: the subprocesses' environment
  (default: this process's). timeout: seconds per command. only: run just
  these tasks (their upstream tasks must be among them), e.g. a later
  run's resolvers. Returns task name -> TaskRun in run order; after a
  failure the failed task is the last (see `failures`).
  """
  spec = load_spec(spec_path)
  pipeline = spec["pipelineSpec"]
  runtime_parameters = _runtime_parameters(spec.get("runtimeConfig", {}))
  pipeline_name = pipeline["pipelineInfo"]["name"]
  run_name = executor_input_utils.get_local_pipeline_resource_name(
      pipeline_name)
  store = _ArtifactStore(os.path.join(pipeline_root, METADATA_FILE),
                         pipeline_name)
  dag = pipeline["root"]["dag"]
  order = dependency_order(dag)
  if only is not None:
    unknown = set(only) - set(order)
    if unknown:
      raise ValueError(f"no tasks {sorted(unknown)} in {spec_path}")
    order = [name for name in order if name in only]
    for name in order:
      outside = set(upstream_tasks(dag["tasks"][name])) - set(only)
      if outside:
        raise ValueError(f"task {name} needs {sorted(outside)}, which are "
                         "not run")
  results: Dict[str, TaskRun] = {}
  for name in order:
    task = dag["tasks"][name]
    component = pipeline["components"][task["componentRef"]["name"]]
    executor = pipeline["deploymentSpec"]["executors"][
        component["executorLabel"]]
    task_root = executor_input_utils.construct_local_task_root(
        pipeline_root, run_name, name)
    os.makedirs(task_root, exist_ok=True)
    inputs = _input_artifacts(name, task, results)
    if "container" in executor:
      result = _run_container(
          name, task, component, executor["container"], inputs,
          runtime_parameters, task_root, pipeline_root, run_name, env,
          python, timeout)
    elif "resolver" in executor:
      result = _run_resolver(name, executor["resolver"], inputs, task_root,
                             store)
    elif "importer" in executor:
      result = _run_importer(name, component, executor["importer"], inputs,
                             task_root, store, run_name)
    else:
      raise NotImplementedError(
          f"task {name}: executor kind {sorted(executor)} is not run here")
    results[name] = result
    if not result.succeeded:
      break
    if result.kind != RESOLVER:  # a resolver's outputs are old artifacts
      store.add(run_name, name, result.outputs)
  return results


# --- parameters ---------------------------------------------------------


def _runtime_parameters(runtime_config: Dict[str, Any]) -> Dict[str, Any]:
  values = dict(runtime_config.get("parameterValues", {}))
  for key, typed in runtime_config.get("parameters", {}).items():
    values.setdefault(key, _plain_typed_value(typed))
  return values


def _plain_typed_value(typed: Dict[str, Any]) -> Any:
  """{'intValue': '10'} -> 10, {'stringValue': 's'} -> 's', ..."""
  (field, value), = typed.items()
  return {"intValue": int, "doubleValue": float,
          "stringValue": str}[field](value)


def _argument(task_name: str, key: str, value: Dict[str, Any],
              runtime_parameters: Dict[str, Any]) -> Any:
  """A task's input parameter as a plain value."""
  if "runtimeValue" in value:
    runtime = value["runtimeValue"]
    if "constantValue" in runtime:  # older typed form, as TFX 1.16 writes
      return _plain_typed_value(runtime["constantValue"])
    if "constant" in runtime:
      return runtime["constant"]
  if "componentInputParameter" in value:
    return runtime_parameters[value["componentInputParameter"]]
  raise NotImplementedError(
      f"task {task_name}: parameter {key} is {value}; only constants and "
      "pipeline parameters are resolved here")


def _with_parameter_types(
    component: Dict[str, Any]) -> pipeline_spec_pb2.ComponentSpec:
  """The component spec, its input parameters typed the newer way
  (`parameterType`) where TFX wrote the older `type`."""
  spec = pipeline_spec_pb2.ComponentSpec()
  json_format.ParseDict(component, spec, ignore_unknown_fields=True)
  for parameter in spec.input_definitions.parameters.values():
    if not parameter.parameter_type and parameter.type:
      parameter.parameter_type = _PRIMITIVE_TO_PARAMETER_TYPE[parameter.type]
  return spec


def _typed(value: Any, parameter_type: int) -> Optional[Dict[str, str]]:
  field = _TYPED_FIELD.get(parameter_type)
  if field is None:
    return None
  if field == "intValue":
    return {field: str(int(value))}
  return {field: value}


def _set_parameter(executor_input: Dict[str, Any],
                   spec: pipeline_spec_pb2.ComponentSpec, key: str,
                   value: Any) -> None:
  """Sets a parameter in both forms the ExecutorInput has."""
  definition = spec.input_definitions.parameters.get(key)
  parameter_type = definition.parameter_type if definition else None
  if parameter_type == pipeline_spec_pb2.ParameterType.NUMBER_INTEGER:
    value = int(value)
  inputs = executor_input.setdefault("inputs", {})
  inputs.setdefault("parameterValues", {})[key] = value
  typed = _typed(value, parameter_type) if definition else (
      {"stringValue": value} if isinstance(value, str) else None)
  if typed is not None:
    inputs.setdefault("parameters", {})[key] = typed


# --- artifacts ----------------------------------------------------------


def _input_artifacts(name: str, task: Dict[str, Any],
                     results: Dict[str, TaskRun]) -> Dict[str, List[dict]]:
  """Each input artifact list from its producer's outputs (the gap in
  construct_executor_input)."""
  inputs = {}
  for key, value in task.get("inputs", {}).get("artifacts", {}).items():
    if "taskOutputArtifact" not in value:
      raise NotImplementedError(
          f"task {name}: input artifact {key} is {value}; only upstream "
          "task outputs are resolved here")
    ref = value["taskOutputArtifact"]
    producer = results[ref["producerTask"]]
    inputs[key] = copy.deepcopy(
        producer.outputs.get(ref["outputArtifactKey"], []))
  return inputs


def _schema_title(artifact: Dict[str, Any]) -> str:
  artifact_type = artifact.get("type", {})
  if "schemaTitle" in artifact_type:
    return artifact_type["schemaTitle"]
  return yaml.safe_load(artifact_type.get("instanceSchema", "")
                        or "{}").get("title", "")


def _outputs_from_executor_output(
    declared: Dict[str, Any], output_file: str) -> Dict[str, List[dict]]:
  """The executor's outputs: its executor_output.json artifacts (URI,
  metadata, name), typed by the ExecutorInput that declared them."""
  outputs = copy.deepcopy(declared)
  if os.path.exists(output_file):
    with open(output_file) as f:
      written = json.load(f).get("artifacts", {})
    for key, artifact_list in written.items():
      if key not in outputs:
        continue
      typed = outputs[key]
      artifacts = []
      for i, artifact in enumerate(artifact_list.get("artifacts", [])):
        base = dict(typed[min(i, len(typed) - 1)])
        base.update({k: v for k, v in artifact.items() if k != "type"})
        artifacts.append(base)
      outputs[key] = artifacts
  return outputs


class _ArtifactStore:
  """Artifacts of this pipeline's runs under one root, newest last: what a
  resolver's queries run against, as KFP's metadata store (scoped to the
  pipeline's context) would answer them."""

  def __init__(self, path: str, pipeline_name: str):
    self._path = path
    self._pipeline = pipeline_name

  def records(self) -> List[dict]:
    if not os.path.exists(self._path):
      return []
    with open(self._path) as f:
      return [r for r in json.load(f) if r["pipeline"] == self._pipeline]

  def add(self, run_name: str, task_name: str,
          outputs: Dict[str, List[dict]]) -> None:
    everything = []
    if os.path.exists(self._path):
      with open(self._path) as f:
        everything = json.load(f)
    for key, artifacts in outputs.items():
      for artifact in artifacts:
        everything.append({"pipeline": self._pipeline, "run": run_name,
                           "task": task_name, "key": key, "state": "LIVE",
                           "artifact": artifact})
    os.makedirs(os.path.dirname(self._path) or ".", exist_ok=True)
    with open(self._path, "w") as f:
      json.dump(everything, f, indent=1)

  def query(self, query_filter: str, limit: int) -> List[dict]:
    """The newest `limit` artifacts matching a filter of TFX's form."""
    clauses = [_parse_clause(c) for c in query_filter.split(" AND ")]
    found = [r["artifact"] for r in reversed(self.records())
             if all(_matches(r, c) for c in clauses)]
    return copy.deepcopy(found[:limit])


_CLAUSE = re.compile(r"^\s*([\w.]+)\s*=\s*(\"(?:[^\"\\]|\\.)*\"|\S+)\s*$")


def _parse_clause(clause: str):
  match = _CLAUSE.match(clause)
  if not match:
    raise NotImplementedError(f"resolver filter clause {clause!r}")
  field, value = match.groups()
  if value.startswith('"'):
    value = json.loads(value)
  return field, value


def _matches(record: dict, clause) -> bool:
  field, value = clause
  artifact = record["artifact"]
  if field == "schema_title":
    return _schema_title(artifact) == value
  if field == "state":
    return record["state"] == value
  if field == "name":
    return artifact.get("name") == value
  parts = field.split(".")
  if len(parts) == 3 and parts[0] == "metadata":
    actual = artifact.get("metadata", {}).get(parts[1])
    if actual is None:
      return False
    if parts[2] == "number_value":
      return isinstance(actual, (int, float)) and float(actual) == float(
          value)
    if parts[2] == "string_value":
      return actual == value
    if parts[2] == "bool_value":
      return actual is (value == "true")
  raise NotImplementedError(f"resolver filter field {field!r}")


# --- the three kinds of tasks -------------------------------------------


def _run_container(name, task, component, container, inputs,
                   runtime_parameters, task_root, pipeline_root, run_name,
                   env, python, timeout) -> TaskRun:
  spec = _with_parameter_types(component)
  arguments = {
      key: _argument(name, key, value, runtime_parameters)
      for key, value in task.get("inputs", {}).get("parameters", {}).items()}
  missing = [k for k, p in spec.input_definitions.parameters.items()
             if k not in arguments and not p.HasField("default_value")]
  if missing:
    raise ValueError(f"task {name}: no value for parameters {missing}")
  # construct_executor_input refuses input artifacts; they are added below.
  no_input_artifacts = copy.deepcopy(spec)
  no_input_artifacts.input_definitions.ClearField("artifacts")
  executor_input = executor_input_utils.executor_input_to_dict(
      executor_input_utils.construct_executor_input(
          no_input_artifacts, arguments, task_root), no_input_artifacts)
  executor_input.setdefault("inputs", {}).setdefault("parameterValues", {})
  for key in spec.input_definitions.parameters:  # the older form too
    _set_parameter(executor_input, spec, key,
                   executor_input["inputs"]["parameterValues"][key])
  executor_input["inputs"]["artifacts"] = {
      key: {"artifacts": artifacts} for key, artifacts in inputs.items()}
  for key, artifact_list in executor_input["outputs"].get(
      "artifacts", {}).items():
    for artifact in artifact_list["artifacts"]:
      artifact["name"] = f"{run_name}/{name}/{key}"  # unique, as in MLMD
  result = TaskRun(name=name, kind=CONTAINER, task_root=task_root,
                   spec_parameters=dict(
                       executor_input["inputs"]["parameterValues"]),
                   inputs=inputs)
  start = time.monotonic()

  lifecycle = container.get("lifecycle", {}).get("preCacheCheck")
  if lifecycle:
    result.hook = _run_hook(name, lifecycle, executor_input, spec,
                            task_root, pipeline_root, run_name, env, python,
                            timeout)
    if result.hook.returncode:
      result.seconds = time.monotonic() - start
      return result

  result.parameters = dict(executor_input["inputs"]["parameterValues"])
  result.command = _resolve(container.get("command", []) +
                            container.get("args", []), executor_input,
                            name, pipeline_root, run_name, python)
  result.stdout_path = os.path.join(task_root, "stdout.txt")
  result.stderr_path = os.path.join(task_root, "stderr.txt")
  result.returncode = _call(result.command, task_root, env,
                            result.stdout_path, result.stderr_path, timeout)
  result.seconds = time.monotonic() - start
  if result.returncode == 0:
    result.outputs = _outputs_from_executor_output(
        {k: v["artifacts"] for k, v in
         executor_input["outputs"].get("artifacts", {}).items()},
        executor_input["outputs"]["outputFile"])
  return result


def _run_hook(name, lifecycle, executor_input, spec, task_root,
              pipeline_root, run_name, env, python, timeout) -> HookRun:
  """Runs preCacheCheck; applies the ExecutorOutput it wrote to
  executor_input (parameters, output artifacts' metadata)."""
  hook_dir = os.path.join(task_root, HOOK_DIR)
  os.makedirs(hook_dir, exist_ok=True)
  command = _resolve(lifecycle.get("command", []) + lifecycle.get("args", []),
                     executor_input, name, pipeline_root, run_name, python)
  hook = HookRun(command=command, returncode=-1, parameter_updates={},
                 stdout_path=os.path.join(hook_dir, "stdout.txt"),
                 stderr_path=os.path.join(hook_dir, "stderr.txt"))
  hook.returncode = _call(command, task_root, env, hook.stdout_path,
                          hook.stderr_path, timeout)
  output_file = executor_input["outputs"]["outputFile"]
  if hook.returncode or not os.path.exists(output_file):
    return hook
  with open(output_file) as f:
    written = json.load(f)
  # Parsed as the proto first: a malformed file fails here, not later.
  json_format.ParseDict(written, pipeline_spec_pb2.ExecutorOutput(),
                        ignore_unknown_fields=True)
  shutil.move(output_file, os.path.join(hook_dir,
                                        os.path.basename(output_file)))
  # The older typed `parameters`, then `parameterValues` (plain in JSON).
  for key, value in written.get("parameters", {}).items():
    hook.parameter_updates[key] = _plain_typed_value(value)
  hook.parameter_updates.update(written.get("parameterValues", {}))
  for key, value in hook.parameter_updates.items():
    _set_parameter(executor_input, spec, key, value)
  declared = executor_input["outputs"].get("artifacts", {})
  for key, artifact_list in written.get("artifacts", {}).items():
    for mine, theirs in zip(declared.get(key, {}).get("artifacts", []),
                            artifact_list.get("artifacts", [])):
      mine.setdefault("metadata", {}).update(theirs.get("metadata", {}))
  return hook


def _resolve(command: List[str], executor_input: Dict[str, Any], name: str,
             pipeline_root: str, run_name: str, python: str) -> List[str]:
  resolved = placeholder_utils.replace_placeholders(
      full_command=command, executor_input_dict=executor_input,
      pipeline_resource_name=run_name, task_resource_name=name,
      pipeline_root=pipeline_root)
  if resolved and os.path.basename(resolved[0]) in ("python", "python3"):
    resolved[0] = python  # the image's interpreter is this environment's
  return resolved


def _call(command, cwd, env, stdout_path, stderr_path, timeout) -> int:
  with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
    try:
      return subprocess.run(command, cwd=cwd, env=dict(env or os.environ),
                            stdout=out, stderr=err, timeout=timeout,
                            check=False).returncode
    except subprocess.TimeoutExpired:
      err.write(f"\n[kfp_spec_runner] timed out after {timeout} s\n".encode())
      return -1


def _run_resolver(name, resolver, inputs, task_root, store) -> TaskRun:
  """Each output is the newest artifacts matching its query; an input a
  query refers to that resolved to nothing makes that output empty."""
  result = TaskRun(name=name, kind=RESOLVER, task_root=task_root,
                   inputs=inputs)
  view = {"inputs": {"artifacts": {k: {"artifacts": v}
                                   for k, v in inputs.items()}}}
  for key, query in resolver.get("outputArtifactQueries", {}).items():
    query_filter = query["filter"]
    refers_to = re.findall(r"\{\{\$\.inputs\.artifacts\['([^']+)'\]",
                           query_filter)
    if any(not inputs.get(k) for k in refers_to):
      result.outputs[key] = []
      continue
    query_filter = placeholder_utils.resolve_io_placeholders(view,
                                                             query_filter)
    result.outputs[key] = store.query(query_filter,
                                      int(query.get("limit") or 1))
  return result


def _run_importer(name, component, importer, inputs, task_root, store,
                  run_name) -> TaskRun:
  """The artifact at the importer's constant URI; without reimport, the
  one already recorded for that URI if there is one."""
  uri_spec = importer.get("artifactUri", {})
  if "constant" in uri_spec:
    uri = uri_spec["constant"]
  elif "constantValue" in uri_spec:
    uri = _plain_typed_value(uri_spec["constantValue"])
  else:
    raise NotImplementedError(f"importer {name}: artifactUri {uri_spec}")
  (key, _), = component["outputDefinitions"]["artifacts"].items()
  artifact = {"name": f"{run_name}/{name}/{key}",
              "type": importer["typeSchema"], "uri": uri,
              "metadata": importer.get("metadata", {})}
  if not importer.get("reimport"):
    title = _schema_title(artifact)
    for record in reversed(store.records()):
      if (record["artifact"]["uri"] == uri
          and _schema_title(record["artifact"]) == title):
        artifact = copy.deepcopy(record["artifact"])
        break
  return TaskRun(name=name, kind=IMPORTER, task_root=task_root,
                 inputs=inputs, outputs={key: [artifact]})
