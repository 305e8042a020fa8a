"""The Jensen-Shannon divergences behind schema/image_summary.pbtxt's skew
thresholds, on real chest X-rays.

  .venv/bin/python bench/skew_thresholds.py [--training 1500]

Summarizes (serving/server/image_summary.py) a random draw of
../shared/data/chest_xray/train as the training side, then as served
sides: chest_xray's test split and the 3-class data set's test split (50
and 200-300 images: no skew), and 50 of chest_xray's test images darkened
to 60% and inverted (skew). Prints TFDV's approximate Jensen-Shannon
divergence of every summary feature for each, with every comparator's
threshold set near zero so each is reported.
"""

import argparse
import glob
import os
import random
import re
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# The project first: schema/__init__.py selects Keras 2 before TensorFlow.
import schema  # noqa: F401  pylint: disable=unused-import,g-bad-import-order
import tensorflow as tf  # pylint: disable=g-bad-import-order
import tensorflow_data_validation as tfdv

from pipeline import skew
from schema import contract
from serving.server import image_summary

DATA = os.path.join(REPO, "..", "shared", "data")


def _draw(pattern, n, seed):
  paths = sorted(glob.glob(os.path.join(DATA, pattern)))
  return [open(p, "rb").read()
          for p in random.Random(seed).sample(paths, min(n, len(paths)))]


def _changed(images, change):
  return [tf.io.encode_jpeg(change(tf.io.decode_jpeg(i)), quality=95).numpy()
          for i in images]


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--training", type=int, default=1500)
  args = parser.parse_args(argv)
  training = [image_summary.summarize(i) for i in
              _draw("chest_xray/train/*/*.jpeg", args.training, 0)]
  test = _draw("chest_xray/test/*/*.jpeg", 300, 1)
  sides = {
      "chest_xray test, 50": test[:50],
      "chest_xray test, 300": test,
      "3-class test, 50": _draw("chest_xray_multiclass/test_images/*", 50, 2),
      "3-class test, 200": _draw("chest_xray_multiclass/test_images/*", 200,
                                 2),
      "darkened to 60%, 50": _changed(test[:50], lambda p: tf.cast(
          tf.cast(p, tf.float32) * 0.6, tf.uint8)),
      "inverted, 50": _changed(test[:50], lambda p: 255 - p),
  }
  every = tfdv.load_schema_text(schema.image_summary_schema_path())
  for feature in every.feature:
    feature.skew_comparator.jensen_shannon_divergence.threshold = 1e-9
  features = list(contract.SUMMARY_FEATURES)
  print(f"training: {len(training)} images of chest_xray/train\n")
  print("| served | " + " | ".join(features) + " |")
  print("|---|" + "---|" * len(features))
  training_stats = skew.statistics(training)
  for name, images in sides.items():
    served = skew.statistics([image_summary.summarize(i) for i in images])
    anomalies = tfdv.validate_statistics(training_stats, every,
                                         serving_statistics=served)
    found = {k: float(re.search(r"is ([0-9.e+-]+)", v.description).group(1))
             for k, v in anomalies.anomaly_info.items()}
    print(f"| {name} | " + " | ".join(
        f"{found[f]:.3f}" if f in found else "0" for f in features) + " |",
        flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
