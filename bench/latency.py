"""Predict latency at batch 1: through `cxr serve` over gRPC vs calling the
same signature in process.

Contenders, on the same real chest X-ray JPEGs (one per request, in the
same order for each):

* in process: `serving_default` of the SavedModel loaded with
  tf.saved_model.load, called on one encoded image;
* served: gRPC Predict of `serving_default` to a `cxr serve` subprocess
  (shipped defaults) over the same model, one client on one channel;
* in process through the server's code (serving.server.Servable.predict:
  request TensorProtos in, response TensorProtos out, no gRPC): a third
  row that tells the server's tensor handling from the transport.

The model is the thesis CNN at 224 px, untrained (weights do not change
the speed), or a pushed one with --model-dir (bench/served.py). The server
replays the export's warm-up file before it answers; every contender also
answers a few requests before the timing. Each round times --requests
requests of each contender (the next ones of 40 images, cycling), one
contender after the other, the first one changing from round to round;
short rounds interleave the contenders finely. p50 is the median of the
rounds' medians, p99 is over all requests. The ratio is in-process p50 / served p50
(target >= 0.8: served p50 at most 1.25x in process).

  cxr bench latency [-- --requests 10 --rounds 20 --model-dir DIR]
"""

import shutil
import sys

from bench import harness
from bench import served
from schema import contract

IN_PROCESS = "in process (signature call)"
SERVED = "cxr serve, gRPC Predict"
SERVABLE = "in process, server code (Servable.predict)"


def main(argv=None) -> int:
  run = served.batch1_run(__doc__, "latency", rounds=20, smoke_requests=5,
                         warm=5, argv=argv)
  rounds, per_round, warm = run.rounds, run.per_round, run.warm
  work, base, images = run.work, run.base, run.images

  # pylint: disable=g-import-not-at-top
  from schema.settings import ServeSettings
  from serving.server import repository
  from serving.server import tensors
  settings = ServeSettings()
  limits = tensors.RequestLimits(settings.max_batch,
                                 settings.max_input_bytes)
  requests = [served.request([image]) for image in images]
  try:
    with served.Servers(base, work, {"server": ()}) as servers:
      signature = served.in_process(base)[contract.SERVING_DEFAULT]
      servable = repository.Servable(served.MODEL, 1,
                                     served.version_dir(base))
      servable.warm_up(limits)
      stub = served.stub(servers.address("server"))
      calls = {
          IN_PROCESS: lambda i: signature([images[i]]),
          SERVED: lambda i: stub.Predict(requests[i],
                                         timeout=served.TIMEOUT),
          SERVABLE: lambda i: servable.predict(requests[i], limits),
      }
      latencies = served.time_rounds(calls, len(images), rounds, per_round,
                                     warm)
  finally:
    shutil.rmtree(work, ignore_errors=True)
  rows = served.latency_rows(latencies)
  harness.table(["contender", "p50 ms", "p99 ms", "requests"], rows)
  in_process, served_p50 = (served.p50(latencies[IN_PROCESS]),
                            served.p50(latencies[SERVED]))
  print(f"served p50 is {served_p50 / in_process:.3g}x in process "
        f"(target <= 1.25x); server code without gRPC: "
        f"{served.p50(latencies[SERVABLE]) / in_process:.3g}x")
  return harness.finish(in_process / served_p50)


if __name__ == "__main__":
  sys.exit(main())
