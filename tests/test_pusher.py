"""components.pusher: a model TF Serving already serves is not pushed again,
and a push is atomic: a version folder appears whole or not at all."""

import os

from components import pusher


def _saved_model(root, weights=b"w1"):
  os.makedirs(os.path.join(root, "variables"), exist_ok=True)
  with open(os.path.join(root, "saved_model.pb"), "wb") as f:
    f.write(b"graph")
  with open(os.path.join(root, "variables", "variables.data"), "wb") as f:
    f.write(weights)
  return str(root)


def test_the_latest_identical_version_is_found(tmp_path):
  model = _saved_model(tmp_path / "model")
  base = tmp_path / "serving" / "cxr_binary_cnn"
  assert pusher.served_copy(model, str(base)) is None  # nothing pushed yet
  _saved_model(base / "100")
  assert pusher.served_copy(model, str(base)) == str(base / "100")
  os.makedirs(base / ".staging-101")  # not a version: ignored
  assert pusher.served_copy(model, str(base)) == str(base / "100")


def test_other_bytes_or_files_or_an_older_match_are_not_the_same(tmp_path):
  model = _saved_model(tmp_path / "model")
  base = tmp_path / "serving"
  _saved_model(base / "100")
  _saved_model(base / "200", weights=b"w2")  # the latest differs
  assert pusher.served_copy(model, str(base)) is None
  _saved_model(base / "300")
  with open(base / "300" / "extra.txt", "w") as f:
    f.write("x")
  assert pusher.served_copy(model, str(base)) is None
  assert pusher.served_copy(model, None) is None


# A push killed mid-copy (issue 15, "Faults"): the executor runs in a child
# process whose file copies are slowed down, and is SIGKILLed after the
# first files of the SavedModel are copied.
_KILLED_PUSH = """
import sys, time
from tfx.dsl.io import fileio
from tests import test_pusher
copy, marker = fileio.copy, sys.argv[1]
def slow_copy(src, dst, overwrite=False):
  copy(src, dst, overwrite=overwrite)
  with open(marker, "a") as f:
    f.write(dst + "\\n")
  time.sleep(60)  # killed while it waits
fileio.copy = slow_copy
test_pusher.run_pusher(*sys.argv[2:])
"""


def tiny_saved_model(model_uri: str) -> str:
  """A real SavedModel where the Trainer's Model artifact keeps it."""
  # pylint: disable=g-import-not-at-top
  import tensorflow as tf
  from tfx.types import standard_artifacts
  from tfx.utils import path_utils
  model = standard_artifacts.Model()
  model.uri = model_uri
  path = path_utils.serving_model_path(
      model_uri, path_utils.is_old_model_artifact(model))
  module = tf.Module()
  module.w = tf.Variable([2.0])
  module.double = tf.function(lambda x: {"y": x * module.w},
                              input_signature=[tf.TensorSpec([None])])
  tf.saved_model.save(module, path,
                      signatures={"serving_default": module.double})
  return path


def run_pusher(model_uri: str, base: str, pushed_uri: str, blessed: int = 1):
  """The project's Pusher executor on a model; its PushedModel."""
  # pylint: disable=g-import-not-at-top
  from tfx.proto import pusher_pb2
  from tfx.types import standard_artifacts
  from tfx.utils import proto_utils
  model = standard_artifacts.Model()
  model.uri = model_uri
  blessing = standard_artifacts.ModelBlessing()
  blessing.uri = model_uri + "-blessing"
  blessing.set_int_custom_property("blessed", blessed)
  pushed = standard_artifacts.PushedModel()
  pushed.uri = pushed_uri
  destination = pusher_pb2.PushDestination(
      filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base))
  pusher.Executor().Do(
      {"model": [model], "model_blessing": [blessing]},
      {"pushed_model": [pushed]},
      {"push_destination": proto_utils.proto_to_json(destination)})
  return pushed


