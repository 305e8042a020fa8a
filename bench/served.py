"""What the serving benchmarks (`latency`, `throughput`, `gradcam`) share:
a model to serve, `cxr serve` serving it as a subprocess, Predict requests
carrying real chest X-rays, and the same signatures loaded in process.

The model is --model-dir (a pushed version, OUT/serving/<model>/<version>)
or, by default, an untrained model of the zoo (--model, the thesis CNN)
exported at --image-size px as the Trainer exports it
(bench/exported.py export_test_model): weights do not change the speed,
the architecture and input size do.
"""

import argparse
import concurrent.futures
import dataclasses
import os
import shutil
import statistics
import tempfile
import time
from typing import Callable, Dict, Hashable, List, Sequence

# The project first: schema/__init__.py selects Keras 2 before TensorFlow.
import schema  # noqa: F401  pylint: disable=unused-import,g-bad-import-order
import grpc  # pylint: disable=g-bad-import-order
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from bench import fuzz_server
from bench import harness
from schema import contract

MODEL = fuzz_server.MODEL
IMAGE_SIZE = 224  # the thesis's input size, which its pushed models take
TIMEOUT = 120.0  # seconds for any one request
REAL_IMAGES = "chest_xray/test/*/*.jpeg"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
  parser.add_argument("--model-dir", help="a pushed model version to serve "
                      "(default: an untrained --model exported here)")
  parser.add_argument("--model", default="cnn",
                      help="the zoo model to export (default: cnn)")
  parser.add_argument("--image-size", type=int, default=IMAGE_SIZE,
                      help="its input size in px (default: 224; --smoke: "
                      "the smallest the CNN takes)")
  parser.add_argument("--rounds", type=int, help="rounds, contenders "
                      "alternated in each")
  return parser


@dataclasses.dataclass
class Batch1Run:
  """A batch-1 latency benchmark's sizes, model and real images."""
  args: argparse.Namespace
  rounds: int
  per_round: int
  warm: int
  work: str  # removed by the benchmark when it ends
  base: str
  images: List[bytes]


def batch1_run(doc: str, name: str, rounds: int, smoke_requests: int,
               warm: int, argv=None) -> Batch1Run:
  """Parses a batch-1 latency benchmark's arguments (those of
  add_arguments, and --requests), prints the machine and the sizes, and
  exports (or copies) its model into a new work folder."""
  parser = add_arguments(harness.parser(doc))
  parser.add_argument("--requests", type=int,
                      help="requests per contender and round (default 10)")
  args = parser.parse_args(argv)
  harness.print_machine()
  run = Batch1Run(
      args=args, rounds=args.rounds or (1 if args.smoke else rounds),
      per_round=args.requests or (smoke_requests if args.smoke else 10),
      warm=2 if args.smoke else warm,
      work=tempfile.mkdtemp(prefix=f"bench-{name}-"), base="", images=[])
  run.base = model_base(args, run.work)
  run.images = jpegs(run.per_round if args.smoke else 40)
  print(f"sizes: batch 1, {run.rounds} rounds x {run.per_round} requests "
        f"per contender, {len(run.images)} real JPEGs ({REAL_IMAGES}), "
        f"{run.warm} warm-up requests each\n")
  return run


def model_base(args, work: str) -> str:
  """A model base holding MODEL version 1 (a copy of --model-dir or a
  fresh export); prints which model it is."""
  base = os.path.join(work, "serving")
  if args.model_dir:
    shutil.copytree(args.model_dir, os.path.join(base, MODEL, "1"))
    print(f"model: {os.path.basename(os.path.dirname(args.model_dir))} "
          f"version {os.path.basename(args.model_dir.rstrip(os.sep))} "
          "(--model-dir)")
    return base
  from bench import exported  # pylint: disable=g-import-not-at-top
  size = exported.SMALLEST_CNN_SIZE if args.smoke else args.image_size
  exported.export_test_model(base, MODEL, 1, image_size=size,
                             model=args.model)
  print(f"model: untrained {args.model} at {size} px, exported as the "
        "Trainer exports it (with its warm-up file)")
  return base


def version_dir(base: str) -> str:
  return os.path.join(base, MODEL, "1")


class Servers:
  """`cxr serve` subprocesses over one model base (fuzz_server.
  start_subprocess), started in the background at once, so that they load
  and warm up while the caller does its own; address(name) waits until
  that one answers. A context manager: on exit every server is stopped.

  servers: {name: extra `cxr serve` arguments}.
  """

  def __init__(self, base: str, work: str, servers: Dict[str, Sequence[str]]):
    self._pool = concurrent.futures.ThreadPoolExecutor(max(1, len(servers)))
    self._started = {
        name: self._pool.submit(fuzz_server.start_subprocess, base,
                                os.path.join(work, f"{name}.log"), *extra)
        for name, extra in servers.items()}

  def address(self, name: str) -> str:
    return self._started[name].result()[1].address

  def pid(self, name: str) -> int:
    return self._started[name].result()[0].pid

  def __enter__(self):
    return self

  def __exit__(self, *_):
    for started in self._started.values():
      try:
        process, _ = started.result()
      except Exception:  # pylint: disable=broad-except
        continue  # it never answered: start_subprocess ended it or raised
      fuzz_server.stop_server(process)
    self._pool.shutdown()


