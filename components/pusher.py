"""TFX's Pusher, with atomic pushes and no duplicate version on a re-run.

Atomic: TFX's Pusher copies the SavedModel straight into <base>/<version>/,
saved_model.pb last, so a push killed mid-copy leaves a numbered folder
with half a model in it. This executor copies into a staging folder beside
the versions, `.staging-<version>-<random>`, which no server takes for a
version (TF Serving and `cxr serve` take only all-digit names,
layout.model_versions), and renames it to <version> once every file is
there. A leftover staging folder of a killed push is invisible to servers;
the next push of the same model removes those older than an hour
(STALE_SECONDS), never a younger one, which may be a push still running.

No duplicate: a re-run with unchanged data and code takes the Trainer's
model from the cache; the Evaluator runs again (it now has a baseline: that
same model) and blesses it, and TFX's Pusher would copy the same SavedModel
once more as a new timestamped version, which TF Serving would then load as
if it were new. When the latest version under the push destination already
holds exactly the candidate's files, this executor records the push as that
version instead (pushed, its destination and version) and copies nothing.

Everything else is TFX's Pusher executor: the blessing check, the archive
copy into the pushed_model artifact, its pushed / pushed_destination /
pushed_version properties, and other push destinations (handed to TFX).
"""

import hashlib
import os
import time
from typing import Any, Dict, List, Optional, Tuple
import uuid

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

STAGING_PREFIX = ".staging-"  # not all digits: never a version
# A staging folder this much older than a new push is a killed push's
# leftover (a push takes seconds to minutes), and that push removes it.
STALE_SECONDS = 3600


class Executor(pusher_executor.Executor):
  """Pushes a blessed model atomically, unless its latest pushed version
  is the same model."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    base = _base_directory(exec_properties)
    if base is None:  # not a filesystem push: TFX's own
      super().Do(input_dict, output_dict, exec_properties)
      return
    self._log_startup(input_dict, output_dict, exec_properties)
    model_push = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.PUSHED_MODEL_KEY])
    if not self.CheckBlessing(input_dict):
      self._MarkNotPushed(model_push)
      return
    model_path = self.GetModelPath(input_dict)
    served = served_copy(model_path, base)
    if served:
      logging.info("Pusher: %s is already served as %s; not pushing it "
                   "again", model_path, served)
      destination, version = served, os.path.basename(served)
    else:
      destination, version = push(model_path, base)
    io_utils.copy_dir(model_path, model_push.uri)  # archived, as TFX does
    self._MarkPushed(model_push, pushed_destination=destination,
                     pushed_version=version)
    logging.info("Model pushed to %s.", model_push.uri)


def _base_directory(exec_properties: Dict[str, Any]) -> Optional[str]:
  """The filesystem destination's base folder; None for other kinds."""
  destination = pusher_pb2.PushDestination()
  proto_utils.json_to_proto(
      exec_properties[standard_component_specs.PUSH_DESTINATION_KEY],
      destination)
  if destination.WhichOneof("destination") != "filesystem":
    return None
  versioning = destination.filesystem.versioning
  if versioning not in (pusher_pb2.Versioning.AUTO,
                        pusher_pb2.Versioning.UNIX_TIMESTAMP):
    raise NotImplementedError(f"Invalid Versioning {versioning}")  # as TFX
  return destination.filesystem.base_directory


def push(model_path: str, base_directory: str) -> Tuple[str, str]:
  """Copies model_path to <base>/<unix time>/ atomically where the file
  system can; returns (that folder, its version)."""
  version = str(int(time.time()))  # TFX's UNIX_TIMESTAMP versioning
  logging.info("Model version: %s", version)
  serving_path = os.path.join(base_directory, version)
  if fileio.exists(serving_path):
    # As TFX: a push in the same second as the last one is skipped.
    logging.info("Destination directory %s already exists, skipping current "
                 "push.", serving_path)
    return serving_path, version
  remove_stale_staging(base_directory, int(version))
  staging = os.path.join(base_directory,
                         f"{STAGING_PREFIX}{version}-{uuid.uuid4().hex[:8]}")
  local = layout.is_local(base_directory)
  # saved_model.pb last, as TFX copies it: TF Serving and other readers take
  # it as the sign that a SavedModel is complete.
  io_utils.copy_dir(model_path, staging,
                    deny_regex_patterns=[r"saved_model\.pb"])
  saved_model = os.path.join(model_path, layout.SAVED_MODEL_FILE)
  if local and fileio.exists(saved_model):
    io_utils.copy_file(saved_model,
                       os.path.join(staging, layout.SAVED_MODEL_FILE))
  # On a local disk a folder's rename is atomic: the version appears whole
  # or not at all. On GCS (and other object stores) there are no folders,
  # and a rename is a copy and a delete of every object, so a reader can
  # see part of the folder: there saved_model.pb is copied after the
  # rename, and TF Serving waits for it before it loads the version.
  # overwrite=False: a version that appeared meanwhile is never replaced.
  fileio.rename(staging, serving_path, overwrite=False)
  if not local and fileio.exists(saved_model):
    io_utils.copy_file(saved_model,
                       os.path.join(serving_path, layout.SAVED_MODEL_FILE))
  logging.info("Model written to serving path %s.", serving_path)
  return serving_path, version


def remove_stale_staging(base_directory: str, now: int) -> List[str]:
  """Removes staging folders of pushes started STALE_SECONDS before `now`
  (killed pushes); returns them. Younger ones may be pushes still running.
  """
  try:
    names = [n.rstrip("/") for n in fileio.listdir(base_directory)]
  except fileio.NotFoundError:
    return []
  removed = []
  for name in names:
    started = name[len(STAGING_PREFIX):].split("-")[0]
    if (name.startswith(STAGING_PREFIX) and started.isdigit()
        and now - int(started) > STALE_SECONDS):
      path = os.path.join(base_directory, name)
      logging.info("Pusher: removing %s, left by a push that did not "
                   "finish", path)
      fileio.rmtree(path)
      removed.append(path)
  return removed


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
