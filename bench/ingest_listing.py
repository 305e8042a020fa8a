"""Ingestion listing at scale: 100k synthetic file entries, listed on workers.

  .venv/bin/python bench/ingest_listing.py [--files 100000] [--images 300]
      [--layout binary|multiclass|both] [--work DIR] [--old-tree DIR]
      [--launcher-only]

Writes a synthetic data set (each layout) of `--files` entries: `--images`
small real PNG/JPEG files with Kermany names (so every split has data) and
the rest files of a few bytes, which ingestion quarantines as "not a JPEG or
PNG" -- enough for the accounting check, seen = ingested + quarantined. The
3-class set also has bad CSV rows (a missing file, a duplicate, an unknown
class id, an empty name) and an unlabelled file.

Then, each in a fresh process (so its peak RSS is its own):

* launcher, new: image_layouts.plan_folders + build_pipeline, as
  Executor.Do does before submitting -- the size of the Beam graph a runner
  would be sent, wall time and peak RSS;
* launcher, old: what Executor.Do did before issue 13 -- list_images on
  the launcher, carve_splits, and a graph with beam.Create of every record;
* the whole executor, new, with the DirectRunner (in_memory): wall time,
  counts, and the exact check;
* with --old-tree DIR (a checkout of the commit before, e.g. `git archive
  8193f45 | tar -x -C DIR`): the whole old executor the same way.

Under the DirectRunner the launcher process also runs the workers, so the
whole-run RSS is not a launcher's; the launcher rows are the ones to read
for a remote runner (Dataflow). Prints a Markdown table for BENCHMARKS.md.
"""

# Imports inside functions: each phase runs in its own process.
# pylint: disable=g-import-not-at-top
import argparse
import io
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SALT = "cxr"
EVAL_PERCENT = 10


def _image(fmt: str, rng: random.Random) -> bytes:
  from PIL import Image
  buf = io.BytesIO()
  Image.new("L", (48, 40), rng.randrange(256)).save(buf, format=fmt)
  return buf.getvalue()


def _name(i: int, kind: str, ext: str) -> str:
  if kind == "NORMAL":
    return f"IM-{i:06d}-0001.{ext}"
  return f"person{i}_{('bacteria', 'virus')[i % 2]}_{i}.{ext}"


def make_binary(root: str, n_files: int, n_images: int) -> None:
  rng = random.Random(0)
  for i in range(n_files):
    split = "test" if i % 10 == 0 else "train"
    kind = ("NORMAL", "PNEUMONIA")[i % 4 // 2]
    real = i < n_images
    ext = ("png", "jpeg")[i % 2] if real else "jpeg"
    folder = os.path.join(root, split, kind)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, _name(i, kind, ext)), "wb") as f:
      f.write(_image(ext.upper().replace("JPG", "JPEG"), rng) if real
              else b"%08d" % i)


def make_multiclass(root: str, n_files: int, n_images: int) -> None:
  rng = random.Random(0)
  rows = {"train": [], "test": []}
  for split in rows:
    os.makedirs(os.path.join(root, f"{split}_images"))
  for i in range(n_files - 5):  # five bad inputs are added below
    split = "test" if i % 10 == 0 else "train"
    class_id = i % 3
    real = i < n_images
    ext = ("png", "jpeg")[i % 2] if real else "jpeg"
    name = _name(i, ("NORMAL", "PNEUMONIA")[class_id > 0], ext)
    with open(os.path.join(root, f"{split}_images", name), "wb") as f:
      f.write(_image(ext.upper(), rng) if real else b"%08d" % i)
    rows[split].append(f"{name},{class_id}")
  first = rows["train"][0].split(",")[0]
  with open(os.path.join(root, "train_images", "unlabelled.jpeg"), "wb") as f:
    f.write(b"x")
  rows["train"] += ["missing.jpeg,1", f"{first},2", ",1"]
  with open(os.path.join(root, "train_images", "odd.jpeg"), "wb") as f:
    f.write(b"x")
  rows["train"].append("odd.jpeg,9")
  for split, lines in rows.items():
    with open(os.path.join(root, f"labels_{split}.csv"), "w") as f:
      f.write("file_name,class_id\n" + "\n".join(lines) + "\n")


def _peak_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def phase_launcher(data: str, old: bool) -> dict:
  # The project first: schema/__init__.py selects Keras 2 before TensorFlow.
  from components import image_example_gen
  from components import image_ingestion
  from components import image_layouts
  import apache_beam as beam
  from tfx.types import standard_artifacts
  imports_mb = _peak_rss_mb()
  start = time.perf_counter()
  pipeline = beam.Pipeline()
  if old:
    _, records, bad, _ = image_layouts.list_images(data, "multiclass")
    keyed = image_layouts.carve_splits(records, EVAL_PERCENT, SALT)
    _ = pipeline | "ListedImages" >> beam.Create(keyed)
    _ = pipeline | "ListedQuarantine" >> beam.Create(
        [(q.path, q.reason) for q in bad])
  else:
    _, folders, _ = image_layouts.plan_folders(data)
    examples = standard_artifacts.Examples()
    examples.uri = os.path.join(tempfile.mkdtemp(), "examples")
    quarantine = image_example_gen.ImageQuarantine()
    quarantine.uri = os.path.join(tempfile.mkdtemp(), "quarantine")
    image_ingestion.build_pipeline(pipeline, folders, "multiclass", 10,
                                   SALT, examples, quarantine)
  graph = len(pipeline.to_runner_api().SerializeToString())
  return {"seconds": time.perf_counter() - start, "graph_bytes": graph,
          "imports_rss_mb": imports_mb, "peak_rss_mb": _peak_rss_mb()}


