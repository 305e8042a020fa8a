"""Ingestion throughput on the real data: Beam in-memory vs multi-processing.

  .venv/bin/python bench/ingest.py [DATA_DIR ...]

Runs the ImageExampleGen executor on each data set with both DirectRunner
modes, side by side in one process, and prints a Markdown table for
BENCHMARKS.md. Default data: ../shared/data/chest_xray and
../shared/data/chest_xray_multiclass.
"""

import json
import os
import sys
import tempfile
import time

# The project first: schema/__init__.py selects Keras 2 before TensorFlow.
from components import image_example_gen  # pylint: disable=g-bad-import-order
from schema import layout
from schema import settings
from tfx.types import standard_artifacts  # pylint: disable=g-bad-import-order

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_DATA = [os.path.join(REPO, "..", "shared", "data", name)
                for name in ("chest_xray", "chest_xray_multiclass")]
MODES = {
    "in_memory": ["--direct_running_mode=in_memory", "--direct_num_workers=1"],
    "multi_processing": ["--direct_running_mode=multi_processing",
                         "--direct_num_workers=0"],
}


def ingest(data_dir: str, beam_args, out_dir: str):
  examples = standard_artifacts.Examples()
  examples.uri = os.path.join(out_dir, "examples")
  quarantine = image_example_gen.ImageQuarantine()
  quarantine.uri = os.path.join(out_dir, "quarantine")
  executor = image_example_gen.Executor(image_example_gen.Executor.Context(
      beam_pipeline_args=beam_args, tmp_dir=os.path.join(out_dir, "tmp")))
  start = time.perf_counter()
  executor.Do({}, {"examples": [examples], "quarantine": [quarantine]},
              {"input_base": data_dir, "task": "multiclass", "source": "",
               "eval_percent": settings.RunSettings().eval_percent,
               "split_salt": image_example_gen.DEFAULT_SPLIT_SALT,
               "input_fingerprint": ""})
  seconds = time.perf_counter() - start
  counts = json.loads(examples.get_string_custom_property(
      layout.COUNTS_PROPERTY))
  return seconds, counts


def main(data_dirs):
  print("| data set | Beam mode | images seen | seconds | images/s |")
  print("|---|---|---|---|---|")
  for data_dir in data_dirs:
    for mode, args in MODES.items():
      with tempfile.TemporaryDirectory() as out:
        seconds, counts = ingest(os.path.abspath(data_dir), args, out)
      seen = counts["seen"]
      print(f"| {os.path.basename(os.path.normpath(data_dir))} | {mode} | "
            f"{seen} | {seconds:.1f} | {seen / seconds:.0f} |", flush=True)


if __name__ == "__main__":
  main(sys.argv[1:] or DEFAULT_DATA)
