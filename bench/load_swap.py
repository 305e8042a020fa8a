"""Load with hot swaps: concurrent gRPC clients keep `cxr serve` busy while
new versions are pushed and corrupt ones dropped in; no request may fail.

  .venv/bin/python bench/load_swap.py [--clients 8] [--seconds 60]
      [--swap-seconds 15] [--source SAVED_MODEL]

Starts `python -m cxr.cli serve` as a subprocess on 127.0.0.1 over a fresh
model base holding version 1 of an untrained thesis CNN (exported with
bench.exported.export_test_model, or a copy of --source). --clients
threads, each on its own channel, send Predict (two PNGs) back to back.
Every --swap-seconds a new good version is pushed (copied aside, renamed
into place, as the Pusher does); half-way between two pushes a corrupt
version is dropped in the same way, a truncated saved_model.pb once and
garbage variables data once. Prints requests, errors, p50/p99 latency, the
versions that answered and the final GetModelStatus; exits 1 on any error,
on an answer from a corrupt version, or if the last good version never
answered.
"""

import argparse
import collections
import os
import shutil
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
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from bench import fuzz_generator
from bench import fuzz_server

MODEL = fuzz_server.MODEL
TIMEOUT = 60.0  # seconds per request: a miss is an error


def push(source: str, model_dir: str, version: int, corrupt: str = "") -> None:
  """Copies source aside, corrupts the copy if asked, renames it into
  model_dir/version (the Pusher's atomic move)."""
  staging = os.path.join(model_dir, f".staging-{version}")
  shutil.copytree(source, staging)
  if corrupt == "truncated saved_model.pb":
    path = os.path.join(staging, "saved_model.pb")
    with open(path, "rb") as f:
      data = f.read()
    with open(path, "wb") as f:
      f.write(data[:len(data) // 2])
  elif corrupt == "garbage variables data":
    # The index stays intact: only the checksums can tell.
    variables = os.path.join(staging, "variables")
    for name in os.listdir(variables):
      path = os.path.join(variables, name)
      if ".data-" not in name:
        continue
      size = os.path.getsize(path)
      with open(path, "wb") as f:
        f.write(os.urandom(max(size, 16)))
  os.rename(staging, os.path.join(model_dir, str(version)))


class Client(threading.Thread):
  """Sends Predict back to back; notes latency, version or error."""

  def __init__(self, address: str, stop: threading.Event):
    super().__init__(daemon=True)
    self.latencies, self.versions, self.errors = [], collections.Counter(), []
    self._address, self._halt = address, stop

  def run(self):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(
        grpc.insecure_channel(self._address))
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(
        fuzz_generator.normal_images(2), dtype=tf.string, shape=[2]))
    while not self._halt.is_set():
      start = time.perf_counter()
      try:
        response = stub.Predict(request, timeout=TIMEOUT)
      except grpc.RpcError as e:
        self.errors.append(f"{e.code().name}: {e.details()}")
        continue
      self.latencies.append(time.perf_counter() - start)
      self.versions[response.model_spec.version.value] += 1


def status(address: str):
  stub = model_service_pb2_grpc.ModelServiceStub(grpc.insecure_channel(
      address))
  request = get_model_status_pb2.GetModelStatusRequest()
  request.model_spec.name = MODEL
  state = get_model_status_pb2.ModelVersionStatus.State.Name
  return {s.version: state(s.state) + (f" ({s.status.error_message[:80]})"
                                       if s.status.error_message else "")
          for s in stub.GetModelStatus(request, timeout=30)
          .model_version_status}


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--clients", type=int, default=8)
  parser.add_argument("--seconds", type=float, default=60)
  parser.add_argument("--swap-seconds", type=float, default=15)
  parser.add_argument("--source", help="a SavedModel to push copies of "
                      "(default: a fresh export)")
  args = parser.parse_args(argv)
  work = tempfile.mkdtemp(prefix="load-swap-")
  source = args.source
  if source is None:
    from bench.exported import export_test_model  # pylint: disable=g-import-not-at-top
    source = export_test_model(os.path.join(work, "source"), MODEL, 1)
  model_dir = os.path.join(work, "serving", MODEL)
  os.makedirs(model_dir)
  push(source, model_dir, 1)
  # The schedule: (seconds from the start, version, corruption or "").
  corruptions = ["truncated saved_model.pb", "garbage variables data"]
  schedule, version, at = [], 1, args.swap_seconds
  while at < args.seconds:
    if corruptions and at + args.swap_seconds / 2 < args.seconds:
      schedule.append((at - args.swap_seconds / 2, version + 1,
                       corruptions.pop(0)))
      version += 1
    version += 1
    schedule.append((at, version, ""))
    at += args.swap_seconds
  good = [1] + [v for _, v, c in schedule if not c]
  bad = {v: c for _, v, c in schedule if c}
  log_path = os.path.join(work, "server.log")
  process, target = fuzz_server.start_subprocess(
      os.path.join(work, "serving"), log_path, "--poll-seconds", "1")
  stop = threading.Event()
  clients = [Client(target.address, stop) for _ in range(args.clients)]
  start = time.monotonic()
  for client in clients:
    client.start()
  try:
    for when, v, corrupt in schedule:
      time.sleep(max(0.0, start + when - time.monotonic()))
      push(source, model_dir, v, corrupt)
      print(f"{time.monotonic() - start:5.1f} s: pushed version {v}"
            f"{' (' + corrupt + ')' if corrupt else ''}", flush=True)
    time.sleep(max(0.0, start + args.seconds - time.monotonic()))
  finally:
    stop.set()
    for client in clients:
      client.join(TIMEOUT + 5)
    elapsed = time.monotonic() - start
    states = status(target.address) if target.alive() else {}
    alive = target.alive()
    rss = target.rss_mb() if alive else 0.0
    fuzz_server.stop_server(process)
  latencies = np.array(sum((c.latencies for c in clients), [])) * 1000
  versions = sum((c.versions for c in clients), collections.Counter())
  errors = sum((c.errors for c in clients), [])
  requests = len(latencies) + len(errors)
  p50, p99 = np.percentile(latencies, [50, 99]) if len(latencies) else (0, 0)
  print()
  print("| clients | seconds | requests | errors | requests/s | p50 ms | "
        "p99 ms | max ms |")
  print("|---:|---:|---:|---:|---:|---:|---:|---:|")
  print(f"| {args.clients} | {elapsed:.0f} | {requests} | {len(errors)} | "
        f"{requests / elapsed:.1f} | {p50:.0f} | {p99:.0f} | "
        f"{latencies.max() if len(latencies) else 0:.0f} |")
  print()
  print("versions answering (requests):", ", ".join(
      f"{v}: {n}" for v, n in sorted(versions.items())))
  print("corrupt versions dropped in:", ", ".join(
      f"{v} ({c})" for v, c in sorted(bad.items())))
  print("final status:", states)
  with open(log_path, errors="replace") as f:
    for line in f:
      if "failed to load" in line:
        print("server:", line.strip().split(":", 2)[-1][:200])
  print(f"server peak RSS {rss:.0f} MB; log {log_path}")
  for error in errors[:20]:
    print("ERROR", error)
  problems = []
  if errors:
    problems.append(f"{len(errors)} errors")
  if set(versions) & set(bad):
    problems.append("a corrupt version answered")
  if versions.get(good[-1], 0) == 0:
    problems.append(f"the last good version {good[-1]} never answered")
  if not alive:
    problems.append("the server died")
  print(f"load: {requests} requests, {len(errors)} errors, p50 {p50:.0f} ms, "
        f"p99 {p99:.0f} ms, {len(schedule)} pushes "
        f"({len(bad)} corrupt)" + (f"; FAILED: {'; '.join(problems)}"
                                   if problems else ""))
  return 1 if problems else 0


if __name__ == "__main__":
  sys.exit(main())
