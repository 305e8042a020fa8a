"""Training speed in float32 against mixed bfloat16, side by side.

  .venv/bin/python bench/mixed_precision.py [--models resnet_small,cnn_aug]
      [--image-size 128] [--rounds 3] [--batches 10]
      [--policies float32,mixed_bfloat16]

A model may carry its own input size, `--models resnet_small@192,cnn_aug@224`,
to compare recipes at the sizes they are trained at; `--policies float32`
times float32 alone (on a CPU without bfloat16 kernels, where both recipes
train in float32).

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


def _name_and_size(entry: str, default_size: int):
  """'resnet_small@192' -> ('resnet_small', 192); a bare name gets the
  default size."""
  name, _, size = entry.partition("@")
  return name, int(size or default_size)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default="resnet_small,cnn_aug")
  parser.add_argument("--image-size", type=int, default=128)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--batches", type=int, default=10)
  parser.add_argument("--policies", default=",".join(POLICIES))
  parser.add_argument("--one", nargs=2, metavar=("MODEL", "POLICY"),
                      help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.one:
    print(measure(*args.one, args.image_size, args.batches))
    return
  runs = [_name_and_size(entry, args.image_size)
          for entry in args.models.split(",")]
  policies = args.policies.split(",")
  speeds = {}
  print("| round | model | input | policy | images/s |\n|---|---|---|---|---|")
  for round_ in range(1, args.rounds + 1):
    for name, size in runs:
      for policy in policies:
        out = subprocess.run(
            [sys.executable, __file__, "--one", name, policy,
             "--image-size", str(size), "--batches", str(args.batches)],
            check=True, capture_output=True, text=True).stdout
        speed = float(out.split()[-1])
        speeds.setdefault((name, size, policy), []).append(speed)
        print(f"| {round_} | {name} | {size} px | {policy} | {speed:.1f} |",
              flush=True)
  medians = {key: statistics.median(values) for key, values in speeds.items()}
  ratio = len(policies) == 2
  print("\n| model | input | " + " | ".join(
      f"{policy} images/s (median)" for policy in policies)
        + (" | ratio |" if ratio else " |"))
  print("|---|---|" + "---|" * (len(policies) + ratio))
  for name, size in runs:
    row = [medians[(name, size, policy)] for policy in policies]
    print(f"| {name} | {size} px | " + " | ".join(f"{v:.1f}" for v in row)
          + (f" | {row[1] / row[0]:.2f} |" if ratio else " |"))


if __name__ == "__main__":
  main()
