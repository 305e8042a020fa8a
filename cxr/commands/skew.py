"""`cxr skew --training OUT --serving-logs DIR`: do the served images look
like the training images? TFDV's skew check on image summaries."""

import sys


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      "skew", help="compare the images in a cxr serve request log with a "
      "run's training images (TFDV skew check); exit 1 on skew")
  parser.add_argument("--training", required=True,
                      help="a run's output folder (cxr run --output)")
  parser.add_argument("--serving-logs", required=True,
                      help="a cxr serve --log-requests folder")
  parser.set_defaults(func=main)


def main(args) -> int:
  # pylint: disable=g-import-not-at-top
  from pipeline import skew
  try:
    serving, missing = skew.serving_rows(args.serving_logs)
    training = skew.training_statistics(args.training)
  except FileNotFoundError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(f"training images: {skew.example_count(training)}; served images: "
        f"{len(serving)}"
        + (f" ({missing} logged without image or summary, left out)"
           if missing else ""))
  if not serving:
    print("error: the log holds no image to compare", file=sys.stderr)
    return 2
  anomalies = skew.skew_anomalies(training, serving)
  for feature, description in anomalies.items():
    print(f"  skew in {feature}: {description}")
  print("skew found" if anomalies else "no skew past the schema's "
        "thresholds (schema/image_summary.pbtxt)")
  return 1 if anomalies else 0
