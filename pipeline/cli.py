"""The `cxr` command line.

  cxr synth OUT_DIR [--n N --size S --seed K]    synthetic chest X-rays
  cxr run --data DIR --task binary|multiclass|both --output OUT [...]
  cxr models [--task binary|multiclass --image-size S]
  cxr summary --output OUT --task binary|multiclass
"""

import argparse
import os
import sys
from typing import List, Optional

# Keras 2 before TensorFlow is imported anywhere (see components/__init__).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

from absl import logging as absl_logging  # pylint: disable=g-import-not-at-top
from components import image_layouts  # pylint: disable=g-import-not-at-top
from components import models  # pylint: disable=g-import-not-at-top
from pipeline import pipeline as pipeline_lib  # pylint: disable=g-import-not-at-top
from pipeline import runner  # pylint: disable=g-import-not-at-top
from pipeline import summary  # pylint: disable=g-import-not-at-top
from pipeline import synthetic  # pylint: disable=g-import-not-at-top


def _synth(args) -> int:
  counts = synthetic.generate(args.out_dir, n=args.n, size=args.size,
                              seed=args.seed)
  total = sum(counts.values())
  print(f"wrote {total} images to {args.out_dir}: "
        + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
  print(f"lesion boxes: {os.path.join(args.out_dir, synthetic.LESIONS_FILE)}")
  return 0


def _print_summary(output: str, task: str) -> Optional[summary.RunSummary]:
  try:
    result = summary.summarize(runner.output_paths(output)["metadata"],
                               runner.pipeline_name_for(task))
  except (FileNotFoundError, ValueError) as e:
    print(f"no run summary: {e}")
    return None
  print("\n".join(result.lines()))
  return result


def _run(args) -> int:
  # Components report progress (ingestion counts, training ETA) at INFO.
  absl_logging.set_verbosity(absl_logging.INFO)
  settings = pipeline_lib.TrainingSettings(
      models=args.models, image_size=args.image_size, epochs=args.epochs,
      batch_size=args.batch_size, learning_rate=args.learning_rate,
      seed=args.seed, weights=args.weights, class_weight=args.class_weight,
      fine_tune_layers=args.fine_tune_layers,
      fine_tune_epochs=args.fine_tune_epochs,
      mixed_precision=args.mixed_precision, xla=args.xla,
      restore_best_epoch=not args.keep_last_epoch,
      min_accuracy=args.min_accuracy, min_auc=args.min_auc)
  tasks = image_layouts.TASKS if args.task == "both" else (args.task,)
  for task in tasks:
    try:
      runner.run(args.data, task, args.output, settings,
                 runner=args.runner, beam_mode=args.beam_mode,
                 eval_percent=args.eval_percent,
                 enable_cache=not args.no_cache)
    except Exception as e:  # pylint: disable=broad-except
      # The runner has logged the traceback; end with what a person needs.
      print("\n".join(["", "=" * 72, f"The {task} pipeline run failed:",
                       str(e), "=" * 72]), file=sys.stderr)
      _print_summary(args.output, task)
      return 1
  print("=" * 72)
  found = [_print_summary(args.output, task) for task in tasks]
  print("=" * 72)
  return 0 if all(found) else 1


def _models(args) -> int:
  print(f"{'model':<14} {'task':<11} {'total':>12} {'trainable':>12}")
  for name in models.MODELS:
    counts = models.parameter_counts(
        models.build_model(name, args.task, args.image_size))
    print(f"{name:<14} {args.task:<11} {counts['total']:>12,} "
          f"{counts['trainable']:>12,}")
  print(f"(image size {args.image_size} px; transfer bases frozen)")
  return 0


def _summary(args) -> int:
  return 0 if _print_summary(args.output, args.task) is not None else 1


def _model_list(text: str):
  try:
    return models.check_model_names(
        n.strip() for n in text.split(",") if n.strip())
  except ValueError as e:
    raise argparse.ArgumentTypeError(str(e)) from e


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="cxr", description="Chest X-ray pneumonia pipeline on TFX.")
  sub = parser.add_subparsers(dest="command", required=True)

  synth = sub.add_parser("synth", help="write a synthetic chest X-ray set "
                         "in the Kaggle binary layout")
  synth.add_argument("out_dir")
  synth.add_argument("--n", type=int, default=300, help="number of images")
  synth.add_argument("--size", type=int, default=256, help="image side, px")
  synth.add_argument("--seed", type=int, default=0)
  synth.set_defaults(func=_synth)

  defaults = pipeline_lib.TrainingSettings()
  run = sub.add_parser("run", help="run the pipeline on a data folder")
  run.add_argument("--data", required=True,
                   help="data set folder (Kaggle binary or 3-class layout)")
  run.add_argument("--task", required=True,
                   choices=image_layouts.TASKS + ("both",),
                   help="both: the binary and the 3-class pipelines")
  run.add_argument("--output", required=True,
                   help="output folder: artifacts, metadata, serving/")
  run.add_argument("--models", type=_model_list,
                   default=",".join(defaults.models),
                   help="comma list of models to train, each in its own "
                   f"Trainer/Evaluator/Pusher branch (default: all of "
                   f"{','.join(models.MODELS)})")
  run.add_argument("--weights", default=defaults.weights,
                   help="transfer models' base weights: imagenet (Keras's "
                   "download and cache under KERAS_HOME), none, or a path "
                   "to a weights file (local or gs://)")
  run.add_argument("--epochs", type=int, default=defaults.epochs)
  run.add_argument("--image-size", type=int, default=defaults.image_size)
  run.add_argument("--batch-size", type=int, default=defaults.batch_size)
  run.add_argument("--learning-rate", type=float,
                   default=defaults.learning_rate)
  run.add_argument("--seed", type=int, default=defaults.seed)
  run.add_argument("--class-weight", choices=("none", "balanced"),
                   default=defaults.class_weight,
                   help="balanced: weight classes by n / (classes * n_c) of "
                   "the train split")
  run.add_argument("--fine-tune-layers", type=int,
                   default=defaults.fine_tune_layers,
                   help="transfer models: after the frozen phase, train the "
                   "top N base layers at a tenth of the learning rate")
  run.add_argument("--fine-tune-epochs", type=int,
                   default=defaults.fine_tune_epochs)
  run.add_argument("--mixed-precision", choices=("", "float16", "bfloat16"),
                   default=defaults.mixed_precision,
                   help="compute dtype; the output layer stays float32")
  run.add_argument("--xla", action="store_true", help="compile with XLA")
  run.add_argument("--keep-last-epoch", action="store_true",
                   help="export the last epoch's weights instead of the "
                   "epoch with the lowest validation loss")
  run.add_argument("--min-accuracy", type=float, default=defaults.min_accuracy,
                   help="blessing floor on test accuracy")
  run.add_argument("--min-auc", type=float, default=defaults.min_auc,
                   help="blessing floor on test AUC (binary task)")
  run.add_argument("--eval-percent", type=int, default=10,
                   help="percent of train patients held out for validation")
  run.add_argument("--runner", choices=runner.RUNNERS, default="beam")
  run.add_argument("--beam-mode", choices=runner.BEAM_MODES,
                   default="in_memory",
                   help="Beam DirectRunner mode; multi_processing pays off "
                   "on large data sets only")
  run.add_argument("--no-cache", action="store_true",
                   help="re-run every component even if its inputs are "
                   "unchanged")
  run.set_defaults(func=_run)

  zoo = sub.add_parser("models", help="list the models with their "
                       "parameter counts")
  zoo.add_argument("--task", choices=image_layouts.TASKS, default="binary")
  zoo.add_argument("--image-size", type=int, default=defaults.image_size)
  zoo.set_defaults(func=_models)

  summ = sub.add_parser("summary", help="print the latest run's summary")
  summ.add_argument("--output", required=True)
  summ.add_argument("--task", required=True, choices=image_layouts.TASKS)
  summ.set_defaults(func=_summary)
  return parser


def main(argv: Optional[List[str]] = None) -> int:
  args = build_parser().parse_args(argv)
  return args.func(args)


if __name__ == "__main__":
  sys.exit(main())
