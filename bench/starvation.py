"""Input starvation: a training epoch of cnn_aug fed by the Trainer's real
input pipeline vs fed the same batches from memory.

Both contenders train one model (components/models.py's cnn_aug at 224 px,
built and compiled as components.trainer.run_fn does: its recipe, float32)
with Keras's fit, one epoch of n real chest X-rays at a time:

- real input: components.trainer.input_fn over real Transform output
  (bench/transformed.py: the project's ImageExampleGen and Transform over a
  temporary folder of the JPEGs): read, parse, decode, augment, prefetch,
  sharing the 2 cores with training as in the Trainer, one dataset for
  every epoch (its decoded pixels kept in memory from the first, as the
  Trainer keeps them by default);
- in memory: one pass of that same input, augmented batches and all,
  materialized beforehand as tensors; the epoch then only trains.

The model warms up with --warmup-epochs of each first (tracing, oneDNN's
first calls); then the contenders alternate, one epoch each per round.
The ratio is in-memory seconds / real-input seconds per epoch (medians),
i.e. real-input images/s over in-memory images/s: 1 means the input keeps
the training step fed.

  cxr bench starvation [-- --images N --rounds R --warmup-epochs W]
"""

import functools
import sys
import tempfile
import time

from bench import harness
from bench import transformed
from schema import contract
import tensorflow as tf  # pylint: disable=g-bad-import-order


def _in_memory(dataset: tf.data.Dataset) -> tf.data.Dataset:
  """One pass of `dataset`, its batches held as constants."""
  return functools.reduce(
      lambda a, b: a.concatenate(b),
      [tf.data.Dataset.from_tensors(batch) for batch in dataset])


def _epoch(model, dataset) -> float:
  start = time.perf_counter()
  model.fit(dataset, epochs=1, verbose=0)
  return time.perf_counter() - start


def main(argv=None) -> int:
  parser = harness.parser(__doc__)
  parser.add_argument("--images", type=int, default=128,
                      help="real JPEGs per epoch (default 128)")
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--warmup-epochs", type=int, default=2)
  parser.add_argument("--image-size", type=int, default=224)
  args = parser.parse_args(argv)
  if args.smoke:
    args.images, args.rounds, args.warmup_epochs = 32, 1, 1
    args.image_size = 64
  harness.print_machine()
  with tempfile.TemporaryDirectory(prefix="cxr-bench-starvation-") as root:
    data = transformed.prepare(root, args.images, args.image_size)
    print(f"sizes: {transformed.describe(data)}; model {contract.CNN_AUG}; "
          f"{args.warmup_epochs} untimed epochs of each contender, then "
          f"{args.rounds} rounds of one epoch each\n")
    model = transformed.trainer_model(contract.CNN_AUG, args.image_size)
    # One dataset for every epoch, as the Trainer's fit iterates it: the
    # pixels it keeps after its first pass are kept for the timed ones.
    real = transformed.trainer_input(data, augmented=True)
    memory = _in_memory(real)
    contenders = {"real input (Trainer's input_fn)": lambda: real,
                  "same batches from memory": lambda: memory}
    for _ in range(args.warmup_epochs):
      for make in contenders.values():
        _epoch(model, make())
    times = {name: [] for name in contenders}
    for _ in range(args.rounds):
      for name, make in contenders.items():
        times[name].append(_epoch(model, make()))
  seconds = {name: harness.median(t) for name, t in times.items()}
  harness.table(
      ["contender", "seconds per epoch (median)", "images/s",
       "seconds (each round)"],
      [[name, seconds[name], data.count / seconds[name],
        " / ".join(f"{s:.2f}" for s in times[name])] for name in contenders])
  real_name, memory_name = contenders
  return harness.finish(seconds[memory_name] / seconds[real_name])


if __name__ == "__main__":
  sys.exit(main())
