"""Training speed in float32 against mixed bfloat16, side by side.

  .venv/bin/python bench/mixed_precision.py [--models resnet_small,cnn_aug]
      [--image-size 128] [--rounds 3] [--batches 10]

For each model and compute dtype, a fresh process builds the model as
components/models.py does, compiles it with its recipe's optimizer, and
times whole epochs of --batches random batches of 32 images held in memory
(no input pipeline, no augmentation: the model's own step), after one
warm-up epoch. The (model, dtype) runs alternate round by round so that
load from other work on the machine falls on all of them alike. Prints a
Markdown row per run and the median images/s per model and dtype.
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

POLICIES = ("float32", "mixed_bfloat16")


def measure(name: str, policy: str, image_size: int, batches: int) -> float:
  """Images per second of training steps, in this process."""
  # pylint: disable=g-import-not-at-top
  import schema  # noqa: F401  (selects Keras 2 before TensorFlow loads)
  import numpy as np
  import tensorflow as tf
  from components import models
  from schema import settings
  tf.keras.mixed_precision.set_global_policy(policy)
  tf.keras.utils.set_random_seed(0)
  recipe = models.training_recipe(name, settings.TrainingSettings())
  model = models.build_model(name, "binary", image_size)
  models.compile_model(model, "binary", recipe.learning_rate,
                       optimizer=recipe.optimizer,
                       label_smoothing=recipe.label_smoothing)
  images = np.random.default_rng(0).uniform(
      0, 255, (32 * batches, image_size, image_size, 3)).astype(np.float32)
  labels = (np.arange(len(images)) % 2).astype(np.float32)
  data = tf.data.Dataset.from_tensor_slices((images, labels)).batch(32)
  model.fit(data, epochs=1, verbose=0)  # tracing and oneDNN's first calls
  start = time.perf_counter()
  model.fit(data, epochs=1, verbose=0)
  return len(images) / (time.perf_counter() - start)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default="resnet_small,cnn_aug")
  parser.add_argument("--image-size", type=int, default=128)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--batches", type=int, default=10)
  parser.add_argument("--one", nargs=2, metavar=("MODEL", "POLICY"),
                      help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.one:
    print(measure(*args.one, args.image_size, args.batches))
    return
  speeds = {}
  print("| round | model | policy | images/s |\n|---|---|---|---|")
  for round_ in range(1, args.rounds + 1):
    for name in args.models.split(","):
      for policy in POLICIES:
        out = subprocess.run(
            [sys.executable, __file__, "--one", name, policy,
             "--image-size", str(args.image_size),
             "--batches", str(args.batches)],
            check=True, capture_output=True, text=True).stdout
        speed = float(out.split()[-1])
        speeds.setdefault((name, policy), []).append(speed)
        print(f"| {round_} | {name} | {policy} | {speed:.1f} |", flush=True)
  print("\n| model | float32 images/s (median) | mixed_bfloat16 | ratio |")
  print("|---|---|---|---|")
  for name in args.models.split(","):
    f32, bf16 = (statistics.median(speeds[(name, p)]) for p in POLICIES)
    print(f"| {name} | {f32:.1f} | {bf16:.1f} | {bf16 / f32:.2f} |")


if __name__ == "__main__":
  main()
