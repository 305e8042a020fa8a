"""Pipeline runs on real chest X-rays, each in its own process, for the
`scale` and `memory` benchmarks (not a benchmark itself).

* `binary_folder` links N real JPEGs of the shared binary data set into a
  temporary folder in the Kaggle binary layout (train/{NORMAL,PNEUMONIA},
  test/{NORMAL,PNEUMONIA}), keeping the data set's proportions of split and
  class, so a pipeline runs on N real images. Hard links, not symbolic
  ones: ingestion quarantines symbolic links by design
  (image_layouts.SYMLINK_REASON); a copy only where the temporary folder is
  on another file system.
* `run_child` runs `python -m bench.pipeline_runs` (the whole pipeline
  through `pipeline.runner.run`, or some of its nodes as a TFX partial run
  whose other nodes' artifacts come from the previous run in the same
  output folder) and measures, from outside, its wall time and the peak
  resident memory of the child and every process under it (Beam's
  multi-processing workers are such processes).

The run is cheap on purpose where the benchmark allows it: one model, no
confidence intervals, blessing floors of 0 (so the Pusher always pushes).
"""

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
import threading
import time
from typing import Dict, List, Optional, Sequence

import psutil

from bench import harness

# Folders of the Kaggle binary layout, as `binary_folder` fills them.
FOLDERS = ("train/NORMAL", "train/PNEUMONIA", "test/NORMAL", "test/PNEUMONIA")
SAMPLE_SECONDS = 0.05  # how often the child's process tree is measured


def _binary_paths(seed: int) -> Dict[str, List[str]]:
  """Every image of the binary data set by folder, in a seeded order."""
  return {f: harness.real_images(f"chest_xray/{f}/*.jpeg", 10**9, seed)
          for f in FOLDERS}


def binary_size() -> int:
  """Images in the shared binary data set."""
  return sum(len(p) for p in _binary_paths(0).values())


def binary_folder(dst: str, n: int, seed: int = 0) -> str:
  """Hard-links n real JPEGs of chest_xray into dst in the binary layout, each
  folder getting its share of n (largest remainder, at least 2 each);
  returns dst."""
  paths = {f: harness.real_images(f"chest_xray/{f}/*.jpeg", 10**9, seed)
           for f in FOLDERS}
  total = sum(len(p) for p in paths.values())
  if n > total:
    sys.exit(f"error: {n} images asked, the binary data set has {total}")
  exact = {f: n * len(paths[f]) / total for f in FOLDERS}
  share = {f: max(2, int(exact[f])) for f in FOLDERS}
  for f in sorted(FOLDERS, key=lambda f: int(exact[f]) - exact[f]):
    if sum(share.values()) >= n:
      break
    share[f] += 1
  while sum(share.values()) > n:  # the minimum of 2 took some
    share[max(FOLDERS, key=lambda f: share[f])] -= 1
  for folder in FOLDERS:
    os.makedirs(os.path.join(dst, folder), exist_ok=True)
    for path in paths[folder][:share[folder]]:
      target = os.path.join(dst, folder, os.path.basename(path))
      try:
        os.link(path, target)
      except OSError:  # another file system
        shutil.copyfile(path, target)
  return dst


@dataclasses.dataclass
class Settings:
  """What a run trains: kept small, since the benchmarks time the pipeline
  around training as much as training."""
  model: str = "cnn"
  image_size: int = 64
  epochs: int = 1
  batch_size: int = 32
  beam_mode: str = "in_memory"

  def args(self) -> List[str]:
    return [f"--{k.replace('_', '-')}={v}"
            for k, v in dataclasses.asdict(self).items()]

  def describe(self) -> str:
    return (f"model {self.model}, {self.image_size} px, {self.epochs} "
            f"epoch(s), batch {self.batch_size}, Beam {self.beam_mode}, no "
            "confidence intervals, blessing floors 0")


@dataclasses.dataclass
class ChildResult:
  seconds: float  # wall time of the child process, start to exit
  peak_bytes: int  # peak of the sampled RSS sum over its process tree
  max_processes: int  # most processes in its tree at one sample
  maxrss_bytes: int  # the kernel's peak RSS of its largest single process
  # User + system CPU seconds of the child and the processes it waited for.
  cpu_seconds: float = 0.0


