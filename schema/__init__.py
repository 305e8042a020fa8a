"""Curated data schemas, one per task, imported into the pipeline with ImportSchemaGen."""

import os

_HERE = os.path.dirname(os.path.abspath(__file__))


def schema_path(task: str) -> str:
  """Path of the checked-in schema.pbtxt for `binary` or `multiclass`."""
  path = os.path.join(_HERE, task, "schema.pbtxt")
  if not os.path.exists(path):
    raise ValueError(f"no schema for task {task!r} (expected {path})")
  return path
