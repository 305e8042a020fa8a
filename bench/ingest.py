"""Ingestion into TFRecords, images/s: the ImageExampleGen component (its
best Beam DirectRunner mode) vs a plain single-process loop doing the same
checks.

Contenders, on the same real chest X-rays (by default every image of the
shared binary data set, linked into a temporary folder in the Kaggle binary
layout by bench/pipeline_runs.py; or the data set folders given), task
binary unless --task:

* the component: components/image_example_gen.py's Executor, run in this
  process as the pipeline runs it, with Beam's DirectRunner in_memory (one
  worker, the pipeline's default), multi_processing with one worker per
  core, multi_processing with one worker (the scaling of that mode with
  cores), and multi_threading with one worker thread per core (a mode the
  pipeline does not offer; measured to see whether threads would do);
* the plain loop: the launcher-side listing and split carving
  (image_layouts.list_images, carve_splits), then for every file the
  component's own per-file step (its ReadAndCheck DoFn called directly:
  the regular-file check, the read, check_image with Pillow and
  TensorFlow's decoder, the 16-bit PNG depth, the tf.Example), written to
  one GZIP TFRecord file per split with tf.io.TFRecordWriter, and the
  quarantined files to a CSV.

Each contender runs once per round, the order rotating between rounds;
the table gives each one's median seconds and images/s (files seen per
second, start to finish, the multi-processing workers' start-up included;
apart, the seconds of the executor's construction, see `component`).
All must ingest and quarantine the same numbers of files. The ratio is the
component's best mode among those the pipeline offers (in_memory,
multi_processing) over the loop, in images/s (target >= 1.0).

  cxr bench ingest [--images N] [--copies K] [--rounds 3] [--task binary]
                   [DATA_DIR ...]

(Before the benchmark contract this was `.venv/bin/python bench/ingest.py
[DATA_DIR ...]`, the two Beam modes only; that command still runs it.)

--smoke: 32 images, one round, the loop and in_memory only.
"""

import collections
import csv
import json
import os
import sys
import tempfile
import time
from typing import Dict, List, Sequence, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # run as a script: bench/ingest.py
  sys.path.insert(0, REPO)

# pylint: disable=g-import-not-at-top,g-bad-import-order,wrong-import-position
from bench import harness
from bench import pipeline_runs
# The project first: schema/__init__.py selects Keras 2 before TensorFlow.
from components import image_example_gen
from components import image_ingestion
from components import image_layouts
from pipeline import runner
from schema import contract
from schema import layout
from schema import settings
import tensorflow as tf
from tfx.types import standard_artifacts

LOOP = "plain loop"
IN_MEMORY = "component, in_memory"


def beam_modes(smoke: bool) -> Dict[str, List[str]]:
  """The component's DirectRunner modes: name -> Beam arguments. The smoke
  run takes in_memory only: the others start worker processes or threads
  the same code path does not need to prove, and cost it minutes."""
  cores = len(os.sched_getaffinity(0))
  modes = {IN_MEMORY: runner.beam_args("in_memory")}
  if smoke:
    return modes
  modes[f"component, multi_processing x{cores}"] = [
      "--direct_running_mode=multi_processing",
      f"--direct_num_workers={cores}"]
  if cores > 1:
    modes["component, multi_processing x1"] = [
        "--direct_running_mode=multi_processing", "--direct_num_workers=1"]
  # Not a pipeline setting (schema/settings.py's BEAM_MODES): worker threads
  # in this process, for the decoders that release the GIL.
  modes[f"component, multi_threading x{cores}"] = [
      "--direct_running_mode=multi_threading",
      f"--direct_num_workers={cores}"]
  return modes


