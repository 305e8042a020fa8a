"""Does Grad-CAM point at the lesion? A cnn_aug model on synthetic X-rays.

  .venv/bin/python bench/gradcam_lesions.py [--n 400] [--size 128]
      [--image-size 96] [--epochs 25] [--out build/bench/gradcam]

Generates synthetic images with known lesion boxes, runs the whole pipeline
(cnn_aug, binary), loads the pushed model and asks its `gradcam` signature
to explain every test pneumonia image, once per method (gradcam, hirescam);
prints the share of correctly classified ones whose heat-map peak falls
inside a lesion box, overall and per kind.
"""

import argparse
import glob
import os
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

# pylint: disable=g-import-not-at-top
import tensorflow as tf

from pipeline import pipeline as pipeline_lib
from pipeline import runner
from pipeline import synthetic
from serving import gradcam
from serving import signatures

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--n", type=int, default=400)
  parser.add_argument("--size", type=int, default=128)
  parser.add_argument("--image-size", type=int, default=96)
  parser.add_argument("--epochs", type=int, default=25)
  parser.add_argument("--seed", type=int, default=7)
  parser.add_argument("--out", default=os.path.join(REPO, "build", "bench",
                                                    "gradcam"))
  args = parser.parse_args()
  data = os.path.join(args.out, "data")
  synthetic.generate(data, n=args.n, size=args.size, seed=args.seed)
  settings = pipeline_lib.TrainingSettings(
      models=("cnn_aug",), image_size=args.image_size, epochs=args.epochs,
      batch_size=16, seed=args.seed, min_accuracy=0.5, min_auc=0.5)
  start = time.perf_counter()
  runner.run(data, "binary", os.path.join(args.out, "run"), settings,
             enable_cache=False)
  seconds = time.perf_counter() - start
  pushed = max(glob.glob(os.path.join(args.out, "run", "serving",
                                      "cxr_binary_cnn_aug", "*")),
               key=lambda p: int(os.path.basename(p)))
  model = tf.saved_model.load(pushed)
  signature = model.signatures[signatures.GRADCAM]
  print(f"n={args.n} size={args.size} image_size={args.image_size} "
        f"epochs={args.epochs}: pipeline {seconds:.0f} s")
  for method in gradcam.METHODS:

    def explain(encoded, method=method):
      out = signature(images=tf.constant(encoded),
                      class_index=tf.constant([], tf.int32),
                      method=tf.constant(method))
      return out["class_id"].numpy(), out["heatmap"].numpy()

    counts = synthetic.lesion_hits(data, explain)
    kinds = ", ".join(
        f"{kind} {c['hits']}/{c['explained']}"
        for kind, c in sorted(counts["kinds"].items()))
    print(f"{method}: {counts['explained']} of {counts['pneumonia']} test "
          f"pneumonia images called pneumonia; peak inside the lesion for "
          f"{counts['hits']} = {synthetic.hit_rate(counts):.3f} ({kinds})")


if __name__ == "__main__":
  main()
