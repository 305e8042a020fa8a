"""Throughput of `cxr serve` with server-side batching against without, for
many concurrent clients sending one real chest X-ray each.

  .venv/bin/python bench/batching_throughput.py [--model-dir DIR]
      [--clients 8] [--seconds 20] [--rounds 3]
      [--batching-file serving/batching_cpu.config]

Starts two `python -m cxr.cli serve` subprocesses over the same model (DIR,
a pushed version; default an untrained thesis CNN exported here), one with
--batching-parameters-file and one without, and alternates between them
round by round: --clients threads, each on its own channel, send Predict
with one JPEG from ../shared/data back to back for --seconds. Prints
requests/s and p50/p99 latency per round and server, and the ratio of the
medians (batched / unbatched; above 1 means batching helps).
"""

import argparse
import glob
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# The project first: schema/__init__.py selects Keras 2 before TensorFlow.
import schema  # noqa: F401  pylint: disable=unused-import,g-bad-import-order
import grpc  # pylint: disable=g-bad-import-order
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from bench import fuzz_server
from schema import contract

IMAGES = os.path.join(REPO, "..", "shared", "data", "chest_xray", "test",
                      "NORMAL")


def _load(address: str, clients: int, seconds: float, image: bytes):
  """(requests/s, latencies in ms) of clients sending back to back."""
  request = predict_pb2.PredictRequest()
  request.model_spec.name = fuzz_server.MODEL
  request.inputs[contract.IMAGES_INPUT].CopyFrom(
      tf.make_tensor_proto([image], dtype=tf.string, shape=[1]))
  latencies, errors = [], []
  lock = threading.Lock()
  start = time.monotonic()
  def client():
    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(address))
    while time.monotonic() - start < seconds:
      begin = time.perf_counter()
      try:
        stub.Predict(request, timeout=60)
      except grpc.RpcError as e:
        with lock:
          errors.append(e.code().name)
        continue
      with lock:
        latencies.append((time.perf_counter() - begin) * 1000)
  threads = [threading.Thread(target=client) for _ in range(clients)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  if errors:
    raise RuntimeError(f"{len(errors)} requests failed: {set(errors)}")
  return len(latencies) / (time.monotonic() - start), latencies


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--model-dir")
  parser.add_argument("--clients", type=int, default=8)
  parser.add_argument("--seconds", type=float, default=20)
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--batching-file", default=os.path.join(
      REPO, "serving", "batching_cpu.config"))
  args = parser.parse_args(argv)
  work = tempfile.mkdtemp(prefix="batching-")
  base = os.path.join(work, "serving")
  if args.model_dir:
    shutil.copytree(args.model_dir, os.path.join(base, fuzz_server.MODEL, "1"))
  else:
    from bench.exported import export_test_model  # pylint: disable=g-import-not-at-top
    export_test_model(base, fuzz_server.MODEL, 1)
  image = open(sorted(glob.glob(os.path.join(IMAGES, "*.jpeg")))[0],
               "rb").read()
  workers = ("--max-workers", str(max(16, args.clients)))
  servers = {}
  try:
    servers["unbatched"] = fuzz_server.start_subprocess(
        base, os.path.join(work, "unbatched.log"), *workers)
    servers["batched"] = fuzz_server.start_subprocess(
        base, os.path.join(work, "batched.log"), *workers,
        "--batching-parameters-file", args.batching_file)
    rates = {name: [] for name in servers}
    for round_ in range(args.rounds):
      for name, (_, target) in servers.items():
        _load(target.address, args.clients, 2, image)  # warm the path
        rate, latencies = _load(target.address, args.clients, args.seconds,
                                image)
        rates[name].append(rate)
        print(f"round {round_ + 1} {name}: {rate:.1f} requests/s, p50 "
              f"{np.percentile(latencies, 50):.0f} ms, p99 "
              f"{np.percentile(latencies, 99):.0f} ms", flush=True)
  finally:
    for process, _ in servers.values():
      fuzz_server.stop_server(process)
  medians = {name: statistics.median(r) for name, r in rates.items()}
  print(f"{args.clients} clients, batching file "
        f"{os.path.relpath(args.batching_file, REPO)}: "
        f"median {medians['batched']:.1f} requests/s batched, "
        f"{medians['unbatched']:.1f} unbatched")
  print(f"ratio: {medians['batched'] / medians['unbatched']:.2f}")
  shutil.rmtree(work, ignore_errors=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
