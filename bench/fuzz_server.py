"""Fuzzes `cxr serve` with malformed gRPC and REST requests; after every
batch the server must be alive, answer a normal request, and stay under an
RSS bound.

  .venv/bin/python bench/fuzz_server.py [--requests 5000] [--seconds 600]
      [--seed 0] [--batch 100] [--max-rss-mb 3000] [--model-base BASE]

Starts `python -m cxr.cli serve` as a subprocess on 127.0.0.1 (gRPC and
REST, --rest-timeout-seconds 2), over an untrained thesis CNN exported
with bench.exported.export_test_model into a temporary folder, or over
--model-base. Cases come from bench/fuzz_generator.py, case i from its own
RNG seeded with (seed, i), so `--replay i` sends that one case again.
Every request has a client timeout. Outcomes are counted per status; an
INTERNAL/UNKNOWN gRPC status or a 5xx is a finding (client errors must be
4xx or INVALID_ARGUMENT & co.), a process exit a crash, a normal request
not answered within its timeout a hang, VmHWM above --max-rss-mb a breach.
Prints a Markdown table and `fuzz: N requests, C crashes, H hangs, max RSS
X MB`; exits 1 on any finding.
"""

import argparse
import collections
import concurrent.futures
import dataclasses
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# The project first: schema/__init__.py selects Keras 2 before TensorFlow.
import schema  # noqa: F401  pylint: disable=unused-import,g-bad-import-order
import grpc  # pylint: disable=g-bad-import-order
import numpy as np
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc
import tensorflow as tf

from bench import fuzz_generator as gen

MODEL = "cxr_binary_cnn"
TIMEOUT = 30.0  # seconds: any one request, fuzz or normal
# gRPC statuses a malformed request may get; anything else is a finding.
CLIENT_ERRORS = {"OK", "INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION",
                 "RESOURCE_EXHAUSTED", "UNIMPLEMENTED"}
# grpcio answers a message it cannot parse with INTERNAL before any
# servicer runs ("Exception deserializing request!").
RAW_ERRORS = CLIENT_ERRORS | {"INTERNAL"}


@dataclasses.dataclass
class Target:
  """A running server: where it listens, whether it lives, its memory."""
  address: str
  rest_port: int
  alive: Callable[[], bool]
  rss_mb: Callable[[], float]  # peak resident set (VmHWM or ru_maxrss)


@dataclasses.dataclass
class Report:
  requests: int = 0
  outcomes: collections.Counter = dataclasses.field(
      default_factory=collections.Counter)
  findings: List[str] = dataclasses.field(default_factory=list)
  crashes: int = 0
  hangs: int = 0
  max_rss_mb: float = 0.0
  checks: int = 0
  seconds: float = 0.0

  def line(self) -> str:
    return (f"fuzz: {self.requests} requests, {self.crashes} crashes, "
            f"{self.hangs} hangs, max RSS {self.max_rss_mb:.0f} MB")

  def table(self) -> str:
    rows = ["| channel | outcome | requests |", "|---|---|---:|"]
    rows += [f"| {k.split(' ', 1)[0]} | {k.split(' ', 1)[1]} | {n} |"
             for k, n in sorted(self.outcomes.items())]
    return "\n".join(rows)


def signatures_of(address: str, timeout: float = TIMEOUT) -> Dict:
  """{"names", "versions", "signatures": {name: {alias: dtype enum}}} of
  the served model, from GetModelMetadata."""
  stub = prediction_service_pb2_grpc.PredictionServiceStub(
      grpc.insecure_channel(address))
  request = get_model_metadata_pb2.GetModelMetadataRequest()
  request.model_spec.name = MODEL
  request.metadata_field.append("signature_def")
  response = stub.GetModelMetadata(request, timeout=timeout)
  defs = get_model_metadata_pb2.SignatureDefMap()
  response.metadata["signature_def"].Unpack(defs)
  return {"names": [MODEL], "versions": [response.model_spec.version.value],
          "signatures": {name: {a: i.dtype for a, i in s.inputs.items()}
                         for name, s in defs.signature_def.items()
                         if not name.startswith("__")}}


def _parses(method: str, data: bytes) -> bool:
  """Whether raw bytes parse as the method's request: then they reach the
  servicer, and INTERNAL would be a finding."""
  from google.protobuf import message as message_lib  # pylint: disable=g-import-not-at-top
  from tensorflow_serving.apis import get_model_status_pb2  # pylint: disable=g-import-not-at-top
  kinds = {gen.PREDICT: predict_pb2.PredictRequest,
           gen.METADATA: get_model_metadata_pb2.GetModelMetadataRequest,
           gen.STATUS: get_model_status_pb2.GetModelStatusRequest}
  if method not in kinds:
    return False  # UNIMPLEMENTED, whatever the bytes
  try:
    kinds[method].FromString(data)
    return True
  except message_lib.DecodeError:
    return False