def add_arguments(parser: argparse.ArgumentParser, defaults: Settings) -> None:
  """--model, --image-size, --epochs, --batch-size, --beam-mode."""
  for field in dataclasses.fields(Settings):
    parser.add_argument("--" + field.name.replace("_", "-"), type=field.type,
                        default=getattr(defaults, field.name),
                        help="(default: %(default)s)")


def settings_of(args: argparse.Namespace) -> Settings:
  return Settings(**{f.name: getattr(args, f.name)
                     for f in dataclasses.fields(Settings)})


def node_ids(settings: Settings) -> List[str]:
  """The pipeline's node ids in the order the runner runs them (a
  topological order), for a run with settings' model."""
  # pylint: disable=g-import-not-at-top
  from pipeline import pipeline as pipeline_lib
  from schema import settings as settings_lib
  built = pipeline_lib.create_pipeline(
      pipeline_name="nodes", pipeline_root="unused", data_root="unused",
      task="binary", serving_base="unused",
      run=settings_lib.RunSettings(models=(settings.model,)))
  return [c.id for c in built.components]


def _tree_rss(process: psutil.Process):
  """(RSS sum in bytes, number of processes) of process and its
  descendants; processes that end while being read are left out."""
  total, count = 0, 0
  try:
    tree = [process] + process.children(recursive=True)
  except psutil.NoSuchProcess:
    return 0, 0
  for p in tree:
    try:
      total += p.memory_info().rss
      count += 1
    except (psutil.NoSuchProcess, psutil.AccessDenied):
      pass
  return total, count


def run_child(data: str, out: str, settings: Settings, log_path: str,
              nodes: Optional[Sequence[str]] = None) -> ChildResult:
  """Runs the pipeline (or only `nodes`) on data into out in a child
  process; its output goes to log_path. SystemExit with the log's end if
  it fails."""
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(
      [harness.REPO] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
  env.setdefault("TF_USE_LEGACY_KERAS", "1")
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  command = [sys.executable, "-m", "bench.pipeline_runs", "--data", data,
             "--out", out, *settings.args()]
  if nodes:
    command.append("--nodes=" + ",".join(nodes))
  peak, most, done = [0], [0], threading.Event()
  with open(log_path, "a", encoding="utf-8") as log:
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                             env=env)
    process = psutil.Process(child.pid)

    def sample():
      while not done.is_set():
        rss, count = _tree_rss(process)
        peak[0], most[0] = max(peak[0], rss), max(most[0], count)
        done.wait(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    # wait4: this child's own resource use, its peak RSS among them.
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    child.returncode = os.waitstatus_to_exitcode(status)
  if child.returncode:
    with open(log_path, encoding="utf-8", errors="replace") as f:
      tail = f.read()[-3000:]
    sys.exit(f"error: pipeline run {' '.join(command)} exited "
             f"{child.returncode}; the end of {log_path}:\n{tail}")
  maxrss = usage.ru_maxrss * 1024  # KiB on Linux
  return ChildResult(seconds, max(peak[0], maxrss), most[0], maxrss,
                     usage.ru_utime + usage.ru_stime)


def node_seconds(out: str) -> Dict[str, float]:
  """Wall seconds of each node the latest run in `out` ran, from ML
  Metadata (pipeline/summary.py)."""
  # pylint: disable=g-import-not-at-top
  from pipeline import summary
  from schema import layout
  return summary.summarize(layout.output_paths(out).metadata,
                           layout.pipeline_name("binary")).seconds


def main(argv=None) -> int:
  """The child: one run of the pipeline, whole or partial."""
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--data", required=True)
  parser.add_argument("--out", required=True)
  parser.add_argument("--nodes", default="",
                      help="comma list: run only these nodes")
  add_arguments(parser, Settings())
  args = parser.parse_args(argv)
  # pylint: disable=g-import-not-at-top
  from tfx.orchestration import pipeline as tfx_pipeline
  from pipeline import runner
  from schema import settings as settings_lib
  nodes = [n for n in args.nodes.split(",") if n]
  runner.run(
      args.data, "binary", args.out,
      settings_lib.RunSettings(models=(args.model,), beam_mode=args.beam_mode,
                               confidence_intervals=False),
      settings_lib.TrainingSettings(image_size=args.image_size,
                                    epochs=args.epochs,
                                    batch_size=args.batch_size),
      settings_lib.GateSettings(0.0, 0.0, 0.0),
      run_options=(tfx_pipeline.RunOptions(from_nodes=nodes, to_nodes=nodes)
                   if nodes else None))
  return 0


if __name__ == "__main__":
  sys.exit(main())
