"""First-request latency after a model loads: with the export's warm-up
file, with `cxr serve`'s own one-small-image warm-up, and with none.

  .venv/bin/python bench/warmup_latency.py [--model-dir DIR] [--rounds 5]

Each measurement is a fresh Python process (kernels, oneDNN primitives
and traced functions are per process, so a second load in one process
would be warm already): it loads the SavedModel as `cxr serve` does
(serving.server.Servable), warms it up the chosen way, then times the
first requests, each then a second time: `serving_default` with one real
chest X-ray JPEG from ../shared/data, `gradcam` with it, `serving_default`
with the same X-ray as a 16-bit PNG, and with a batch of 32 of the JPEG. The three contenders are
alternated round by round. DIR defaults to an untrained thesis CNN
exported here; give a pushed model (OUT/serving/<model>/<version>) for
real figures. The warm-up file is written into a copy of DIR for the
"file" contender and removed from another for the two others.
"""

import argparse
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

REAL_IMAGES = os.path.join(REPO, "..", "shared", "data", "chest_xray",
                           "test", "PNEUMONIA")
CONTENDERS = ("file", "small-image", "none")


def _child(model_dir: str, contender: str, image_path: str) -> None:
  """Loads, warms up, times the first requests; prints JSON."""
  # pylint: disable=g-import-not-at-top
  import schema  # noqa: F401  pylint: disable=unused-import
  import tensorflow as tf
  from tensorflow_serving.apis import predict_pb2
  from schema import contract
  from schema.settings import ServeSettings
  from serving import server
  from serving.server import tensors
  settings = ServeSettings()
  limits = tensors.RequestLimits(settings.max_batch, settings.max_input_bytes)
  start = time.perf_counter()
  servable = server.Servable("m", 1, model_dir)
  loaded = time.perf_counter()
  if contender != "none":
    servable.warm_up(limits)
  warmed = time.perf_counter()
  with open(image_path, "rb") as f:
    image = f.read()
  # The same X-ray as a 16-bit PNG (a detector's export), and a full batch.
  pixels = tf.io.decode_jpeg(image, channels=1)
  png16 = tf.io.encode_png(tf.cast(pixels, tf.uint16) * 257).numpy()
  out = {"load_s": loaded - start, "warm_up_s": warmed - loaded}
  for name, signature, images in (
      ("jpeg", contract.SERVING_DEFAULT, [image]),
      ("gradcam", contract.GRADCAM, [image]),
      ("png16", contract.SERVING_DEFAULT, [png16]),
      ("batch32", contract.SERVING_DEFAULT, [image] * 32)):
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = signature
    request.inputs[contract.IMAGES_INPUT].CopyFrom(
        tf.make_tensor_proto(images, dtype=tf.string, shape=[len(images)]))
    for attempt in ("first", "second"):
      begin = time.perf_counter()
      servable.predict(request, limits)
      out[f"{attempt}_{name}_ms"] = (time.perf_counter() - begin) * 1000
  print("RESULT " + json.dumps(out), flush=True)


def _measure(model_dir: str, contender: str, image_path: str) -> dict:
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="2")
  done = subprocess.run(
      [sys.executable, __file__, "--child", contender, "--model-dir",
       model_dir, "--image", image_path], env=env, capture_output=True,
      text=True, check=True)
  line = [l for l in done.stdout.splitlines() if l.startswith("RESULT ")][-1]
  return json.loads(line[len("RESULT "):])


def _copies(model_dir: str, work: str) -> dict:
  # pylint: disable=g-import-not-at-top
  from schema import layout
  from serving.export import warmup
  with_file, without = (os.path.join(work, "with-file"),
                        os.path.join(work, "without"))
  shutil.copytree(model_dir, with_file)
  warmup.write_warmup_file(with_file)
  shutil.copytree(model_dir, without)
  if os.path.exists(os.path.join(without, layout.WARMUP_FILE)):
    os.remove(os.path.join(without, layout.WARMUP_FILE))
  return {"file": with_file, "small-image": without, "none": without}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model-dir")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--child", choices=CONTENDERS, help=argparse.SUPPRESS)
  parser.add_argument("--image", help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.child:
    _child(args.model_dir, args.child, args.image)
    return 0
  work = tempfile.mkdtemp(prefix="warmup-")
  model_dir = args.model_dir
  if model_dir is None:
    from bench.exported import export_test_model  # pylint: disable=g-import-not-at-top
    model_dir = export_test_model(os.path.join(work, "serving"), "m", 1)
  image_path = sorted(glob.glob(os.path.join(REAL_IMAGES, "*.jpeg")))[0]
  dirs = _copies(model_dir, work)
  results = {c: [] for c in CONTENDERS}
  for round_ in range(args.rounds):
    for contender in CONTENDERS:
      results[contender].append(_measure(dirs[contender], contender,
                                         image_path))
      print(f"round {round_ + 1} {contender}: "
            + ", ".join(f"{k} {v:.2f}" for k, v in
                        results[contender][-1].items()), flush=True)
  keys = list(results["file"][0])
  print("\nmedians:\n| warm-up | " + " | ".join(keys) + " |")
  print("|---|" + "---|" * len(keys))
  for contender in CONTENDERS:
    print(f"| {contender} | " + " | ".join(
        f"{statistics.median(r[k] for r in results[contender]):.2f}"
        for k in keys) + " |")
  median = {c: statistics.median(r["first_jpeg_ms"]
                                 for r in results[c]) for c in CONTENDERS}
  print(f"ratio: {median['none'] / median['file']:.1f} (first serving_default "
        "request without warm-up / with the file)")
  shutil.rmtree(work, ignore_errors=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
