"""`cxr rollback SERVING MODEL [--label stable|canary]`: return a label to
the version it named before its last promotion (a canary with no earlier
version is withdrawn)."""

import sys

from cxr.commands import promote
from schema import contract


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      "rollback", help="return a version label to the version it named "
      "before")
  parser.add_argument("serving", help="the serving folder, e.g. OUT/serving")
  parser.add_argument("model", help="model name, e.g. cxr_binary_resnet_small")
  parser.add_argument("--label", default=contract.STABLE,
                      choices=contract.VERSION_LABELS,
                      help="default: %(default)s")
  parser.set_defaults(func=main)


def main(args) -> int:
  # pylint: disable=g-import-not-at-top
  from serving import tf_serving_config
  from serving.server import version_labels
  try:
    now = version_labels.rollback(args.serving, args.model, args.label)
  except version_labels.LabelError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"{args.model}: {args.label} -> "
        + (f"version {now}" if now is not None else "removed"))
  promote.report_config(tf_serving_config.refresh_models_config(args.serving))
  return 0
