"""`cxr run --data DIR [--data DIR2...] --task T --output OUT [settings]`:
the pipeline."""

import sys

from cxr.commands import summary
from schema import contract
from schema import settings

BOTH = contract.BOTH_TASKS


def register(subparsers) -> None:
  parser = subparsers.add_parser("run",
                                 help="run the pipeline on a data folder")
  parser.add_argument("--data", required=True, action="append",
                      help="data set folder (Kaggle binary or 3-class "
                      "layout); several, given again or as a comma list, "
                      "are ingested together, each under its own source "
                      "(its folder's name), patients kept apart by source")
  parser.add_argument("--cross-data", default=None,
                      help="a second data set (either layout) every model is "
                      "also evaluated on, labels mapped to the task (its "
                      "test split; the thesis's cross-data-set accuracy)")
  parser.add_argument("--task", required=True,
                      choices=contract.TASKS + (BOTH,),
                      help="both: the binary and the 3-class pipelines")
  parser.add_argument("--output", required=True,
                      help="output folder: artifacts, metadata, serving/")
  for cls in (settings.RunSettings, settings.TrainingSettings,
              settings.GateSettings):
    settings.add_arguments(parser, cls)
  parser.set_defaults(func=main)


def main(args) -> int:
  # pylint: disable=g-import-not-at-top
  from absl import logging
  from pipeline import runner
  # Components report progress (ingestion counts, training ETA) at INFO.
  logging.set_verbosity(logging.INFO)
  run_settings = settings.from_args(settings.RunSettings, args)
  training = settings.from_args(settings.TrainingSettings, args)
  gates = settings.from_args(settings.GateSettings, args)
  tasks = contract.TASKS if args.task == BOTH else (args.task,)
  for task in tasks:
    try:
      runner.run(args.data, task, args.output, run_settings, training,
                 gates, cross_data=args.cross_data)
    except Exception as e:  # pylint: disable=broad-except
      # The runner has logged the traceback; end with what a person needs.
      print("\n".join(["", "=" * 72, f"The {task} pipeline run failed:",
                       str(e), "=" * 72]), file=sys.stderr)
      summary.print_summary(args.output, task)
      return 1
  print("=" * 72)
  found = [summary.print_summary(args.output, task) for task in tasks]
  print("=" * 72)
  return 0 if all(found) else 1