def _grpc_call(channel, method: str, message, timeout: float) -> str:
  if method in (gen.RAW, gen.CONCAT):
    method, data = message
    call = channel.unary_unary(method)  # bytes in, bytes out
  else:
    data = message.SerializeToString()
    call = channel.unary_unary(method)
  try:
    call(data, timeout=timeout)
    return "OK"
  except grpc.RpcError as e:
    return e.code().name


def _rest_call(port: int, data: bytes, timeout: float) -> str:
  """Sends one raw HTTP request, half-closes, reads the answer's status."""
  try:
    with socket.create_connection(("127.0.0.1", port),
                                  timeout=timeout) as sock:
      try:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)  # no more body: EOF, not a stall
      except OSError:
        pass  # refused mid-send (e.g. a header line too long): read why
      answer = b""
      while chunk := sock.recv(65536):
        answer += chunk
  except socket.timeout:
    return "TIMEOUT"
  except ConnectionResetError:
    return "reset" if not answer else _status(answer)
  return _status(answer) if answer else "closed"


def _status(answer: bytes) -> str:
  if not answer.startswith(b"HTTP/"):
    # http.server answers a request line it cannot parse as HTTP/0.9 would:
    # an error page without a status line.
    return "error page, no status line"
  return answer.split(b" ", 2)[1].decode("ascii", "replace")


def run_case(target: Target, channel, seed: int, index: int,
             metadata: Dict) -> Optional[tuple]:
  """Sends case `index`: (channel: grpc, grpc-raw or rest; outcome;
  whether it is a finding; what was sent)."""
  rng = random.Random(f"{seed}-{index}")
  if rng.random() < 0.6:
    method, message = gen.grpc_case(rng, metadata)
    outcome = _grpc_call(channel, method, message, TIMEOUT)
    allowed = RAW_ERRORS if method == gen.RAW and not _parses(
        *message) else CLIENT_ERRORS
    bad = outcome not in allowed
    if method in (gen.RAW, gen.CONCAT):
      return (f"grpc-{method}", outcome, bad,
              f"case {index}: {method} bytes to {message[0]}")
    return "grpc", outcome, bad, f"case {index}: {method}"
  data = gen.rest_case(rng, MODEL)
  outcome = _rest_call(target.rest_port, data, TIMEOUT)
  # http.server answers methods it has no do_X for with 501, as it should.
  known = data.split(b" ", 1)[0] in (b"GET", b"POST")
  bad = outcome == "TIMEOUT" or outcome.startswith("5") and (
      known or outcome != "501")
  return "rest", outcome, bad, f"case {index}: REST {data[:120]!r}"


def normal_check(target: Target, channel) -> Optional[str]:
  """None if a normal Predict (gRPC and REST) answers correctly, else why."""
  images = gen.normal_images(2)
  request = predict_pb2.PredictRequest()
  request.model_spec.name = MODEL
  request.inputs["images"].CopyFrom(
      tf.make_tensor_proto(images, dtype=tf.string, shape=[2]))
  stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
  try:
    response = stub.Predict(request, timeout=TIMEOUT)
  except grpc.RpcError as e:
    return f"gRPC Predict: {e.code().name}: {e.details()}"
  probabilities = tf.make_ndarray(response.outputs["probabilities"])
  if probabilities.shape != (2, 2) or not np.allclose(
      probabilities.sum(axis=1), 1, atol=1e-3):
    return f"gRPC Predict answered {probabilities!r}"
  import base64  # pylint: disable=g-import-not-at-top
  body = json.dumps({"instances": [
      {"b64": base64.b64encode(i).decode()} for i in images]}).encode()
  data = (f"POST /v1/models/{MODEL}:predict HTTP/1.1\r\nHost: x\r\n"
          f"Content-Length: {len(body)}\r\n\r\n").encode() + body
  status = _rest_call(target.rest_port, data, TIMEOUT)
  if status != "200":
    return f"REST predict answered {status}"
  return None


