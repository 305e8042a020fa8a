"""Peak resident memory of each pipeline component at a small and a 4x
larger data set; the ratio is the largest peak's growth (large / small).

What runs: the pipeline (`pipeline.runner.run`, BeamDagRunner) on a sample
of the shared binary data set in the Kaggle binary layout
(bench/pipeline_runs.py) of --small and --large real images, at --image-size
(default 224 px, the thesis's), one model for 1 epoch. The issue's sizes,
500 and 2000 images, take about twice the default's time, mostly training
at 224 px: `--small 500 --large 2000`.

How each component's peak is measured: in one BeamDagRunner process every
component runs in the same Python process, whose resident memory rarely
shrinks, so its peak while the Trainer runs holds whatever Transform left
behind. So the pipeline's nodes, in the order the runner runs them, are
run as TFX partial runs (RunOptions(from_nodes, to_nodes), the other nodes'
artifacts taken from the previous run in the same output folder), each
group in its own child process, as each component would run in its own
container on Kubeflow or Vertex AI. A group is one component that does the
work (ImageExampleGen, StatisticsGen, Transform, Trainer, Evaluator) and the
light nodes next after it in that order (ImportSchemaGen, ExampleValidator,
DataValidationGate, the model resolver, Pusher), which only read small
artifacts: their peak is within the group's. A group's peak is the larger
of the RSS summed over the child and every process under it, sampled every
50 ms (Beam's multi-processing workers are such processes; the table says
the most processes seen), and the kernel's peak RSS of the child itself
(wait4's ru_maxrss), which no sample can miss. Every peak includes the
child's imports (Python, TensorFlow, TFX, Beam): the floor, about the
peak of the lightest group. The small and the large runs go side by side,
group by group.

The ratio: the largest group peak at --large over the largest at --small
(target <= 1.25: flat in the data size); every peak must also stay under
4 GiB.

  cxr bench memory [--small 250] [--large 1000] [--model cnn]
      [--image-size 224] [--epochs 1] [--batch-size 32]
      [--beam-mode in_memory]

--smoke: 16 and 64 images, the first group (ImageExampleGen,
ImportSchemaGen) only: a group's process alone takes about 15 s here.
"""

import os
import sys
import tempfile
from typing import List

from bench import harness
from bench import pipeline_runs
from schema import layout

# Components whose executors do the work; every other node joins the group
# of the one before it.
WORKING = (layout.EXAMPLE_GEN, "StatisticsGen", "Transform", layout.TRAINER,
           layout.EVALUATOR)
LIMIT_BYTES = 4 * 2**30
MIB = 2**20


def groups(nodes: List[str]) -> List[List[str]]:
  """Consecutive nodes, each group starting at a working component. A run
  of consecutive nodes of a topological order is a valid partial run: any
  path between two of them passes only through nodes between them."""
  out: List[List[str]] = []
  for node in nodes:
    if not out or any(node == w or node.startswith(w + "_") for w in WORKING):
      out.append([node])
    else:
      out[-1].append(node)
  return out


def main(argv=None) -> int:
  parser = harness.parser(__doc__)
  parser.add_argument("--small", type=int, default=250,
                      help="images of the small data set (default: "
                      "%(default)s)")
  parser.add_argument("--large", type=int, default=1000,
                      help="images of the large one (default: %(default)s)")
  parser.add_argument("--seed", type=int, default=0,
                      help="seed of the image sample")
  pipeline_runs.add_arguments(parser, pipeline_runs.Settings(image_size=224))
  args = parser.parse_args(argv)
  harness.print_machine()
  settings = pipeline_runs.settings_of(args)
  sizes = (16, 64) if args.smoke else (args.small, args.large)
  plan = groups(pipeline_runs.node_ids(settings))
  if args.smoke:
    plan = plan[:1]
  print(f"sizes: {sizes[0]} and {sizes[1]} real images (binary data set, "
        f"Kaggle layout); {settings.describe()}; groups, one process "
        f"each: {' | '.join(', '.join(g) for g in plan)}\n", flush=True)

  peaks = {n: [] for n in sizes}
  with tempfile.TemporaryDirectory(prefix="cxr-bench-memory-") as work:
    for n in sizes:
      pipeline_runs.binary_folder(os.path.join(work, f"data-{n}"), n,
                                  args.seed)
    for group in plan:
      for n in sizes:
        out = os.path.join(work, f"out-{n}")
        result = pipeline_runs.run_child(
            os.path.join(work, f"data-{n}"), out, settings,
            os.path.join(work, f"log-{n}.txt"), group)
        seconds = pipeline_runs.node_seconds(out)
        peaks[n].append(result)
        print(f"{group[0]} (+{len(group) - 1}), {n} images: peak "
              f"{result.peak_bytes / MIB:.0f} MiB, "
              f"{sum(seconds.get(node, 0.0) for node in group):.1f} s in "
              f"the nodes, {result.seconds:.1f} s in all", flush=True)
  print()

  small, large = sizes
  rows = []
  for i, group in enumerate(plan):
    s, l = peaks[small][i], peaks[large][i]
    rows.append([", ".join(group), s.peak_bytes / MIB, l.peak_bytes / MIB,
                 l.peak_bytes / s.peak_bytes, s.maxrss_bytes / MIB,
                 l.maxrss_bytes / MIB, max(s.max_processes, l.max_processes)])
  harness.table(
      ["nodes (one process)", f"peak MiB, {small} images",
       f"peak MiB, {large} images", "large / small",
       f"largest process MiB, {small}", f"largest process MiB, {large}",
       "most processes"], rows)
  top = {n: max(r.peak_bytes for r in peaks[n]) for n in sizes}
  worst = max(range(len(plan)), key=lambda i: peaks[large][i].peak_bytes)
  floor = min(r.peak_bytes for r in peaks[small])
  print(f"largest peak: {top[small] / MIB:.0f} MiB at {small} images, "
        f"{top[large] / MIB:.0f} MiB at {large} ({plan[worst][0]}); the "
        f"lightest group's peak (about the imports' floor) "
        f"{floor / MIB:.0f} MiB")
  over = [", ".join(plan[i]) for i in range(len(plan))
          if max(peaks[n][i].peak_bytes for n in sizes) > LIMIT_BYTES]
  print("4 GiB per component: " + (f"EXCEEDED by {over}" if over
                                    else "every peak is under it"))
  return harness.finish(top[large] / top[small])


if __name__ == "__main__":
  sys.exit(main())
