"""Training speed: the Trainer's code vs the thesis's Keras loop, on the
same model, images and batch size; and the FLOP/s it achieves.

For each model (cnn and cnn_aug at 224 px, binary task, batch 32), side by
side in one run on the same n real chest X-rays:

- pipeline: the model built and compiled as components.trainer.run_fn does
  it (components/models.py, the thesis's recipe) and fit on
  components.trainer.input_fn over real Transform output
  (bench/transformed.py: the project's ImageExampleGen and Transform over a
  temporary folder of the JPEGs), augmented (components/augment.py) for
  cnn_aug only, one dataset for every epoch (its decoded pixels kept in
  memory from the first), as the Trainer does;
- thesis: the same model, compiled the same way, fit on the thesis's
  ImageDataGenerator.flow_from_directory over the same JPEGs (the thesis's
  augmentation for cnn_aug only; no rescale, since this model scales its own
  input, where the thesis's model had the generator rescale), Keras's
  defaults for a Sequence (one worker, no multiprocessing);
- pipeline in mixed_bfloat16 (Keras policy, float32 head), when the CPU has
  AMX; skipped with the reason otherwise.

Every contender trains whole epochs of the n images with model.fit, as the
Trainer does: --warmup-epochs untimed (tracing and oneDNN's first calls:
too short a warm-up makes float32 look several times slower), then
--rounds rounds of one epoch each, the contenders alternating so that load
from other work falls on all alike. The defaults keep the run near 5
minutes on 2 cores; `--images 384 --warmup-epochs 1 --rounds 4` times the
issue's 48 steps after 12 warm-up steps.

FLOP/s: the training step's counted FLOPs per image (bench/model_flops.py,
TensorFlow's profiler on the frozen step) times images/s, against a large
float32 matmul (and a bfloat16 one for the bfloat16 rows) timed in the same
rounds. With a GPU visible, the pipeline and thesis rows run there with
mixed precision off (float32) and on (mixed_float16) instead.

ratio = pipeline / thesis images/s in float32, the lower of the models.

  cxr bench train [-- --models cnn,cnn_aug --images N --rounds R
                      --warmup-epochs W --matmul-size M]
"""

import sys
import tempfile
import time

from bench import harness
from bench import model_flops
from bench import transformed
from components import models
from schema import contract
import tensorflow as tf  # pylint: disable=g-bad-import-order

PIPELINE, THESIS = "pipeline", "thesis"
FLOP_TARGET = 0.6  # of the float32 matmul's FLOP/s


def _matmul_seconds(a: tf.Tensor, b: tf.Tensor) -> float:
  start = time.perf_counter()
  tf.linalg.matmul(a, b).numpy()
  return time.perf_counter() - start


def _epoch(model, make_data) -> float:
  start = time.perf_counter()
  model.fit(make_data(), epochs=1, verbose=0)
  return time.perf_counter() - start


def _contenders(names, data, gpu: bool):
  """{(model, path, policy): (keras model, dataset maker)}; skip notes."""
  policies = {PIPELINE: ["float32"], THESIS: ["float32"]}
  notes = []
  if gpu:
    policies = {path: ["float32", "mixed_float16"] for path in policies}
  elif harness.has_amx():
    policies[PIPELINE].append("mixed_bfloat16")
  else:
    notes.append("mixed_bfloat16: skipped (no AMX on this CPU: bfloat16 "
                 "would be emulated)")
  notes.append("GPU: pipeline and thesis rows ran on the GPU, mixed "
               "precision off and on" if gpu
               else "GPU: skipped (no GPU visible)")
  result = {}
  for name in names:
    augmented = name in models.AUGMENTED_MODELS
    flow = transformed.thesis_flow(data, augmented=augmented, rescale=False)
    # One dataset for every epoch, as the Trainer's fit iterates it.
    pipeline_input = transformed.trainer_input(data, augmented)
    makers = {
        PIPELINE: lambda d=pipeline_input: d,
        THESIS: lambda f=flow: f,
    }
    for path, path_policies in policies.items():
      for policy in path_policies:
        result[(name, path, policy)] = (
            transformed.trainer_model(name, data.image_size, policy),
            makers[path])
  tf.keras.mixed_precision.set_global_policy("float32")
  return result, notes


