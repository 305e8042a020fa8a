"""`cxr promote SERVING MODEL VERSION --label stable|canary`: point a version
label at a pushed version; both servers follow without a restart."""

import sys

from schema import contract


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      "promote", help="label a pushed model version stable or canary")
  parser.add_argument("serving", help="the serving folder, e.g. OUT/serving")
  parser.add_argument("model", help="model name, e.g. cxr_binary_resnet_small")
  parser.add_argument("version", type=int, help="a pushed version")
  parser.add_argument("--label", required=True,
                      choices=contract.VERSION_LABELS)
  parser.set_defaults(func=main)


def main(args) -> int:
  # pylint: disable=g-import-not-at-top
  from serving import tf_serving_config
  from serving.server import version_labels
  try:
    before = version_labels.promote(args.serving, args.model, args.version,
                                    args.label)
  except version_labels.LabelError as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  was = f" (was version {before})" if before is not None else ""
  print(f"{args.model}: {args.label} -> version {args.version}{was}")
  report_config(tf_serving_config.refresh_models_config(args.serving))
  return 0


def report_config(path) -> None:
  """Says what TF Serving will read, if anything."""
  if path:
    print(f"rewrote {path}: TF Serving applies it at its next config poll")
