"""The project's benchmarks: `cxr bench NAME`, `make bench`.

Each benchmark of `BENCHMARKS` is a module `bench/<name>.py` whose
`main(argv)` runs its contenders side by side in one run, on the same
images (real ones from the shared data wherever images are needed; see
bench/harness.py), prints the machine, the figures as Markdown and, as its
last line, `ratio: X`. `--smoke` runs it at a tiny size so that a test
can keep it from rotting; its figures then mean nothing.

The other scripts in bench/ are one-off studies behind BENCHMARKS.md's
older sections, run as `.venv/bin/python bench/<script>.py`.
"""

import dataclasses
from typing import Optional


@dataclasses.dataclass(frozen=True)
class Benchmark:
  """What a benchmark compares and the ratio it must reach."""
  contenders: str
  minimum: Optional[float] = None  # the ratio must be at least this
  maximum: Optional[float] = None  # or at most this (when lower is better)

  def met(self, ratio: float) -> bool:
    return ((self.minimum is None or ratio >= self.minimum)
            and (self.maximum is None or ratio <= self.maximum))

  @property
  def target(self) -> str:
    return " and ".join(
        ([f">= {self.minimum:g}"] if self.minimum is not None else [])
        + ([f"<= {self.maximum:g}"] if self.maximum is not None else []))


BENCHMARKS = {
    "input": Benchmark(
        "the Trainer's tf.data input (Transform output, decode, the "
        "thesis augmentation, batch 32, 224 px) vs ImageDataGenerator."
        "flow_from_directory with the same augmentation on the same JPEGs; "
        "images/s", minimum=10.0),
    "starvation": Benchmark(
        "one training epoch of cnn_aug fed by the real input pipeline vs "
        "fed the same batches from memory", minimum=0.95),
    "train": Benchmark(
        "training images/s of cnn and cnn_aug at 224 px through the "
        "Trainer's code vs the thesis's Keras loop on the same model, "
        "images and batch size (also: achieved FLOP/s vs a float32 matmul, "
        "target >= 0.6)", minimum=1.0),
    "ingest": Benchmark(
        "images/s into TFRecords: the ingestion component (best Beam mode) "
        "vs a plain single-process loop doing the same checks", minimum=1.0),
    "latency": Benchmark(
        "gRPC Predict p50 at batch 1 through cxr serve vs calling the same "
        "signature in process (printed in-process / served)", minimum=0.8),
    "throughput": Benchmark(
        "8 concurrent gRPC clients vs in-process batched calls of the same "
        "images", minimum=0.8),
    "gradcam": Benchmark(
        "gradcam signature latency vs serving_default at batch 1 (printed "
        "serving_default / gradcam)", minimum=1 / 3),
    "scale": Benchmark(
        "whole pipeline wall time at growing image counts, non-training "
        "components separately; the ratio is the fitted exponent",
        maximum=1.1),
    "memory": Benchmark(
        "peak RSS of each component at a small and a 4x larger data set, "
        "224 px; the ratio is the largest peak's growth (large / small)",
        maximum=1.25),
}
