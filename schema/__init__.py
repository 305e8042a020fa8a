"""The project's contract: what every other package agrees on.

contract.py names the data (features, tasks, classes, signatures),
layout.py where things live, settings.py every setting; the curated data
schemas, one per task (<task>/schema.pbtxt), are imported into the pipeline
with ImportSchemaGen. Every package of the project imports this one first.
"""

import os

# TFT 1.16 builds tf-keras models, and Keras 3 cannot save the SavedModels
# the pipeline needs: select Keras 2 before anything imports TensorFlow.
# Each package's __init__ imports this package, so this runs first.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

_HERE = os.path.dirname(os.path.abspath(__file__))


def schema_path(task: str) -> str:
  """Path of the checked-in schema.pbtxt for `binary` or `multiclass`."""
  path = os.path.join(_HERE, task, "schema.pbtxt")
  if not os.path.exists(path):
    raise ValueError(f"no schema for task {task!r} (expected {path})")
  return path


def image_summary_schema_path() -> str:
  """Path of the curated schema of image summaries `cxr skew` compares."""
  return os.path.join(_HERE, "image_summary.pbtxt")