def test_a_push_killed_mid_copy_leaves_no_version(tmp_path):
  # pylint: disable=g-import-not-at-top
  import signal
  import subprocess
  import sys
  import time
  from schema import layout
  from serving.server import repository
  from serving.server import tensors
  model_uri = str(tmp_path / "Trainer" / "model" / "1")
  model_path = tiny_saved_model(model_uri)
  serving = tmp_path / "serving"
  base = str(serving / "cxr_binary_cnn")
  marker = str(tmp_path / "copied")
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  child = subprocess.Popen(
      [sys.executable, "-c", _KILLED_PUSH, marker, model_uri, base,
       str(tmp_path / "pushed" / "1")],
      env=dict(os.environ, PYTHONPATH=repo))
  deadline = time.monotonic() + 120
  while not os.path.exists(marker):  # the first file is copied
    assert child.poll() is None, "the push ended before it was killed"
    assert time.monotonic() < deadline, "the push never started copying"
    time.sleep(0.1)
  os.kill(child.pid, signal.SIGKILL)
  assert child.wait() == -signal.SIGKILL
  with open(marker) as f:
    copied = f.read().split()
  assert len(copied) == 1 and layout.SAVED_MODEL_FILE not in copied[0]

  # Half a model on disk, but under a name no server takes for a version.
  leftovers = os.listdir(base)
  assert len(leftovers) == 1, leftovers
  assert leftovers[0].startswith(pusher.STAGING_PREFIX)
  assert not any(name.isdigit() for name in leftovers)
  assert layout.served_models(str(serving)) == {"cxr_binary_cnn": {}}
  server = repository.ModelRepository(str(serving), tensors.RequestLimits(256, 1 << 29),
                                      warm_up=False)
  server.poll()
  assert server.models() == {}

  # The next push succeeds beside the leftover, which it leaves alone: it
  # is younger than STALE_SECONDS, so it might be a push still running.
  pushed = run_pusher(model_uri, base, str(tmp_path / "pushed" / "2"))
  versions = layout.model_versions(base)
  assert len(versions) == 1
  version, path = next(iter(versions.items()))
  assert pushed.get_int_custom_property("pushed") == 1
  assert pushed.get_string_custom_property("pushed_destination") == path
  assert pushed.get_string_custom_property("pushed_version") == str(version)
  assert pusher.served_copy(model_path, base) == path  # every file, whole
  assert pusher.served_copy(model_path, pushed.uri) is None  # no versions
  assert os.path.exists(os.path.join(pushed.uri, layout.SAVED_MODEL_FILE))
  assert leftovers[0] in os.listdir(base)
  server.poll()
  assert server.models() == {"cxr_binary_cnn": (version,)}


def test_a_model_not_blessed_is_not_pushed(tmp_path):
  model_uri = str(tmp_path / "Trainer" / "model" / "1")
  tiny_saved_model(model_uri)
  base = tmp_path / "serving" / "cxr_binary_cnn"
  pushed = run_pusher(model_uri, str(base), str(tmp_path / "pushed" / "1"),
                      blessed=0)
  assert pushed.get_int_custom_property("pushed") == 0
  assert not base.exists()


def test_stale_staging_folders_are_removed_young_ones_kept(tmp_path):
  base = tmp_path / "serving" / "cxr_binary_cnn"
  now = 2_000_000_000
  old = base / f"{pusher.STAGING_PREFIX}{now - pusher.STALE_SECONDS - 1}-ab"
  young = base / f"{pusher.STAGING_PREFIX}{now - 60}-cd"
  for folder in (old, young, base / "1000", base / ".other"):
    os.makedirs(folder)
  assert pusher.remove_stale_staging(str(base), now) == [str(old)]
  assert sorted(os.listdir(base)) == sorted(
      [young.name, "1000", ".other"])
  assert pusher.remove_stale_staging(str(tmp_path / "missing"), now) == []
