"""Counted FLOPs of one training step per model, and what an epoch costs.

  .venv/bin/python bench/model_flops.py [--task binary] [--image-size 224]
      [--train-images 5232] [--epochs 30] [--gpu-tflops 8.1]

Counts the floating-point operations of the Trainer's training step on one
image (forward, loss, gradients of the trainable weights; the frozen bases
of the transfer models run forward only) with TensorFlow's own profiler on
the frozen step graph, for each model as components/models.py builds it.
Prints a Markdown table: GFLOPs per trained image, TFLOPs per epoch of
--train-images images, and the hours of --epochs epochs at --gpu-tflops
(NVIDIA T4's float32 peak by default). A GPU never runs at its peak, so the
hours are a lower bound; divide by the utilisation you see. The default
image count is Kermany's Kaggle training set (5,216 train + 16 val).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# pylint: disable=g-import-not-at-top,wrong-import-position
import schema  # noqa: F401  (selects Keras 2 before TensorFlow loads)
import tensorflow as tf
from tensorflow.python.framework import convert_to_constants

from components import models
from schema import contract


def train_step_flops(name: str, task: str, image_size: int) -> int:
  """FLOPs of one training step on a batch of one image."""
  model = models.build_model(name, task, image_size, weights="none")
  models.compile_model(model, task, learning_rate=5e-4)
  loss_fn = model.loss
  label_shape = [1, 1] if task == contract.BINARY else [1]

  @tf.function
  def step(images, labels):
    with tf.GradientTape() as tape:
      loss = loss_fn(labels, model(images, training=True))
    return tape.gradient(loss, model.trainable_variables)

  concrete = step.get_concrete_function(
      tf.TensorSpec([1, image_size, image_size, 3], tf.float32),
      tf.TensorSpec(label_shape, tf.float32 if task == contract.BINARY
                    else tf.int64))
  frozen = convert_to_constants.convert_variables_to_constants_v2(concrete)
  options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  options["output"] = "none"
  profile = tf.compat.v1.profiler.profile(frozen.graph, options=options)
  return profile.total_float_ops


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--task", default=contract.BINARY,
                      choices=contract.TASKS)
  parser.add_argument("--image-size", type=int, default=224)
  parser.add_argument("--train-images", type=int, default=5232)
  parser.add_argument("--epochs", type=int, default=30)
  parser.add_argument("--gpu-tflops", type=float, default=8.1)
  parser.add_argument("--models", default=",".join(contract.MODELS))
  args = parser.parse_args()
  print(f"| model | GFLOPs per trained image | TFLOPs per epoch "
        f"({args.train_images:,} images) | hours for {args.epochs} epochs "
        f"at {args.gpu_tflops} TFLOP/s |")
  print("|---|---|---|---|")
  for name in args.models.split(","):
    flops = train_step_flops(name, args.task, args.image_size)
    epoch = flops * args.train_images
    hours = epoch * args.epochs / (args.gpu_tflops * 1e12) / 3600
    print(f"| {name} | {flops / 1e9:.2f} | {epoch / 1e12:.1f} | "
          f"{hours:.2f} |", flush=True)


if __name__ == "__main__":
  main()