def fuzz(target: Target, requests: int, seconds: float, seed: int,
         batch: int, max_rss_mb: float, concurrency: int = 4,
         log: Callable[[str], None] = print) -> Report:
  """Sends up to `requests` cases (fewer if `seconds` run out) in batches,
  checking the server after each."""
  report = Report()
  channel = grpc.insecure_channel(target.address, options=[
      ("grpc.max_send_message_length", 64 << 20),
      ("grpc.max_receive_message_length", 64 << 20)])
  metadata = signatures_of(target.address)
  start = time.monotonic()
  with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
    while report.requests < requests and time.monotonic() - start < seconds:
      indices = range(report.requests,
                      min(requests, report.requests + batch))
      for channel_name, outcome, bad, what in pool.map(
          lambda i: run_case(target, channel, seed, i, metadata), indices):
        report.outcomes[f"{channel_name} {outcome}"] += 1
        if bad:
          report.findings.append(f"{what} -> {outcome}")
      report.requests += len(indices)
      if not target.alive():
        report.crashes += 1
        report.findings.append(f"server died in the batch ending at "
                               f"{report.requests}")
        break
      problem = normal_check(target, channel)
      report.checks += 1
      if problem is not None:
        report.hangs += "DEADLINE" in problem or "TIMEOUT" in problem
        report.findings.append(f"after {report.requests}: {problem}")
        if not target.alive():
          report.crashes += 1
          break
      report.max_rss_mb = max(report.max_rss_mb, target.rss_mb())
      if report.max_rss_mb > max_rss_mb:
        report.findings.append(f"RSS {report.max_rss_mb:.0f} MB above "
                               f"{max_rss_mb:.0f} MB")
        break
      log(f"{report.requests} requests, {len(report.findings)} findings, "
          f"RSS {report.max_rss_mb:.0f} MB, {time.monotonic() - start:.0f} s")
  report.seconds = time.monotonic() - start
  return report


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def proc_rss_mb(pid: int, field: str = "VmHWM") -> float:
  """A process's resident memory from /proc/<pid>/status, in MB."""
  with open(f"/proc/{pid}/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1]) / 1024
  return 0.0


def self_rss_mb() -> float:
  """This process's peak resident set (an in-process server's), in MB."""
  import resource  # pylint: disable=g-import-not-at-top
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def start_subprocess(model_base: str, log_path: str, *extra: str):
  """`cxr serve` over model_base as a child process; (Popen, Target) once
  the model answers."""
  port, rest_port = _free_port(), _free_port()
  env = dict(os.environ, PYTHONPATH=REPO)
  with open(log_path, "wb") as log:
    process = subprocess.Popen(
        [sys.executable, "-m", "cxr.cli", "serve", "--model-base", model_base,
         "--host", "127.0.0.1", "--port", str(port), "--rest-port",
         str(rest_port), *extra], cwd=REPO, env=env, stdout=log,
        stderr=subprocess.STDOUT)
  target = Target(f"127.0.0.1:{port}", rest_port,
                  alive=lambda: process.poll() is None,
                  rss_mb=lambda: proc_rss_mb(process.pid))
  stub = model_service_pb2_grpc.ModelServiceStub(
      grpc.insecure_channel(target.address))
  from tensorflow_serving.apis import get_model_status_pb2  # pylint: disable=g-import-not-at-top
  request = get_model_status_pb2.GetModelStatusRequest()
  request.model_spec.name = MODEL
  deadline = time.monotonic() + 300
  while time.monotonic() < deadline:
    if process.poll() is not None:
      with open(log_path) as f:
        raise RuntimeError("cxr serve exited:\n" + f.read()[-3000:])
    try:
      stub.GetModelStatus(request, timeout=5)
      return process, target
    except grpc.RpcError:
      time.sleep(0.5)
  process.kill()
  raise RuntimeError("cxr serve did not answer within 300 s")


def stop_server(process) -> None:
  """Ends a start_subprocess server: SIGTERM, then SIGKILL after 30 s."""
  process.terminate()
  try:
    process.wait(30)
  except subprocess.TimeoutExpired:
    process.kill()


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--requests", type=int, default=5000)
  parser.add_argument("--seconds", type=float, default=600)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--batch", type=int, default=100)
  parser.add_argument("--concurrency", type=int, default=4)
  parser.add_argument("--max-rss-mb", type=float, default=3000)
  parser.add_argument("--model-base", help="default: a fresh export")
  parser.add_argument("--replay", type=int, help="send only case N")
  args = parser.parse_args(argv)
  work = tempfile.mkdtemp(prefix="fuzz-")
  base = args.model_base
  if base is None:
    from bench.exported import export_test_model  # pylint: disable=g-import-not-at-top
    base = os.path.join(work, "serving")
    export_test_model(base, MODEL, 1)
  log_path = os.path.join(work, "server.log")
  process, target = start_subprocess(base, log_path,
                                     "--rest-timeout-seconds", "2")
  try:
    if args.replay is not None:
      channel = grpc.insecure_channel(target.address)
      print(run_case(target, channel, args.seed, args.replay,
                     signatures_of(target.address)))
      return 0
    report = fuzz(target, args.requests, args.seconds, args.seed,
                  args.batch, args.max_rss_mb, args.concurrency)
  finally:
    stop_server(process)
  print()
  print(report.table())
  print()
  for finding in report.findings[:50]:
    print("FINDING", finding)
  print(f"server log: {log_path}; {report.checks} normal checks; "
        f"{report.seconds:.0f} s; RSS bound "
        f"{args.max_rss_mb:.0f} MB; {len(report.findings)} findings")
  print(report.line())
  return 1 if report.findings or report.crashes or report.hangs else 0


if __name__ == "__main__":
  sys.exit(main())
