"""Whole-pipeline wall time at growing image counts; the ratio is the fitted
exponent of its growth.

What runs: the whole pipeline (`pipeline.runner.run`, BeamDagRunner) on N
real chest X-rays for each N of --counts: a sample of the shared binary
data set in the Kaggle binary layout (bench/pipeline_runs.py), each run
in a fresh child process and output folder, one model trained cheaply
(default: cnn, 64 px, 1 epoch; the pipeline around training is what
grows with N here, and the training share grows with N too). The wall
time is the child's, start to exit: Python, TensorFlow and TFX imports and
every component's fixed cost are the fixed overhead. Each node's seconds
come from ML Metadata (its execution's creation to its last update,
pipeline/summary.py), the non-training components separately.

The fit: T(N) = a + b * N^k by least squares (for each k on a fine grid,
a >= 0 and b >= 0 by linear least squares; the k of least error), of the
wall time and of the CPU time (user + system seconds of the child and the
processes it waited for, from wait4). The ratio is the wall-time fit's k
(target <= 1.1: no worse than linear in the data); `a` is the fixed
overhead. When the wall-time fit finds no growth (b = 0), its k means
nothing (on a shared machine a run's wall time can move by more than the
data adds at these counts) and the ratio is the CPU-time fit's k, which
other processes move less; the output says which it is. Each component
with at least a second at some N gets the wall-time fit. With --rounds R
every count runs R times, the order of the counts alternating between
rounds (up, then down), and medians are fitted.

  cxr bench scale [--counts 250,500,1000,2000] [--rounds 1] [--model cnn]
      [--image-size 64] [--epochs 1] [--batch-size 32] [--beam-mode in_memory]

--smoke: 16 and 32 images through ImageExampleGen and ImportSchemaGen only
(a TFX partial run): a whole run does not fit the smoke's minute here.
"""

import collections
import math
import os
import sys
import tempfile
from typing import Dict, List, Sequence, Tuple

from bench import harness
from bench import pipeline_runs

DEFAULT_COUNTS = "250,500,1000,2000"
SMOKE_COUNTS = (16, 32)
SMOKE_NODES = ("ImageExampleGen", "ImportSchemaGen")
TRAINING = ("Trainer",)
MIN_FITTED_SECONDS = 1.0  # components quicker than this get no fit


def fit_power(counts: Sequence[float], seconds: Sequence[float]
              ) -> Tuple[float, float, float]:
  """(a, b, k) of T = a + b * N^k, least squares with a, b >= 0 and k on a
  grid of 0.01 .. 4 by 0.001."""
  best = None
  for step in range(10, 4001):
    k = step / 1000
    x = [n ** k for n in counts]
    a, b = _linear_fit(x, seconds)
    error = sum((a + b * xi - t) ** 2 for xi, t in zip(x, seconds))
    if best is None or error < best[0]:
      best = (error, a, b, k)
  return best[1], best[2], best[3]


def _linear_fit(x: Sequence[float], y: Sequence[float]
                ) -> Tuple[float, float]:
  """(a, b) of y = a + b * x, least squares, both kept >= 0."""
  mx, my = sum(x) / len(x), sum(y) / len(y)
  sxx = sum((xi - mx) ** 2 for xi in x)
  b = sum((xi - mx) * (yi - my) for xi, yi in zip(x, y)) / sxx if sxx else 0
  a = my - b * mx
  if b < 0:
    return my, 0.0
  if a < 0:  # through the origin
    return 0.0, max(0.0, sum(xi * yi for xi, yi in zip(x, y))
                    / sum(xi * xi for xi in x))
  return a, b


def _order(counts: List[int], round_index: int) -> List[int]:
  return counts if round_index % 2 == 0 else counts[::-1]


