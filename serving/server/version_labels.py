"""Version labels (`stable`, `canary`) of the served models, and their
history, kept in the serving folder beside the versions.

TF Serving keeps labels in its model config (`ModelConfig.version_labels`,
re-read every `--model_config_file_poll_wait_seconds`); clients name one
with `ModelSpec.version_label` (gRPC) or `/v1/models/NAME/labels/LABEL`
(REST). This module holds them in `SERVING/<layout.VERSION_LABELS_FILE>`:

  {"cxr_binary_cnn": {"stable": [3, 5], "canary": [6]}}

each label with the versions it named, the current one last, so that a
rollback can return to the one before. `cxr serve` reads it on every poll;
serving.tf_serving_config writes the labels into models.config for TF
Serving. `promote` and `rollback` replace the file atomically (a temporary
file renamed over it), so a server never reads half of it.
"""

import json
import os
import tempfile
from typing import Dict, List, Optional

from tfx.dsl.io import fileio

from schema import contract
from schema import layout

History = Dict[str, Dict[str, List[int]]]  # {model: {label: [versions]}}


class LabelError(ValueError):
  """A promotion or rollback that cannot be done, and why."""


def labels_path(serving_base: str) -> str:
  return os.path.join(serving_base, layout.VERSION_LABELS_FILE)


def read_history(serving_base: str) -> History:
  """Every model's labels with their past versions; {} without a file."""
  path = labels_path(serving_base)
  if not fileio.exists(path):
    return {}
  with fileio.open(path, "r") as f:
    history = json.load(f)
  return {model: {label: [int(v) for v in versions]
                  for label, versions in labels.items() if versions}
          for model, labels in history.items()}


def current(history: History) -> Dict[str, Dict[str, int]]:
  """{model: {label: version}}: what each label names now."""
  return {model: {label: versions[-1] for label, versions in labels.items()}
          for model, labels in history.items() if labels}


def read_labels(serving_base: str) -> Dict[str, Dict[str, int]]:
  return current(read_history(serving_base))


def _write(serving_base: str, history: History) -> None:
  path = labels_path(serving_base)
  text = json.dumps(history, indent=1, sort_keys=True) + "\n"
  if not layout.is_local(path):
    with fileio.open(path, "w") as f:  # gs:// replaces an object whole
      f.write(text)
    return
  with tempfile.NamedTemporaryFile("w", dir=serving_base, delete=False,
                                   prefix=".labels.") as f:
    f.write(text)
  os.chmod(f.name, 0o644)  # readable by a server running as another user
  os.replace(f.name, path)


def _check_label(label: str) -> None:
  if label not in contract.VERSION_LABELS:
    raise LabelError(f"unknown label {label!r}: expected one of "
                     f"{', '.join(contract.VERSION_LABELS)}")


def promote(serving_base: str, model: str, version: int,
            label: str) -> Optional[int]:
  """Points `label` of `model` at `version`; returns the version it named
  before (None if none). The version must be pushed and loadable."""
  _check_label(label)
  path = layout.served_models(serving_base).get(model, {}).get(version)
  if path is None or not layout.is_servable(path):
    raise LabelError(f"{model} has no version {version} with "
                     f"{layout.SAVED_MODEL_FILE} under {serving_base}")
  history = read_history(serving_base)
  versions = history.setdefault(model, {}).setdefault(label, [])
  before = versions[-1] if versions else None
  if before != version:
    versions.append(version)
    _write(serving_base, history)
  return before


def rollback(serving_base: str, model: str, label: str) -> Optional[int]:
  """Returns `label` of `model` to the version it named before its last
  promotion, or removes it when there was none (a withdrawn canary).
  Returns the version it names now (None: removed)."""
  _check_label(label)
  history = read_history(serving_base)
  versions = history.get(model, {}).get(label)
  if not versions:
    raise LabelError(f"{model} has no {label} label to roll back under "
                     f"{serving_base}")
  gone = versions.pop()
  if versions:
    path = layout.served_models(serving_base).get(model, {}).get(versions[-1])
    if path is None or not layout.is_servable(path):
      raise LabelError(f"{label} of {model} named version {versions[-1]} "
                       f"before {gone}, which is no longer pushed under "
                       f"{serving_base}; promote a version instead")
  else:
    del history[model][label]
  _write(serving_base, history)
  return versions[-1] if versions else None
