"""A run SIGKILLed during Transform, and again during training, resumes
from the cache and finishes; no half-written artifact is ever used
(issue 15, "Faults").

`cxr run` runs as a child process on a small synthetic set. The test reads
its log (TFX's BeamDagRunner logs "node X is running." at INFO on stderr)
and kills the child's process group once the component is writing its
output folder, then reads what each run did back from ML Metadata.

What TFX does, measured here: an execution killed mid-way stays RUNNING in
ML Metadata for good and publishes no output artifact (TFX records outputs
only when an execution succeeds), so its half-written folders under
pipeline_root are on disk but nothing refers to them. The next run is a new
pipeline run: the components that completed are cache hits, the killed one
runs again as a new execution into a new folder, and nothing waits for the
stale RUNNING execution.
"""

import collections
import os
import signal
import subprocess
import sys
import threading
import time

from ml_metadata.proto import metadata_store_pb2

from pipeline import summary
from pipeline import synthetic
from schema import layout

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Long enough that the Trainer is caught training: the kill comes about 1 s
# into fit (before the first epoch ends), and 6 epochs of 64-px images take
# about 6 s on 2 cores (the first, with tracing, 3 s), then calibration and
# the export follow.
EPOCHS = 6
SHARED = ("ImageExampleGen", "ImportSchemaGen", "StatisticsGen",
          "ImageStatisticsGen",
          "ExampleValidator", "DataValidationGate")
TRANSFORM, TRAINER = "Transform", layout.node_id(layout.TRAINER, "cnn")
EVALUATOR = layout.node_id(layout.EVALUATOR, "cnn")
PUSHER = layout.node_id(layout.PUSHER, "cnn")
_State = metadata_store_pb2.Execution
DONE = (_State.COMPLETE, _State.CACHED)


def _writing(folder: str) -> bool:
  """Whether any file or folder exists below folder's execution folders."""
  return os.path.isdir(folder) and any(
      os.listdir(os.path.join(folder, e)) for e in os.listdir(folder))


def _cxr_run(data: str, out: str, log: str, kill_when=None,
             kill_node: str = "") -> int:
  """Runs `cxr run`; with kill_node, SIGKILLs it once that node is running
  and kill_when() holds. Returns the exit code (-9 when killed)."""
  command = [sys.executable, "-m", "cxr.cli", "run", "--data", data,
             "--task", "binary", "--output", out, "--models", "cnn",
             "--image-size", "64", "--epochs", str(EPOCHS),
             "--batch-size", "16", "--min-accuracy", "0", "--min-auc", "0",
             "--min-recall", "0", "--no-intervals"]
  running, finished = threading.Event(), threading.Event()
  start = time.monotonic()
  with open(log, "w") as log_file:
    child = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=dict(os.environ, PYTHONPATH=REPO), start_new_session=True)

    def read():  # keeps the pipe drained, so the child never blocks on it
      for line in child.stdout:
        log_file.write(line)
        if kill_node and f"node {kill_node} is running." in line:
          running.set()
        if kill_node and f"node {kill_node} is finished." in line:
          finished.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
      if kill_node:
        deadline = time.monotonic() + 300
        while not (running.is_set() and kill_when()):
          assert child.poll() is None, f"the run ended first; see {log}"
          assert time.monotonic() < deadline, f"{kill_node} never started"
          time.sleep(0.2)
        os.killpg(child.pid, signal.SIGKILL)  # the run's own process group
        assert not finished.is_set(), f"{kill_node} finished before the kill"
      code = child.wait(timeout=600)
    finally:
      if child.poll() is None:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
    reader.join(timeout=30)
  print(f"{os.path.basename(log)}: exit {code} after "
        f"{time.monotonic() - start:.0f} s")
  return code


def _runs(metadata: str):
  """[{node id: execution}] of each pipeline run, oldest first."""
  store = summary.open_store(metadata)
  runs = sorted(store.get_contexts_by_type("pipeline_run"),
                key=lambda c: c.create_time_since_epoch)
  result = []
  for run in runs:
    by_node = {}
    for execution in store.get_executions_by_context(run.id):
      node = next(c.name.split(".", 1)[1]
                  for c in store.get_contexts_by_execution(execution.id)
                  if c.type == "node")
      by_node[node] = execution
    result.append(by_node)
  return store, result