def main(argv=None) -> int:
  parser = harness.parser(__doc__)
  parser.add_argument("--counts", default=DEFAULT_COUNTS,
                      help="comma list of image counts (default: %(default)s)")
  parser.add_argument("--rounds", type=int, default=1,
                      help="runs of every count, alternating the order")
  parser.add_argument("--seed", type=int, default=0,
                      help="seed of the image sample")
  pipeline_runs.add_arguments(parser, pipeline_runs.Settings())
  args = parser.parse_args(argv)
  harness.print_machine()
  settings = pipeline_runs.settings_of(args)
  counts = (list(SMOKE_COUNTS) if args.smoke
            else sorted(int(c) for c in args.counts.split(",")))
  nodes = list(SMOKE_NODES) if args.smoke else None
  if len(counts) < 2:
    sys.exit("error: --counts needs at least two counts to fit")
  print(f"counts: {', '.join(map(str, counts))} real images (binary data "
        f"set, Kaggle layout); {args.rounds} round(s); "
        + (f"smoke: only {', '.join(nodes)}" if nodes else
           "the whole pipeline") + f"; {settings.describe()}\n", flush=True)

  walls: Dict[int, List[float]] = collections.defaultdict(list)
  cpus: Dict[int, List[float]] = collections.defaultdict(list)
  parts: Dict[int, Dict[str, List[float]]] = collections.defaultdict(
      lambda: collections.defaultdict(list))
  with tempfile.TemporaryDirectory(prefix="cxr-bench-scale-") as work:
    for n in counts:
      pipeline_runs.binary_folder(os.path.join(work, f"data-{n}"), n,
                                  args.seed)
    for round_index in range(args.rounds):
      for n in _order(counts, round_index):
        out = os.path.join(work, f"out-{n}-{round_index}")
        result = pipeline_runs.run_child(
            os.path.join(work, f"data-{n}"), out, settings,
            os.path.join(work, "log.txt"), nodes)
        walls[n].append(result.seconds)
        cpus[n].append(result.cpu_seconds)
        for node, seconds in pipeline_runs.node_seconds(out).items():
          parts[n][node].append(seconds)
        print(f"round {round_index + 1}, {n} images: {result.seconds:.1f} s "
              f"({result.cpu_seconds:.1f} CPU s)", flush=True)
  print()

  wall = {n: harness.median(walls[n]) for n in counts}
  cpu = {n: harness.median(cpus[n]) for n in counts}
  part = {n: {node: harness.median(v) for node, v in parts[n].items()}
          for n in counts}
  order = sorted(parts[counts[-1]],
                 key=lambda node: -part[counts[-1]].get(node, 0.0))
  training = [node for node in order
              if any(node.startswith(t) for t in TRAINING)]
  other = [node for node in order if node not in training]
  header = (["images", "wall s", "CPU s", "not training s"]
            + [f"{node} s" for node in order])
  rows = []
  for n in counts:
    rows.append([n, wall[n], cpu[n],
                 sum(part[n].get(node, 0.0) for node in other)]
                + [part[n].get(node, 0.0) for node in order])
  harness.table(header, rows)

  a, b, k = fit_power(counts, [wall[n] for n in counts])
  fits = [["wall time", a, b, k, wall[counts[-1]] / wall[counts[0]]],
          ["CPU time", *fit_power(counts, [cpu[n] for n in counts]),
           cpu[counts[-1]] / cpu[counts[0]]]]
  not_training = [row[3] for row in rows]
  fits.append(["not training (sum)", *fit_power(counts, not_training),
               not_training[-1] / max(not_training[0], 1e-9)])
  for node in order:
    values = [part[n].get(node, 0.0) for n in counts]
    if max(values) >= MIN_FITTED_SECONDS:
      fits.append([node, *fit_power(counts, values),
                   values[-1] / max(values[0], 1e-9)])
  print(f"fit T(N) = a + b * N^k over N = {counts[0]}..{counts[-1]} "
        f"({counts[-1] / counts[0]:g}x the images):")
  harness.table(["what", "a (fixed s)", "b", "k (exponent)",
                 "largest / smallest N"], fits)
  slope = (math.log(wall[counts[-1]] / wall[counts[0]])
           / math.log(counts[-1] / counts[0]))
  print(f"fixed overhead a = {a:.1f} s; growth beyond it: b * N^k = "
        f"{b * counts[-1] ** k:.1f} s at {counts[-1]} images; log-log "
        f"slope of the whole wall time {slope:.3f}")
  if b == 0:
    k = fits[1][3]
    print("the wall-time fit found no growth above the fixed overhead, so "
          "its exponent means nothing: the ratio is the CPU-time fit's, "
          f"{k:.3g}")
  return harness.finish(k)


if __name__ == "__main__":
  sys.exit(main())
