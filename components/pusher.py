"""TFX's Pusher, minus the duplicate version a cached re-run would push.

A re-run with unchanged data and code takes the Trainer's model from the
cache; the Evaluator runs again (it now has a baseline: that same model)
and blesses it, and TFX's Pusher would copy the same SavedModel once more
as a new timestamped version, which TF Serving would then load as if it
were new. When the latest version under the push destination already holds
exactly the candidate's files, this executor records the push as that
version instead (pushed, its destination and version) and copies nothing.
Everything else is TFX's Pusher executor.
"""

import hashlib
import os
from typing import Any, Dict, List, Optional

from absl import logging
from tfx import types
from tfx.components.pusher import executor as pusher_executor
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils
from tfx.types import standard_component_specs
from tfx.utils import io_utils
from tfx.utils import proto_utils

from schema import layout


class Executor(pusher_executor.Executor):
  """Pushes a blessed model unless its latest pushed version is the same."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    if self.CheckBlessing(input_dict):
      model_path = self.GetModelPath(input_dict)
      served = served_copy(model_path, _base_directory(exec_properties))
      if served:
        model_push = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.PUSHED_MODEL_KEY])
        logging.info("Pusher: %s is already served as %s; not pushing it "
                     "again", model_path, served)
        io_utils.copy_dir(model_path, model_push.uri)  # archived, as TFX does
        self._MarkPushed(model_push, pushed_destination=served,
                         pushed_version=os.path.basename(served))
        return
    super().Do(input_dict, output_dict, exec_properties)


def _base_directory(exec_properties: Dict[str, Any]) -> Optional[str]:
  destination = pusher_pb2.PushDestination()
  proto_utils.json_to_proto(
      exec_properties[standard_component_specs.PUSH_DESTINATION_KEY],
      destination)
  if destination.WhichOneof("destination") != "filesystem":
    return None
  return destination.filesystem.base_directory


def served_copy(model_path: str, base_directory: Optional[str]
                ) -> Optional[str]:
  """The latest version under base_directory if it holds exactly
  model_path's files (same names, same bytes); else None."""
  if not base_directory:
    return None
  versions = layout.model_versions(base_directory)
  if not versions:
    return None
  latest = versions[max(versions)]
  return latest if _digests(latest) == _digests(model_path) else None


def _digests(root: str) -> Dict[str, str]:
  """{relative file path: sha256} of every file under root.

  By content: a copy has the same bytes but not the same modification
  times, so layout.fingerprint would tell it apart.
  """
  digests = {}
  for directory, _, files in fileio.walk(root):
    for name in files:
      path = os.path.join(directory, name)
      digest = hashlib.sha256()
      with fileio.open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
          digest.update(chunk)
      digests[os.path.relpath(path, root)] = digest.hexdigest()
  return digests