def test_a_run_killed_in_transform_then_in_training_resumes(tmp_path):
  data, out = str(tmp_path / "data"), str(tmp_path / "out")
  synthetic.generate(data, n=120, size=64, seed=5)
  paths = layout.output_paths(out)

  # 1. Killed while Transform writes the transformed examples: its
  # transform_graph folder may be whole by then, its examples are half.
  code = _cxr_run(data, out, str(tmp_path / "run1.log"), kill_node=TRANSFORM,
                  kill_when=lambda: _writing(os.path.join(
                      paths.pipeline_root, TRANSFORM, "transformed_examples")))
  assert code == -signal.SIGKILL
  # 2. Killed while the Trainer trains (its TensorBoard logs have started).
  code = _cxr_run(data, out, str(tmp_path / "run2.log"), kill_node=TRAINER,
                  kill_when=lambda: _writing(os.path.join(
                      paths.pipeline_root, TRAINER, "model_run")))
  assert code == -signal.SIGKILL
  # 3. Runs to the end.
  code = _cxr_run(data, out, str(tmp_path / "run3.log"))
  assert code == 0, f"see {tmp_path / 'run3.log'}"

  store, runs = _runs(paths.metadata)
  assert len(runs) == 3
  state = [{node: _State.State.Name(e.last_known_state)
            for node, e in run.items()} for run in runs]
  # Run 1: the shared components ran; Transform was killed mid-way and
  # stays RUNNING in ML Metadata; nothing after it started.
  assert all(state[0][n] == "COMPLETE" for n in SHARED), state[0]
  assert state[0][TRANSFORM] == "RUNNING"
  assert TRAINER not in state[0]
  # Run 2: what completed came from the cache; Transform ran again and
  # completed; the Trainer was killed.
  assert all(state[1][n] == "CACHED" for n in SHARED), state[1]
  assert state[1][TRANSFORM] == "COMPLETE"
  assert state[1][TRAINER] == "RUNNING"
  assert EVALUATOR not in state[1]
  # Run 3: everything up to Transform from the cache; the Trainer ran
  # again, and the branch finished.
  assert all(state[2][n] == "CACHED" for n in SHARED + (TRANSFORM,)), state[2]
  for node in (TRAINER, EVALUATOR, PUSHER):
    assert state[2][node] == "COMPLETE", state[2]
  latest = summary.summarize(paths.metadata, layout.pipeline_name("binary"))
  assert set(latest.states.values()) <= set(summary.DONE_STATES)
  assert latest.models["cnn"].blessed is True

  # The killed executions published nothing ...
  killed = [runs[0][TRANSFORM], runs[1][TRAINER]]
  killed_ids = {e.id for e in killed}
  events = store.get_events_by_execution_ids(killed_ids)
  assert not [e for e in events
              if e.type == metadata_store_pb2.Event.OUTPUT], events
  # ... so no artifact in the store lies in their half-written folders ...
  for execution, node in ((runs[0][TRANSFORM], TRANSFORM),
                          (runs[1][TRAINER], TRAINER)):
    folder = os.path.join(paths.pipeline_root, node)
    assert not [a.uri for a in store.get_artifacts()
                if a.uri.startswith(folder + os.sep)
                and a.uri.endswith(os.sep + str(execution.id))]
  # ... and every input of every execution is a LIVE artifact that only
  # completed executions produced.
  executions = {e.id: e for e in store.get_executions()}
  inputs = [e for e in store.get_events_by_execution_ids(list(executions))
            if e.type == metadata_store_pb2.Event.INPUT]
  producers = collections.defaultdict(set)
  for event in store.get_events_by_artifact_ids(
      list({e.artifact_id for e in inputs})):
    if event.type == metadata_store_pb2.Event.OUTPUT:
      producers[event.artifact_id].add(event.execution_id)
  for artifact in store.get_artifacts_by_id(list(producers)):
    assert artifact.state == metadata_store_pb2.Artifact.LIVE, artifact.uri
  for event in inputs:
    made_by = producers[event.artifact_id]
    assert made_by, f"input {event.artifact_id} has no producer"
    assert all(executions[p].last_known_state in DONE for p in made_by)
  # The Trainer that finished read Transform's graph from run 2's complete
  # execution, not the killed one's folder.
  trainer_inputs = store.get_artifacts_by_id(
      [e.artifact_id for e in inputs
       if e.execution_id == runs[2][TRAINER].id])
  graph = [a.uri for a in trainer_inputs
           if a.uri.split(os.sep)[-2] == "transform_graph"]
  assert graph == [os.path.join(paths.pipeline_root, TRANSFORM,
                                "transform_graph",
                                str(runs[1][TRANSFORM].id))]

  # One model pushed, whole, under a numbered version.
  model_dir = os.path.join(paths.serving,
                           layout.serving_model_name("binary", "cnn"))
  versions = layout.model_versions(model_dir)
  assert len(versions) == 1 and layout.is_servable(
      next(iter(versions.values())))
  assert latest.models["cnn"].pushed_model in versions.values()