def cpu_seconds(pid: int) -> float:
  """CPU time (user and system, all threads) a process has used so far,
  from /proc/<pid>/stat (Linux, as fuzz_server reads its memory)."""
  with open(f"/proc/{pid}/stat", encoding="ascii") as f:
    fields = f.read().rsplit(")", 1)[1].split()
  return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stub(address: str) -> prediction_service_pb2_grpc.PredictionServiceStub:
  """A stub on a channel of its own (one per client thread), connected,
  so that no timed call pays for the connection."""
  channel = grpc.insecure_channel(address)
  grpc.channel_ready_future(channel).result(timeout=TIMEOUT)
  return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def request(images: Sequence[bytes],
            signature: str = contract.SERVING_DEFAULT
            ) -> predict_pb2.PredictRequest:
  """Predict of encoded images, as serving/client.py sends it."""
  result = predict_pb2.PredictRequest()
  result.model_spec.name = MODEL
  result.model_spec.signature_name = signature
  result.inputs[contract.IMAGES_INPUT].CopyFrom(
      tf.make_tensor_proto(list(images), dtype=tf.string,
                           shape=[len(images)]))
  return result


def jpegs(n: int, seed: int = 0) -> List[bytes]:
  """n real chest X-ray JPEGs from the shared data's test split."""
  paths = harness.real_images(REAL_IMAGES, n, seed)
  result = []
  for path in paths:
    with open(path, "rb") as f:
      result.append(f.read())
  return result


def in_process(base: str) -> Dict[str, Callable]:
  """{signature name: callable on a list of encoded images}, the version's
  signatures loaded in this process as any TensorFlow program loads them;
  inputs with defaults (gradcam's) get them explicitly."""
  signatures = tf.saved_model.load(
      version_dir(base), tags=[tf.saved_model.SERVING]).signatures
  def caller(function):
    defaults = {}
    if contract.CLASS_INDEX_INPUT in function.structured_input_signature[1]:
      defaults = {contract.CLASS_INDEX_INPUT: tf.constant([], tf.int32),
                  contract.METHOD_INPUT: tf.constant(
                      contract.DEFAULT_GRADCAM_METHOD)}
    return lambda images: function(
        **{contract.IMAGES_INPUT: tf.constant(images, tf.string)},
        **defaults)
  return {name: caller(f) for name, f in signatures.items()}


def milliseconds(call: Callable[[], object]) -> float:
  begin = time.perf_counter()
  call()
  return (time.perf_counter() - begin) * 1000


def order(contenders: Sequence, round_: int) -> List:
  """The contenders of a round: in turn first, so none always runs on
  the machine as the previous one left it."""
  shift = round_ % len(contenders)
  return list(contenders[shift:]) + list(contenders[:shift])


def time_rounds(calls: Dict[Hashable, Callable[[int], object]],
                images: int, rounds: int, per_round: int,
                warm: int) -> Dict[Hashable, List[List[float]]]:
  """{contender: [[ms of each request] per round]} of calls (each called
  with an image's index): warm requests each first, untimed; then in every
  round each contender, the first one in turn, answers per_round requests,
  the round's images (the next per_round of `images`, cycling) for all.
  Short rounds interleave the contenders finely, so that a change in the
  machine's load falls on all of them alike."""
  for call in calls.values():
    for i in range(warm):
      call(i % images)
  latencies = {key: [] for key in calls}
  for round_ in range(rounds):
    indices = [(round_ * per_round + j) % images for j in range(per_round)]
    for key in order(list(calls), round_):
      call = calls[key]
      latencies[key].append([
          milliseconds(lambda: call(i))  # pylint: disable=cell-var-from-loop
          for i in indices])
  return latencies


def latency_rows(latencies: Dict[str, List[List[float]]]) -> List[list]:
  """Rows (contender, p50 ms: median of the rounds' p50s, p99 ms of all
  requests, requests) from {contender: [[ms of each request] per round]}."""
  rows = []
  for name, rounds in latencies.items():
    every = [ms for round_ in rounds for ms in round_]
    rows.append([name, p50(rounds), harness.percentile(every, 99),
                 len(every)])
  return rows


def p50(rounds: List[List[float]]) -> float:
  """The median over rounds of each round's median latency."""
  return statistics.median(harness.percentile(r, 50) for r in rounds)
