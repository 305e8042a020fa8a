"""Images/s of 8 concurrent gRPC clients of `cxr serve` vs in-process
batched calls of the same images.

Contenders, each on the same real chest X-ray JPEGs:

* in process: `serving_default` of the SavedModel loaded with
  tf.saved_model.load, called on batches of --batch (32, the Trainer's
  batch and the shipped batching config's max_batch_size) images;
* `cxr serve` as it starts by default (no server-side batching, 8 request
  threads): --clients threads, each on its own channel, send Predict with
  one image per request back to back, the images dealt out among them;
* the same with `--batching-parameters-file serving/batching_cpu.config`
  (what serving/kubernetes deploys with TF Serving): a second served row,
  with its own ratio.

The model is the thesis CNN at 224 px, untrained (weights do not change
the speed), or a pushed one with --model-dir (bench/served.py). Both
servers replay the export's warm-up file before they answer; every
contender also does one untimed pass over --batch images. Each round
times every contender over all --images images, the first contender
changing from round to round; images/s is the median over rounds. The
CPU time per image (of the process doing the work: this one in process,
the server when served) and the cores it kept busy tell a contender that
costs more per image from one that used fewer cores while other programs
took the rest. The ratio is served (shipped defaults) / in process
(target >= 0.8).

  cxr bench throughput [-- --images 64 --clients 8 --rounds 10]
"""

import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

import grpc

from bench import harness
from bench import served
from schema import contract

BATCHING_FILE = os.path.join("serving", "batching_cpu.config")
IN_PROCESS = "in process, batches of {batch}"
SERVED = "cxr serve (defaults), {clients} clients"
BATCHED = (f"cxr serve --batching-parameters-file {BATCHING_FILE}, "
           "{clients} clients")


def _clients(stubs, requests) -> float:
  """Seconds for one thread per stub (each stub on its own channel) to
  send all requests (request i by client i % clients), one at a time
  each."""
  clients, errors = len(stubs), []
  def client(k):
    for request in requests[k::clients]:
      try:
        stubs[k].Predict(request, timeout=served.TIMEOUT)
      except grpc.RpcError as e:
        errors.append(f"{e.code().name}: {e.details()}")
  threads = [threading.Thread(target=client, args=(k,))
             for k in range(clients)]
  begin = time.perf_counter()
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  seconds = time.perf_counter() - begin
  if errors:
    raise RuntimeError(f"{len(errors)} requests failed: {errors[0]}")
  return seconds


def _batches(signature, images, batch: int) -> float:
  """Seconds to run the signature over the images, batch by batch."""
  begin = time.perf_counter()
  for start in range(0, len(images), batch):
    signature(images[start:start + batch])
  return time.perf_counter() - begin


def main(argv=None) -> int:
  parser = served.add_arguments(harness.parser(__doc__))
  parser.add_argument("--images", type=int,
                      help="images per contender and round (default 64)")
  parser.add_argument("--clients", type=int, default=8)
  parser.add_argument("--batch", type=int,
                      help="in-process batch size (default 32)")
  args = parser.parse_args(argv)
  harness.print_machine()
  rounds = args.rounds or (1 if args.smoke else 10)
  batch = args.batch or (8 if args.smoke else 32)
  images = served.jpegs(args.images or (16 if args.smoke else 64))
  work = tempfile.mkdtemp(prefix="bench-throughput-")
  base = served.model_base(args, work)
  print(f"sizes: {len(images)} real JPEGs ({served.REAL_IMAGES}) per "
        f"contender and round, {rounds} rounds, {args.clients} clients of "
        f"one image per request, in-process batch {batch}\n")
  requests = [served.request([image]) for image in images]
  names = {"in": IN_PROCESS.format(batch=batch),
           "served": SERVED.format(clients=args.clients),
           "batched": BATCHED.format(clients=args.clients)}
  batching = ("--batching-parameters-file",
              os.path.join(harness.REPO, BATCHING_FILE))
  try:
    # --smoke starts one server only, to stay well under a minute.
    started = {"served": ()} if args.smoke else {"served": (),
                                                  "batched": batching}
    with served.Servers(base, work, started) as servers:
      signature = served.in_process(base)[contract.SERVING_DEFAULT]
      # Each run times its contender over the first n images; the CPU
      # time is that of the process doing the work (this one, or the
      # server: its clients' own share is not counted).
      runs = {"in": lambda n: _batches(signature, images[:n], batch)}
      pids = {"in": os.getpid()}
      for key in started:
        stubs = [served.stub(servers.address(key))
                 for _ in range(args.clients)]
        runs[key] = lambda n, stubs=stubs: _clients(stubs, requests[:n])
        pids[key] = servers.pid(key)
      for run in runs.values():
        run(batch)  # warm-up, untimed
      rates, cpu = {key: [] for key in runs}, {key: [] for key in runs}
      for round_ in range(rounds):
        for key in served.order(list(runs), round_):
          before = served.cpu_seconds(pids[key])
          seconds = runs[key](len(images))
          rates[key].append(len(images) / seconds)
          cpu[key].append(served.cpu_seconds(pids[key]) - before)
  finally:
    shutil.rmtree(work, ignore_errors=True)
  medians = {key: statistics.median(r) for key, r in rates.items()}
  harness.table(
      ["contender", "images/s (median)", "/ in process",
       "CPU ms per image (median)", "cores busy (median)",
       "rounds (images/s)"],
      [[names[key], medians[key], medians[key] / medians["in"],
        statistics.median(c * 1000 / len(images) for c in cpu[key]),
        statistics.median(c * r / len(images)
                          for c, r in zip(cpu[key], rates[key])),
        " ".join(f"{r:.1f}" for r in rates[key])] for key in runs])
  print("ratio of the shipped defaults (`cxr serve`, no batching file); "
        + (f"with {BATCHING_FILE}: {medians['batched'] / medians['in']:.3g}"
           if "batched" in medians else "--smoke: no batching-file server"))
  return harness.finish(medians["served"] / medians["in"])


if __name__ == "__main__":
  sys.exit(main())
