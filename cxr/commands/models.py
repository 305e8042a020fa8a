"""`cxr models`: the model zoo with its parameter counts."""

from schema import contract
from schema import settings


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      "models", help="list the models with their parameter counts")
  parser.add_argument("--task", choices=contract.TASKS,
                      default=contract.BINARY)
  settings.add_arguments(parser, settings.TrainingSettings,
                         only=("image_size",))
  parser.set_defaults(func=main)


def main(args) -> int:
  from components import models  # pylint: disable=g-import-not-at-top
  print(f"{'model':<14} {'task':<11} {'total':>12} {'trainable':>12}")
  for name in contract.MODELS:
    counts = models.parameter_counts(
        models.build_model(name, args.task, args.image_size))
    print(f"{name:<14} {args.task:<11} {counts['total']:>12,} "
          f"{counts['trainable']:>12,}")
  print(f"(image size {args.image_size} px; transfer bases frozen)")
  return 0
