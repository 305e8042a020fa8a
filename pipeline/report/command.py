"""The `cxr report OUT [--task ...]` command."""

import argparse
import os
import sys
from typing import List, Optional

from pipeline.report import build
from schema import contract


def _report(args) -> int:
  try:
    index = build.build_report(args.output, args.task)
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"report: {index}")
  print(f"        {os.path.join(os.path.dirname(index), build.MARKDOWN_FILE)}")
  return 0


def register(subparsers) -> None:
  """Adds `report OUT [--task binary|multiclass|both]` to a `cxr` parser."""
  parser = subparsers.add_parser(
      "report", help="write OUT/report/index.html and report.md: results, "
      "cost, confusion matrices, curves, slices and Grad-CAM per model")
  parser.add_argument("output", metavar="OUT",
                      help="the --output folder of `cxr run`")
  parser.add_argument("--task", choices=contract.TASKS + (build.BOTH,),
                      default=build.BOTH,
                      help="which task's latest run to report (default: "
                      "both; a task that never ran gets a note)")
  parser.set_defaults(func=_report)


def main(argv: Optional[List[str]] = None) -> int:
  """`cxr report` on its own: main(["OUT", "--task", "binary"])."""
  parser = argparse.ArgumentParser(prog="cxr")
  register(parser.add_subparsers(dest="command", required=True))
  args = parser.parse_args(
      ["report"] + list(sys.argv[1:] if argv is None else argv))
  return args.func(args)
