"""`cxr summary --output OUT --task T`: the latest run's summary."""

from schema import contract


def register(subparsers) -> None:
  parser = subparsers.add_parser("summary",
                                 help="print the latest run's summary")
  parser.add_argument("--output", required=True)
  parser.add_argument("--task", required=True, choices=contract.TASKS)
  parser.set_defaults(func=main)


def print_summary(output: str, task: str):
  """Prints the latest run's summary; returns it, or None if there is none."""
  # pylint: disable=g-import-not-at-top
  from pipeline import summary
  from schema import layout
  try:
    result = summary.summarize(layout.output_paths(output).metadata,
                               layout.pipeline_name(task))
  except (FileNotFoundError, ValueError) as e:
    print(f"no run summary: {e}")
    return None
  print("\n".join(result.lines()))
  return result


def main(args) -> int:
  return 0 if print_summary(args.output, args.task) is not None else 1
