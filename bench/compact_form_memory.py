"""What requests in TensorProto's compact form cost `cxr serve` in memory
within its limits: one string declared --count times (the last value
repeats), just within --max-input-bytes, sent --parallel at once.

  .venv/bin/python bench/compact_form_memory.py [--mib 2] [--parallel 8]
      [--max-input-bytes N] [--count N] [--model-base BASE]

Starts `python -m cxr.cli serve` as a subprocess over an untrained thesis
CNN (or --model-base), with --max-input-bytes (default: the server's own
default) and --max-workers at least --parallel; --count defaults to the
most copies of the string that limit allows. Sends three rounds of
--parallel such requests at once and prints the server's peak (VmHWM) and
current (VmRSS) resident memory before and after each round, from
/proc/<pid>/status.
"""

import argparse
from concurrent import futures
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
from schema import settings


def _send(stub, request) -> str:
  try:
    stub.Predict(request, timeout=300)
    return "OK"
  except grpc.RpcError as e:
    return f"{e.code().name}: {e.details().splitlines()[0][:80]}"


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--mib", type=float, default=2)
  parser.add_argument("--parallel", type=int, default=8)
  parser.add_argument("--max-input-bytes", type=int,
                      default=settings.ServeSettings().max_input_bytes)
  parser.add_argument("--count", type=int)
  parser.add_argument("--model-base")
  args = parser.parse_args(argv)
  string_bytes = int(args.mib * 2**20)
  count = args.count or args.max_input_bytes // string_bytes
  work = tempfile.mkdtemp(prefix="compact-")
  base = args.model_base
  if base is None:
    from bench.exported import export_test_model  # pylint: disable=g-import-not-at-top
    base = os.path.join(work, "serving")
    export_test_model(base, fuzz_server.MODEL, 1)
  workers = max(args.parallel, settings.ServeSettings().max_workers)
  process, target = fuzz_server.start_subprocess(
      base, os.path.join(work, "server.log"),
      "--max-input-bytes", str(args.max_input_bytes),
      "--max-workers", str(workers))
  try:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = fuzz_server.MODEL
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING)
    proto.tensor_shape.dim.add(size=count)
    proto.string_val.append(b"x" * string_bytes)
    request.inputs["images"].CopyFrom(proto)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(target.address, options=[
            ("grpc.max_send_message_length", 1 << 30)]))
    print(f"--max-input-bytes {args.max_input_bytes}, --max-workers "
          f"{workers}; request: {request.ByteSize()} bytes declaring "
          f"{count} x {args.mib:g} MiB = {count * args.mib:g} MiB, "
          f"{args.parallel} at once")
    print(f"server before: VmHWM "
          f"{fuzz_server.proc_rss_mb(process.pid):.0f} MB")
    with futures.ThreadPoolExecutor(args.parallel) as pool:
      for _ in range(3):
        start = time.monotonic()
        outcomes = list(pool.map(lambda _: _send(stub, request),
                                 range(args.parallel)))
        summary = ", ".join(f"{outcomes.count(o)} {o}"
                            for o in sorted(set(outcomes)))
        print(f"{summary} in {time.monotonic() - start:.1f} s; VmHWM "
              f"{fuzz_server.proc_rss_mb(process.pid):.0f} MB, VmRSS "
              f"{fuzz_server.proc_rss_mb(process.pid, 'VmRSS'):.0f} MB")
  finally:
    fuzz_server.stop_server(process)
  return 0


if __name__ == "__main__":
  sys.exit(main())
