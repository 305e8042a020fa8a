"""What every benchmark of bench/__init__.py shares: its arguments, the
machine it ran on, the real images it measures on, and how it ends.

A benchmark module is

    def main(argv=None) -> int:
      args = harness.parser(__doc__).parse_args(argv)
      harness.print_machine()
      ...  # the contenders, side by side, printing Markdown
      return harness.finish(ratio)

and runs as `cxr bench NAME` (or `python -m bench.NAME`).
"""

import argparse
import glob
import os
import platform
import random
import statistics
import sys
from typing import Dict, List, Sequence

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The real chest X-rays (both Kaggle layouts); CXR_DATA points elsewhere.
DATA = os.environ.get("CXR_DATA", os.path.join(REPO, "..", "shared", "data"))
BINARY_DATA = os.path.join(DATA, "chest_xray")
MULTICLASS_DATA = os.path.join(DATA, "chest_xray_multiclass")
# CPU flags that decide which kernels TensorFlow can use.
FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "fma")


def parser(doc: str) -> argparse.ArgumentParser:
  """The benchmark's parser, with --smoke (a tiny run whose figures mean
  nothing: the tests run every benchmark so)."""
  result = argparse.ArgumentParser(
      description=doc.strip().splitlines()[0],
      formatter_class=argparse.RawDescriptionHelpFormatter)
  result.add_argument("--smoke", action="store_true",
                      help="a tiny run that only checks the benchmark runs")
  return result


def machine() -> Dict[str, str]:
  """Cores, CPU model and flags, memory, Python and TensorFlow."""
  cpu, flags = platform.processor() or "unknown", set()
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name") and cpu in ("unknown", ""):
          cpu = line.split(":", 1)[1].strip()
        elif line.startswith("flags"):
          flags = set(line.split(":", 1)[1].split())
  except OSError:
    pass
  memory = "unknown"
  try:
    pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    memory = f"{pages * page_size / 2**30:.1f} GiB"
  except (ValueError, OSError):
    pass
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return {
      "cores": str(len(os.sched_getaffinity(0))),
      "cpu": cpu,
      "flags": " ".join(f for f in FLAGS if f in flags) or "none of "
               + ",".join(FLAGS),
      "memory": memory,
      "python": platform.python_version(),
      "tensorflow": tf.__version__,
      "oneDNN": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default"),
      "gpus": str(len(tf.config.list_physical_devices("GPU"))),
  }


def has_amx() -> bool:
  return "amx_bf16" in machine()["flags"].split()


def print_machine() -> None:
  print(" | ".join(f"{k}: {v}" for k, v in machine().items()))
  print("command: " + " ".join(["cxr bench", _name()] + sys.argv[1:]) + "\n")


def _name() -> str:
  main = sys.modules.get("__main__")
  spec = getattr(main, "__spec__", None)
  return (spec.name.rsplit(".", 1)[-1] if spec is not None
          else os.path.splitext(os.path.basename(sys.argv[0]))[0])


def real_images(pattern: str, n: int, seed: int = 0) -> List[str]:
  """Paths of n real images matching `pattern` under DATA (e.g.
  "chest_xray/train/*/*.jpeg"), drawn at random with `seed`; all of them
  when there are fewer. SystemExit with a clear message without the data."""
  paths = sorted(glob.glob(os.path.join(DATA, pattern)))
  if not paths:
    sys.exit(f"error: no images match {pattern} under {DATA} (set CXR_DATA "
             "to the folder holding chest_xray and chest_xray_multiclass)")
  return random.Random(seed).sample(paths, min(n, len(paths)))


def median(values: Sequence[float]) -> float:
  return statistics.median(values)


def percentile(values: Sequence[float], q: float) -> float:
  """The q-th percentile (0..100), nearest rank."""
  ordered = sorted(values)
  rank = max(0, min(len(ordered) - 1,
                    int(round(q / 100 * len(ordered) + 0.5)) - 1))
  return ordered[rank]


def table(header: Sequence[str], rows: Sequence[Sequence]) -> None:
  """Prints a Markdown table; floats with 4 significant digits."""
  def cell(value):
    return f"{value:.4g}" if isinstance(value, float) else str(value)
  print("| " + " | ".join(header) + " |")
  print("|" + "---|" * len(header))
  for row in rows:
    print("| " + " | ".join(cell(v) for v in row) + " |")
  print()


def finish(ratio: float) -> int:
  """Ends the benchmark's output with its ratio, as `cxr bench` reads it."""
  print(f"ratio: {ratio:.4g}", flush=True)
  return 0