def phase_run(data: str) -> dict:
  from components import image_example_gen
  from schema import layout
  from tfx.types import standard_artifacts
  out = tempfile.mkdtemp()
  examples = standard_artifacts.Examples()
  examples.uri = os.path.join(out, "examples")
  quarantine = image_example_gen.ImageQuarantine()
  quarantine.uri = os.path.join(out, "quarantine")
  executor = image_example_gen.Executor(image_example_gen.Executor.Context(
      beam_pipeline_args=["--direct_running_mode=in_memory",
                          "--direct_num_workers=1"],
      tmp_dir=os.path.join(out, "tmp")))
  start = time.perf_counter()
  executor.Do({}, {"examples": [examples], "quarantine": [quarantine]},
              {"input_base": data, "task": "multiclass", "source": "",
               "eval_percent": EVAL_PERCENT, "split_salt": SALT,
               "input_fingerprint": ""})
  seconds = time.perf_counter() - start
  counts = json.loads(examples.get_string_custom_property(
      layout.COUNTS_PROPERTY))
  with open(os.path.join(quarantine.uri, layout.QUARANTINE_FILE)) as f:
    lines = sum(1 for _ in f) - 1
  return {"seconds": seconds, "counts": counts, "quarantine_lines": lines,
          "peak_rss_mb": _peak_rss_mb()}


def _in_subprocess(phase: str, data: str, tree: str = REPO) -> dict:
  env = dict(os.environ, PYTHONPATH=tree, TF_CPP_MIN_LOG_LEVEL="2")
  done = subprocess.run(
      [sys.executable, os.path.abspath(__file__), "--phase", phase, data],
      env=env, cwd=tree, check=True, capture_output=True, text=True)
  return json.loads(done.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("data", nargs="?")
  parser.add_argument("--phase", choices=("new-launcher", "old-launcher",
                                          "run"))
  parser.add_argument("--files", type=int, default=100_000)
  parser.add_argument("--images", type=int, default=300)
  parser.add_argument("--layout", default="both",
                      choices=("binary", "multiclass", "both"))
  parser.add_argument("--work", default=None)
  parser.add_argument("--old-tree", default=None)
  parser.add_argument("--launcher-only", action="store_true",
                      help="skip the whole runs")
  args = parser.parse_args()
  if args.phase:
    if args.phase == "run":
      result = phase_run(args.data)
    else:
      result = phase_launcher(args.data, args.phase == "old-launcher")
    print(json.dumps(result))
    return

  work = args.work or tempfile.mkdtemp(prefix="ingest_listing_")
  layouts = (("binary", "multiclass") if args.layout == "both"
             else (args.layout,))
  print("| layout | what | seconds | graph bytes | peak RSS MB "
        "(after imports) | seen | ingested | quarantined |")
  print("|---|---|---|---|---|---|---|---|")
  for name in layouts:
    data = os.path.join(work, f"{name}_{args.files}")
    if not os.path.isdir(data):
      start = time.perf_counter()
      (make_binary if name == "binary" else make_multiclass)(
          data, args.files, args.images)
      print(f"<!-- wrote {data} in {time.perf_counter() - start:.0f} s -->",
            flush=True)
    for what, phase, tree in (("launcher, old", "old-launcher", REPO),
                              ("launcher, new", "new-launcher", REPO)):
      r = _in_subprocess(phase, data, tree)
      print(f"| {name} | {what} | {r['seconds']:.1f} | {r['graph_bytes']:,} "
            f"| {r['peak_rss_mb']:.0f} ({r['imports_rss_mb']:.0f}) "
            "| | | |", flush=True)
    runs = [] if args.launcher_only else [("whole run, new", REPO)]
    if args.old_tree and not args.launcher_only:
      runs.append(("whole run, old", os.path.abspath(args.old_tree)))
    for what, tree in runs:
      r = _in_subprocess("run", data, tree)
      c = r["counts"]
      exact = c["seen"] == c["ingested"] + c["quarantined"] == (
          c["ingested"] + r["quarantine_lines"])
      print(f"| {name} | {what} | {r['seconds']:.1f} | | "
            f"{r['peak_rss_mb']:.0f} | {c['seen']:,} | {c['ingested']:,} "
            f"({', '.join(f'{s} {c[s]}' for s in ('train', 'eval', 'test'))})"
            f" | {c['quarantined']:,}{'' if exact else ' MISMATCH'} |",
            flush=True)


if __name__ == "__main__":
  main()
