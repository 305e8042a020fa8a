"""Input pipeline speed: the Trainer's tf.data input vs the thesis's
ImageDataGenerator, on the same real JPEGs.

Contenders, side by side in one run on the same n real chest X-rays
(bench/transformed.py: the project's ImageExampleGen and Transform
executors over a temporary folder of them, as the pipeline runs them):

- Trainer input: components.trainer.input_fn over the Transform output
  (tfxio reads and parses the examples, the uint8 pixels are decoded, kept
  in memory after the first pass as the Trainer keeps them by default
  (--pixel-cache-mb), shuffled, given the thesis augmentation of
  components/augment.py and cast to float32), batches of 32 at 224 px;
- ImageDataGenerator: the thesis's Keras loader,
  ImageDataGenerator(rotation 40, width/height shift 0.2, shear 0.2, zoom
  0.3, horizontal flip, rescale 1/255).flow_from_directory on the same
  train/ folder of JPEGs, batches of 32 at 224 px.

One round is one pass (epoch) over the n images by each contender, as
Keras iterates them: one dataset (or Sequence) per contender, a new
iterator per pass, every batch. Before the rounds, one untimed pass of
each (tracing, file cache, and the Trainer input's kept pixels), whose
seconds are printed apart. Two diagnostic rows: the Trainer input reading
its files on every pass (--pixel-cache-mb 0), and without augmentation
(what reading and decoding cost alone). Images/s are medians over the
rounds; ratio = Trainer input / ImageDataGenerator.

With a GPU visible, the Trainer input is timed again with each batch
copied to the GPU and cast there to the compute dtype, with mixed
precision off (float32) and on (mixed_float16); otherwise that section is
skipped with its reason.

  cxr bench input [-- --images N --rounds R --image-size S]
"""

import sys
import tempfile
import time

from bench import harness
from bench import transformed


def _pass_tfdata(dataset, device=None, dtype=None) -> float:
  """Seconds of one pass over the Trainer's input (optionally each batch
  copied to `device` and cast to `dtype` there)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  for images, labels in dataset:
    if device is not None:
      with tf.device(device):
        images = tf.cast(tf.identity(images), dtype)
      images.numpy()  # waits for the copy
  del labels
  return time.perf_counter() - start


def _pass_generator(flow) -> float:
  """Seconds of one epoch of the thesis's DirectoryIterator, batch by
  batch as Keras's fit reads a Sequence."""
  start = time.perf_counter()
  for i in range(len(flow)):
    flow[i]  # pylint: disable=pointless-statement
  flow.on_epoch_end()
  return time.perf_counter() - start


def _gpu_section(dataset, count: int, rounds: int) -> None:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if not tf.config.list_physical_devices("GPU"):
    print("GPU: skipped (no GPU visible)\n")
    return
  dtypes = {"float32": tf.float32, "mixed_float16": tf.float16}
  for policy, dtype in dtypes.items():
    _pass_tfdata(dataset, "/GPU:0", dtype)  # warm-up
  times = {policy: [] for policy in dtypes}
  for _ in range(rounds):
    for policy, dtype in dtypes.items():
      times[policy].append(_pass_tfdata(dataset, "/GPU:0", dtype))
  print("GPU: the Trainer input with each batch copied to the GPU and cast "
        "to the compute dtype")
  harness.table(["mixed precision", "images/s (median)"],
                [[policy, count / harness.median(t)]
                 for policy, t in times.items()])


def main(argv=None) -> int:
  parser = harness.parser(__doc__)
  parser.add_argument("--images", type=int, default=512,
                      help="real JPEGs in the folder (default 512)")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--image-size", type=int, default=224)
  args = parser.parse_args(argv)
  if args.smoke:
    args.images, args.rounds = 48, 1
  harness.print_machine()
  with tempfile.TemporaryDirectory(prefix="cxr-bench-input-") as root:
    data = transformed.prepare(root, args.images, args.image_size)
    print(f"sizes: {transformed.describe(data)}; {args.rounds} rounds, "
          "one pass of each contender per round after one untimed pass\n")
    flow = transformed.thesis_flow(data)
    augmented = transformed.trainer_input(data, True)
    from_files = transformed.trainer_input(data, True, pixel_cache_mb=0)
    plain = transformed.trainer_input(data, False)
    contenders = {
        "Trainer input (tf.data, Transform output, augmented)":
            lambda: _pass_tfdata(augmented),
        "ImageDataGenerator.flow_from_directory (augmented, rescaled)":
            lambda: _pass_generator(flow),
        "Trainer input reading its files every pass, --pixel-cache-mb 0 "
        "(diagnostic)": lambda: _pass_tfdata(from_files),
        "Trainer input without augmentation (diagnostic)":
            lambda: _pass_tfdata(plain),
    }
    first = {name: run() for name, run in contenders.items()}
    times = {name: [] for name in contenders}
    for _ in range(args.rounds):
      for name, run in contenders.items():
        times[name].append(run())
    rates = {name: data.count / harness.median(t)
             for name, t in times.items()}
    harness.table(
        ["contender", "images/s (median)", "seconds per pass (each round)",
         "untimed first pass, s"],
        [[name, rates[name], " / ".join(f"{s:.2f}" for s in t), first[name]]
         for name, t in times.items()])
    _gpu_section(augmented, data.count, args.rounds)
  names = list(contenders)
  return harness.finish(rates[names[0]] / rates[names[1]])


if __name__ == "__main__":
  sys.exit(main())
