"""Latency of the `gradcam` signature vs `serving_default` at batch 1,
through `cxr serve` over gRPC and in process.

Contenders, on the same real chest X-ray JPEGs (one per request, in the
same order for each):

* served: gRPC Predict to a `cxr serve` subprocess (shipped defaults), one
  client on one channel, of `serving_default` and of `gradcam` (its
  defaults: the predicted class, HiResCAM; the answer carries the heat
  map and its PNG overlay), what a user of the server sees;
* in process: the same two signatures of the SavedModel loaded with
  tf.saved_model.load, called on one encoded image.

The model is the thesis CNN at 224 px, untrained (weights do not change
the speed), or a pushed one with --model-dir (bench/served.py). The server
replays the export's warm-up file (gradcam included) before it answers;
every contender also answers a few requests before the timing. Each round
times --requests requests of each contender (the next ones of 40 images,
cycling), the first one changing from round to round. p50 is the median
of the rounds' medians, p99 is over all requests. The ratio is served
serving_default p50 / served gradcam p50 (target >= 1/3: Grad-CAM at
most 3x a prediction).

  cxr bench gradcam [-- --requests 10 --rounds 10 --model-dir DIR]
"""

import shutil
import sys

from bench import harness
from bench import served
from schema import contract

SIGNATURES = (contract.SERVING_DEFAULT, contract.GRADCAM)


def main(argv=None) -> int:
  run = served.batch1_run(__doc__, "gradcam", rounds=10, smoke_requests=3,
                         warm=3, argv=argv)
  rounds, per_round, warm = run.rounds, run.per_round, run.warm
  work, base, images = run.work, run.base, run.images
  requests = {name: [served.request([image], name) for image in images]
              for name in SIGNATURES}
  try:
    with served.Servers(base, work, {"server": ()}) as servers:
      functions = served.in_process(base)
      stub = served.stub(servers.address("server"))
      calls = {}
      for name in SIGNATURES:
        calls[("served", name)] = (
            lambda i, name=name: stub.Predict(requests[name][i],
                                              timeout=served.TIMEOUT))
        calls[("in process", name)] = (
            lambda i, name=name: functions[name]([images[i]]))
      latencies = served.time_rounds(calls, len(images), rounds, per_round,
                                     warm)
  finally:
    shutil.rmtree(work, ignore_errors=True)
  rows = served.latency_rows(
      {f"{where}: {name}": rounds_ for (where, name), rounds_
       in sorted(latencies.items())})
  harness.table(["contender", "p50 ms", "p99 ms", "requests"], rows)
  ratios = {where: served.p50(latencies[(where, contract.SERVING_DEFAULT)])
                   / served.p50(latencies[(where, contract.GRADCAM)])
            for where in ("served", "in process")}
  harness.table(["where", "serving_default p50 / gradcam p50",
                 "gradcam / serving_default"],
                [[where, ratio, 1 / ratio] for where, ratio in ratios.items()])
  return harness.finish(ratios["served"])


if __name__ == "__main__":
  sys.exit(main())