def main(argv=None) -> int:
  parser = harness.parser(__doc__)
  parser.add_argument("--models", default=f"{contract.CNN},{contract.CNN_AUG}")
  parser.add_argument("--images", type=int, default=128,
                      help="real JPEGs per epoch (default 128: 4 steps)")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--warmup-epochs", type=int, default=2)
  parser.add_argument("--image-size", type=int, default=224)
  parser.add_argument("--matmul-size", type=int, default=4096)
  args = parser.parse_args(argv)
  if args.smoke:
    args.images, args.rounds, args.warmup_epochs = 32, 1, 1
    args.image_size, args.matmul_size = 64, 512
  harness.print_machine()
  names = args.models.split(",")
  gpu = bool(tf.config.list_physical_devices("GPU"))
  flops = {name: model_flops.train_step_flops(name, contract.BINARY,
                                              args.image_size)
           for name in names}
  with tempfile.TemporaryDirectory(prefix="cxr-bench-train-") as root:
    data = transformed.prepare(root, args.images, args.image_size)
    steps = -(-data.count // transformed.BATCH_SIZE)
    print(f"sizes: {transformed.describe(data)}; models {', '.join(names)}; "
          f"{args.warmup_epochs} untimed epochs ({args.warmup_epochs * steps}"
          f" steps) of each contender, then {args.rounds} rounds of one "
          f"epoch ({steps} steps) each; matmul {args.matmul_size}^2\n")
    contenders, notes = _contenders(names, data, gpu)
    rng = tf.random.Generator.from_seed(0)
    shape = [args.matmul_size] * 2
    matmuls = {dtype: (tf.cast(rng.normal(shape), dtype),
                       tf.cast(rng.normal(shape), dtype))
               for dtype in ([tf.float32]
                             + ([tf.bfloat16] if harness.has_amx() else []))}
    for model, make in contenders.values():
      for _ in range(args.warmup_epochs):
        _epoch(model, make)
    for a, b in matmuls.values():
      _matmul_seconds(a, b)
    times = {key: [] for key in contenders}
    matmul_times = {dtype: [] for dtype in matmuls}
    for _ in range(args.rounds):
      for key, (model, make) in contenders.items():
        times[key].append(_epoch(model, make))
      for dtype, (a, b) in matmuls.items():
        matmul_times[dtype].append(_matmul_seconds(a, b))

  peak = {dtype: 2 * args.matmul_size ** 3 / harness.median(t)
          for dtype, t in matmul_times.items()}
  rate = {key: data.count / harness.median(t) for key, t in times.items()}
  rows = []
  for key, t in times.items():
    name, path, policy = key
    achieved = flops[name] * rate[key]
    reference = peak[tf.bfloat16 if policy == "mixed_bfloat16"
                     else tf.float32]
    rows.append([name, path, policy, rate[key], achieved / 1e9,
                 achieved / peak[tf.float32], achieved / reference,
                 " / ".join(f"{s:.1f}" for s in t)])
  print("matmul: " + ", ".join(f"{dtype.name} {p / 1e9:.1f} GFLOP/s"
                               for dtype, p in peak.items()))
  print("counted training FLOPs per image: " + ", ".join(
      f"{name} {f / 1e9:.2f} GFLOP" for name, f in flops.items()) + "\n")
  harness.table(["model", "path", "dtype", "images/s (median)", "GFLOP/s",
                 "of float32 matmul", "of same-dtype matmul",
                 "seconds per epoch (each round)"], rows)
  for note in notes:
    print(note)
  ratios = {name: rate[(name, PIPELINE, "float32")]
            / rate[(name, THESIS, "float32")] for name in names}
  utilisation = max(flops[name] * rate[(name, PIPELINE, "float32")]
                    for name in names) / peak[tf.float32]
  print()
  harness.table(["model", "pipeline / thesis (float32)"],
                [[name, r] for name, r in ratios.items()])
  print(f"FLOP/s: the pipeline's best float32 rate reaches "
        f"{utilisation:.3g} of the float32 matmul (target >= {FLOP_TARGET}: "
        f"{'met' if utilisation >= FLOP_TARGET else 'missed'})")
  lowest = min(ratios, key=ratios.get)
  print(f"ratio below: pipeline / thesis in float32 for {lowest}, the lower "
        f"of {', '.join(names)}")
  return harness.finish(ratios[lowest])


if __name__ == "__main__":
  sys.exit(main())
