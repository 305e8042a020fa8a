"""Why cnn_aug learns slowly at 224 px: dead ReLUs in its Dense 512 layer.

  .venv/bin/python bench/dense_probe.py [--image-size 224]
      [--learning-rates 5e-4,2e-4,1e-4] [--steps 45] [--every 15]
      [--trained IMAGE_SIZE RUN_DIR] ...

The thesis CNN flattens 11 x 11 x 256 = 30,976 values into Dense 512 at
224 px, 4.8 times the 6,400 at 128 px. RMSprop moves every weight by about
the learning rate whatever its gradient's size, so one step moves a Dense
unit's input sum by about lr x sum|x|, 4.8 times as far at 224 px: units
pushed below zero for every image stop learning (a dead ReLU).

For each learning rate this trains a fresh cnn_aug (binary, seed 42) on
real training images with the Trainer's augmentation, batch 32, and every
`--every` steps prints the loss, the AUC on 200 test images, and the share
of Dense units that are zero for all of them. `--trained` measures the same
share for models trained by `bench/train_real.py` (their pipeline run
directories), on 160 test images.
"""

import argparse
import glob
import os
import random
import time

# The project first: schema/__init__.py selects Keras 2 before TensorFlow.
from components import augment  # pylint: disable=g-bad-import-order
from components import models
from schema import contract
from serving.export import pixels
import exported
import numpy as np  # pylint: disable=g-bad-import-order
from sklearn import metrics
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(REPO, "..", "shared", "data", "chest_xray")
MODEL = contract.CNN_AUG


def labelled_files(split: str):
  folder = os.path.join(DATA, split)
  return sorted([(p, 0) for p in glob.glob(folder + "/NORMAL/*")]
                + [(p, 1) for p in glob.glob(folder + "/PNEUMONIA/*")])


def sample(split: str, n: int, seed: int):
  files = labelled_files(split)
  random.Random(seed).shuffle(files)
  return files[:n]


def load(files, image_size: int):
  """Decoded and resized exactly as Transform does."""
  images = np.stack([
      pixels.decode_and_resize(tf.io.read_file(path), image_size).numpy()
      for path, _ in files]).astype("float32")
  return images, np.array([label for _, label in files], "float32")


def dead_share(model, images) -> float:
  """Share of Dense units that output zero for every image."""
  dense = tf.keras.Model(model.inputs, model.get_layer("dense").output)
  active = (dense.predict(images, batch_size=32, verbose=0) > 0).any(axis=0)
  return float(1.0 - active.mean())


def probe(learning_rate, train, test, steps, every, image_size):
  tf.keras.utils.set_random_seed(42)
  model = models.build_model(MODEL, contract.BINARY, image_size)
  models.compile_model(model, contract.BINARY, learning_rate)
  (x_train, y_train), (x_test, y_test) = train, test
  start = time.perf_counter()
  for step in range(steps):
    batch = slice(step * 32, (step + 1) * 32)
    images = augment.augment_images(tf.constant(x_train[batch]),
                                    tf.constant([step, 7], tf.int64))
    loss = model.train_on_batch(images, y_train[batch])
    loss = loss[0] if isinstance(loss, (list, tuple)) else loss
    if (step + 1) % every == 0:
      p = model.predict(x_test, batch_size=32, verbose=0).ravel()
      print(f"| {image_size} | {learning_rate:g} | {step + 1} | {loss:.4f} | "
            f"{metrics.roc_auc_score(y_test, p):.3f} | "
            f"{dead_share(model, x_test):.3f} | "
            f"{time.perf_counter() - start:.0f} |", flush=True)


def trained_dead_share(image_size: int, run_dir: str):
  """The exported cnn_aug of a train_real.py run, its weights reloaded."""
  model = exported.trained_keras_model(
      exported.trainer_serving_model(run_dir, contract.BINARY, MODEL),
      MODEL, contract.BINARY, image_size)
  images, _ = load(sample("test", 160, seed=0), image_size)
  print(f"| {os.path.basename(os.path.normpath(run_dir))} | {image_size} | "
        f"{dead_share(model, images):.3f} |", flush=True)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--image-size", type=int, default=224)
  parser.add_argument("--learning-rates", default="5e-4,2e-4,1e-4")
  parser.add_argument("--steps", type=int, default=45)
  parser.add_argument("--every", type=int, default=15)
  parser.add_argument("--trained", nargs=2, action="append", default=[],
                      metavar=("IMAGE_SIZE", "RUN_DIR"))
  args = parser.parse_args()
  if args.trained:
    print("| trained run | px | dead Dense units |\n|---|---|---|")
    for image_size, run_dir in args.trained:
      trained_dead_share(int(image_size), run_dir)
  rates = [float(r) for r in args.learning_rates.split(",") if r]
  if not rates:
    return
  train = load(sample("train", args.steps * 32, seed=1), args.image_size)
  test = load(sample("test", 200, seed=0), args.image_size)
  print("| px | learning rate | step | loss | test AUC | dead Dense units "
        "| s |\n|---|---|---|---|---|---|---|")
  for rate in rates:
    probe(rate, train, test, args.steps, args.every, args.image_size)


if __name__ == "__main__":
  main()