def component(input_base: str, task: str, beam_args: List[str],
              out: str) -> Tuple[float, Dict[str, int]]:
  """Runs the ImageExampleGen executor; (seconds of its construction, its
  image counts). TFX's Beam executors package TFX itself (an sdist built
  in a subprocess) when constructed with Beam arguments that name no
  dependencies, as the pipeline's multi-processing mode does (its
  in-memory mode passes none): timed here too, and shown apart. The sdist
  goes into `out`, not the system's temporary folder."""
  examples = standard_artifacts.Examples()
  examples.uri = os.path.join(out, "examples")
  quarantine = image_example_gen.ImageQuarantine()
  quarantine.uri = os.path.join(out, "quarantine")
  os.makedirs(out, exist_ok=True)
  previous, tempfile.tempdir = tempfile.tempdir, out
  try:
    start = time.perf_counter()
    executor = image_example_gen.Executor(image_example_gen.Executor.Context(
        beam_pipeline_args=beam_args, tmp_dir=os.path.join(out, "tmp")))
    setup = time.perf_counter() - start
  finally:
    tempfile.tempdir = previous
  executor.Do({}, {"examples": [examples], "quarantine": [quarantine]},
              {"input_base": input_base, "task": task, "source": "",
               "eval_percent": settings.RunSettings().eval_percent,
               "split_salt": image_example_gen.DEFAULT_SPLIT_SALT,
               "input_fingerprint": ""})
  counts = json.loads(examples.get_string_custom_property(
      layout.COUNTS_PROPERTY))
  return setup, {k: counts[k] for k in ("seen", "ingested", "quarantined")}


def plain_loop(input_base: str, task: str, out: str) -> Dict[str, int]:
  """The same listing, carving and per-file checks in one process, one
  file after another; its image counts."""
  roots = layout.data_folders(input_base)
  sources, _ = layout.source_names(roots)
  records, quarantined = [], []
  for root, source in zip(roots, sources):
    _, found, bad, _ = image_layouts.list_images(root, task, source)
    records += found
    quarantined += [(q.path, q.reason) for q in bad]
  # The component's per-file step itself, so that the checks are the same.
  check = image_ingestion.ReadAndCheck(task, settings.RunSettings().views)
  os.makedirs(out)
  writers = {s: tf.io.TFRecordWriter(os.path.join(out, f"{s}.tfrecord.gz"),
                                     options="GZIP")
             for s in contract.SPLITS}
  ingested = 0
  for pair in image_layouts.carve_splits(
      records, settings.RunSettings().eval_percent,
      image_example_gen.DEFAULT_SPLIT_SALT):
    for result in check.process(pair):
      if isinstance(result, tuple):
        writers[result[0]].write(result[1])
        ingested += 1
      else:  # a TaggedOutput of the quarantine
        quarantined.append(result.value)
  for writer in writers.values():
    writer.close()
  with open(os.path.join(out, layout.QUARANTINE_FILE), "w",
            encoding="utf-8", newline="") as f:
    csv.writer(f).writerows([("path", "reason")] + quarantined)
  return {"seen": ingested + len(quarantined), "ingested": ingested,
          "quarantined": len(quarantined)}


def _link_copies(folder: str, copies: int) -> None:
  """Hard-links every file under folder copies - 1 more times beside
  itself, as copy2_NAME, copy3_NAME, ..."""
  for parent, _, names in os.walk(folder):
    for name in names:
      for k in range(2, copies + 1):
        os.link(os.path.join(parent, name),
                os.path.join(parent, f"copy{k}_{name}"))


def _rotated(names: Sequence[str], round_index: int) -> List[str]:
  shift = round_index % len(names)
  return list(names[shift:]) + list(names[:shift])


