"""What one request in TensorProto's compact form costs `cxr serve` in
memory at the default limits: a single string declared --count times (the
last value repeats), just within --max-input-bytes.

  .venv/bin/python bench/compact_form_memory.py [--mib 2] [--count 256]
      [--model-base BASE]

Starts `python -m cxr.cli serve` as a subprocess (default flags) over an
untrained thesis CNN (or --model-base), sends the request three times, and
prints the server's peak (VmHWM) and current (VmRSS) resident memory
before and after each, from /proc/<pid>/status.
"""

import argparse
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# The project first: schema/__init__.py selects Keras 2 before TensorFlow.
import schema  # noqa: F401  pylint: disable=unused-import,g-bad-import-order
import grpc  # pylint: disable=g-bad-import-order
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from bench import fuzz_server


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--mib", type=float, default=2)
  parser.add_argument("--count", type=int, default=256)
  parser.add_argument("--model-base")
  args = parser.parse_args(argv)
  work = tempfile.mkdtemp(prefix="compact-")
  base = args.model_base
  if base is None:
    from tests.test_server import export_test_model  # pylint: disable=g-import-not-at-top
    base = os.path.join(work, "serving")
    export_test_model(base, fuzz_server.MODEL, 1)
  process, target = fuzz_server.start_subprocess(
      base, os.path.join(work, "server.log"))
  try:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = fuzz_server.MODEL
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
    proto.tensor_shape.dim.add(size=args.count)
    proto.string_val.append(b"x" * int(args.mib * 2**20))
    request.inputs["images"].CopyFrom(proto)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(target.address, options=[
            ("grpc.max_send_message_length", 1 << 30)]))
    print(f"request: {request.ByteSize()} bytes declaring "
          f"{args.count} x {args.mib:g} MiB = "
          f"{args.count * args.mib:g} MiB")
    print(f"server before: VmHWM "
          f"{fuzz_server.proc_rss_mb(process.pid):.0f} MB")
    for _ in range(3):
      start = time.monotonic()
      try:
        stub.Predict(request, timeout=120)
        outcome = "OK"
      except grpc.RpcError as e:
        outcome = f"{e.code().name}: {e.details().splitlines()[0][:80]}"
      print(f"{outcome} in {time.monotonic() - start:.1f} s; VmHWM "
            f"{fuzz_server.proc_rss_mb(process.pid):.0f} MB, VmRSS "
            f"{fuzz_server.proc_rss_mb(process.pid, 'VmRSS'):.0f} MB")
  finally:
    fuzz_server.stop_server(process)
  return 0


if __name__ == "__main__":
  sys.exit(main())
