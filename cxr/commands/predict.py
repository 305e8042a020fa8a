"""`cxr predict IMAGE... --model NAME`: classify images with a served model
(cxr serve or TF Serving), optionally with Grad-CAM overlays."""

import os
import sys

from schema import contract
from schema import settings


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      "predict", help="classify images with a served model (cxr serve or TF "
      "Serving)")
  parser.add_argument("images", nargs="+", metavar="IMAGE",
                      help="JPEG, PNG or DICOM files (a DICOM file is sent "
                      "as the 16-bit PNG ingestion makes of it)")
  parser.add_argument("--server",
                      default=settings.ServeSettings().local_address,
                      help="gRPC address HOST:PORT (default: %(default)s)")
  parser.add_argument("--model", required=True,
                      help="model name, e.g. cxr_binary_cnn_aug")
  parser.add_argument("--version", type=int,
                      help="model version (default: the latest)")
  parser.add_argument("--label", choices=contract.VERSION_LABELS,
                      help="the version carrying this label (cxr promote) "
                      "instead of the latest")
  parser.add_argument("--gradcam", metavar="OUT_DIR",
                      help="also write OUT_DIR/<image>_gradcam.png, the "
                      "Grad-CAM heat map over the image")
  # No default here: the signature's own applies, and models exported
  # before the method input existed still answer.
  parser.add_argument("--gradcam-method", choices=contract.GRADCAM_METHODS,
                      help="hirescam (the signature's default; keeps the "
                      "gradient per location) or gradcam (the thesis's)")
  parser.add_argument("--timeout", type=float, default=30.0,
                      help="seconds per request")
  parser.set_defaults(func=main)


def _class_name(outputs, class_id: int) -> str:
  """The first image's class name."""
  if contract.CLASS_NAME in outputs:
    return outputs[contract.CLASS_NAME][0].decode("utf-8")
  # gradcam answers no names: the class count tells the task.
  for names in contract.CLASS_NAMES.values():
    if len(names) == outputs[contract.PROBABILITIES].shape[-1]:
      return names[class_id]
  return str(class_id)


def main(args) -> int:
  from serving import client  # pylint: disable=g-import-not-at-top
  with client.Client(args.server, timeout=args.timeout,
                     label=args.label) as connection:
    return _predict_each(connection, args)


def _predict_each(connection, args) -> int:
  """One line per image (path, class, its probability, then the model's
  threshold on P(pneumonia) or the overlay's path, tab-separated); a bad
  file is reported and skipped."""
  # pylint: disable=g-import-not-at-top
  import grpc
  from serving import client
  if args.gradcam:
    os.makedirs(args.gradcam, exist_ok=True)
  failed = False
  for path in args.images:
    try:
      with open(path, "rb") as f:
        image = f.read()
    except OSError as e:
      print(f"{path}: cannot read: {e.strerror or e}", file=sys.stderr)
      failed = True
      continue
    try:
      if args.gradcam:
        outputs = connection.gradcam(args.model, [image],
                                     version=args.version,
                                     method=args.gradcam_method)
      else:
        outputs = connection.predict(args.model, [image],
                                     version=args.version)
    except client.BadImageError as e:
      print(f"{path}: not sent: {e.details}", file=sys.stderr)
      failed = True
      continue
    except client.ClientError as e:
      if e.code == grpc.StatusCode.INVALID_ARGUMENT:
        # This image (e.g. not a JPEG/PNG), not the server: go on.
        print(f"{path}: rejected by the server: {e.details}",
              file=sys.stderr)
        failed = True
        continue
      print(f"error: {e}", file=sys.stderr)
      return 1
    class_id = int(outputs[contract.CLASS_ID][0])
    line = (f"{path}\t{_class_name(outputs, class_id)}\t"
            f"{float(outputs[contract.PROBABILITIES][0, class_id]):.4f}")
    if contract.THRESHOLD in outputs:
      # The decision rule the class came from (models exported with an
      # operating point; gradcam answers none).
      line += f"\tthreshold {float(outputs[contract.THRESHOLD][0]):.4f}"
    if args.gradcam:
      overlay = os.path.join(
          args.gradcam, os.path.splitext(os.path.basename(path))[0]
          + "_gradcam.png")
      with open(overlay, "wb") as f:
        f.write(outputs[contract.OVERLAY_PNG][0])
      line += f"\t{overlay}"
    print(line, flush=True)
  return 1 if failed else 0
