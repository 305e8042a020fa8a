"""`cxr skew --training OUT --serving-logs DIR`: do the served images look
like the training images? TFDV's skew check on image summaries."""

import sys

DEFAULT_LIMIT = 2000


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      "skew", help="compare the images in a cxr serve request log with a "
      "run's training images (TFDV skew check); exit 1 on skew")
  parser.add_argument("--training", required=True,
                      help="a run's output folder (cxr run --output)")
  parser.add_argument("--serving-logs", required=True,
                      help="a cxr serve --log-requests folder")
  parser.add_argument("--max-training-images", type=int,
                      default=DEFAULT_LIMIT,
                      help="train images summarized, drawn at random "
                      "(default: %(default)s)")
  parser.set_defaults(func=main)


def main(args) -> int:
  # pylint: disable=g-import-not-at-top
  from pipeline import skew
  from serving.server import image_summary
  try:
    serving, missing = skew.serving_rows(args.serving_logs)
    images = skew.training_images(args.training, args.max_training_images)
  except FileNotFoundError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  training = []
  for image in images:
    try:
      training.append(image_summary.summarize(image))
    except ValueError:
      pass  # ingestion decoded every image it kept; nothing to compare
  print(f"training images: {len(training)}; served images: {len(serving)}"
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
