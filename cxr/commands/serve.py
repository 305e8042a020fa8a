"""`cxr serve --model-base OUT/serving`: TF Serving's gRPC (and REST) API
for the pushed models, without TF Serving."""

import signal
import sys

from schema import settings


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      "serve", help="serve the pushed models over TF Serving's gRPC (and "
      "REST) API, without TF Serving")
  parser.add_argument("--model-base", required=True,
                      help="BASE/<model>/<version>/saved_model.pb, e.g. "
                      "OUT/serving; polled for new versions")
  settings.add_arguments(parser, settings.ServeSettings)
  parser.set_defaults(func=main)


def main(args) -> int:
  # pylint: disable=g-import-not-at-top
  from absl import logging
  from serving import server
  logging.set_verbosity(logging.INFO)  # what loads, and why not
  try:
    handle = server.start_server(
        args.model_base, settings.from_args(settings.ServeSettings, args))
  except (OSError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  # SIGTERM (docker stop, Kubernetes) ends it like Ctrl-C.
  previous = signal.signal(signal.SIGTERM,
                           lambda *_: handle.grpc_server.stop(0))
  try:
    handle.wait()
  except KeyboardInterrupt:
    pass
  finally:
    signal.signal(signal.SIGTERM, previous)
    handle.stop()
  return 0
