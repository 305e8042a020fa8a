"""`cxr report OUT`: OUT/report/index.html and report.md for the latest
runs."""

import os
import sys

from schema import contract

BOTH = contract.BOTH_TASKS


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      "report", help="write OUT/report/index.html and report.md: results, "
      "cost, confusion matrices, curves, slices and Grad-CAM per model")
  parser.add_argument("output", metavar="OUT",
                      help="the --output folder of `cxr run`")
  parser.add_argument("--task", choices=contract.TASKS + (BOTH,),
                      default=BOTH,
                      help="which task's latest run to report (default: "
                      "both; a task that never ran gets a note)")
  parser.set_defaults(func=main)


def main(args) -> int:
  from pipeline import report  # pylint: disable=g-import-not-at-top
  try:
    index = report.build_report(args.output, args.task)
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"report: {index}")
  print(f"        {os.path.join(os.path.dirname(index), report.MARKDOWN_FILE)}")
  return 0