def measure(input_base: str, task: str, rounds: int, smoke: bool):
  """Seconds of every contender in every round, the seconds of those of
  its executor's construction, and its counts."""
  modes = beam_modes(smoke)
  names = [LOOP] + list(modes)
  seconds, setups = collections.defaultdict(list), collections.defaultdict(
      list)
  counts = {}
  with tempfile.TemporaryDirectory(prefix="cxr-bench-ingest-") as work:
    for round_index in range(rounds):
      for name in _rotated(names, round_index):
        out = os.path.join(work, f"{len(seconds[name])}-{names.index(name)}")
        start = time.perf_counter()
        if name == LOOP:
          counts[name], setup = plain_loop(input_base, task, out), 0.0
        else:
          setup, counts[name] = component(input_base, task, modes[name], out)
        seconds[name].append(time.perf_counter() - start)
        setups[name].append(setup)
        print(f"round {round_index + 1}: {name}: {seconds[name][-1]:.1f} s",
              flush=True)
  return seconds, setups, counts


def main(argv=None) -> int:
  parser = harness.parser(__doc__)
  parser.add_argument("data", nargs="*", metavar="DATA_DIR",
                      help="data set folders, ingested together (default: "
                      "a sample of the shared binary data set)")
  parser.add_argument("--images", type=int, default=0,
                      help="images of the sample (default: all of the "
                      "binary data set)")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--task", default="binary", choices=contract.TASKS)
  parser.add_argument("--seed", type=int, default=0,
                      help="seed of the image sample")
  parser.add_argument("--copies", type=int, default=1,
                      help="links of each sampled image under new names, "
                      "to time more files than the data set holds: two "
                      "runs at different copies give the fixed cost and "
                      "the per-image rate apart (default 1)")
  args = parser.parse_args(argv)
  harness.print_machine()
  rounds = 1 if args.smoke else args.rounds
  with tempfile.TemporaryDirectory(prefix="cxr-bench-ingest-data-") as tmp:
    if args.data:
      input_base = layout.join_data_folders(
          [os.path.abspath(d) for d in args.data])
      what = f"the data set folders {', '.join(args.data)}"
    else:
      n = 32 if args.smoke else args.images or pipeline_runs.binary_size()
      input_base = pipeline_runs.binary_folder(os.path.join(tmp, "data"), n,
                                               args.seed)
      what = f"{n} real images of the binary data set (Kaggle layout)"
      if args.copies > 1:
        _link_copies(input_base, args.copies)
        what += (f", each linked {args.copies} times under new names "
                 f"({n * args.copies} files)")
    print(f"images: {what}; task {args.task}; {rounds} round(s), the "
          "order rotating\n", flush=True)
    seconds, setups, counts = measure(input_base, args.task, rounds,
                                      args.smoke)
  print()

  if len({json.dumps(c, sort_keys=True) for c in counts.values()}) != 1:
    sys.exit(f"error: the contenders disagree on the counts: {counts}")
  seen = counts[LOOP]["seen"]
  rate = {name: seen / harness.median(s) for name, s in seconds.items()}
  harness.table(
      ["contender", "images seen", "ingested", "quarantined", "median s",
       "of which executor set-up s", "images/s", "rounds (s)"],
      [[name, seen, counts[name]["ingested"], counts[name]["quarantined"],
        harness.median(s), harness.median(setups[name]), rate[name],
        " ".join(f"{x:.1f}" for x in s)]
       for name, s in seconds.items()])
  # The ratio takes the modes `cxr run --beam-mode` offers.
  best = max((name for name in rate
              if name != LOOP and "multi_threading" not in name),
             key=rate.get)
  print(f"best Beam mode of the pipeline: {best}, {rate[best]:.4g} images/s;"
        f" the loop {rate[LOOP]:.4g} images/s")
  scaling = [name for name in rate if "multi_processing" in name]
  if len(scaling) == 2:
    many, one = sorted(scaling, key=lambda name: -int(name.rsplit("x", 1)[1]))
    print(f"multi_processing with {many.rsplit('x', 1)[1]} workers vs 1: "
          f"{rate[many] / rate[one]:.3g}x the images/s")
  return harness.finish(rate[best] / rate[LOOP])


if __name__ == "__main__":
  sys.exit(main())
