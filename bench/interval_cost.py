"""What the Evaluator's bootstrap intervals cost: TFMA's metric stage on the
same predictions with and without them, alternated, in one process.

  .venv/bin/python bench/interval_cost.py [--images N] [--rounds R]

The binary task's metrics and slices (pipeline/eval_config.py) on N test
images' labels and scores, drawn at random; TFMA reads them as raw data
(analyze_raw_data), so model inference, which intervals do not change, is
left out. Prints seconds per round for each and, last, `ratio: X`, the
median time with intervals over the median without.
"""

import argparse
import statistics
import tempfile
import time

import numpy as np
import pandas as pd
import tensorflow_model_analysis as tfma

from pipeline import eval_config
from schema import contract
from schema import settings


def _frame(n: int, seed: int = 0) -> pd.DataFrame:
  rng = np.random.default_rng(seed)
  label = (rng.random(n) < 0.7).astype(np.int64)
  score = np.clip(rng.normal(np.where(label, 0.75, 0.3), 0.2), 0, 1)
  diagnosis = np.where(label, rng.choice(["bacterial", "viral"], n),
                       "normal")
  return pd.DataFrame({
      contract.LABEL_KEY: label, "prediction": score,
      contract.SOURCE_KEY: rng.choice(["chest_xray", "multiclass"], n),
      contract.CHANNELS_KEY: rng.choice([1, 3], n),
      contract.SIZE_BUCKET_KEY: rng.choice(["<1000px", "1000-2000px"], n),
      contract.DIAGNOSIS_KEY: diagnosis})


def _config(intervals: bool) -> tfma.EvalConfig:
  """The binary Evaluator's metrics on the probability output, its slices
  and options, for raw predictions instead of a model."""
  config = eval_config.make_eval_config(
      contract.BINARY, settings.GateSettings(), thresholds=False,
      confidence_intervals=intervals)
  del config.model_specs[:]
  config.model_specs.add(label_key=contract.LABEL_KEY,
                         prediction_key="prediction")
  for spec in config.metrics_specs:
    del spec.output_names[:]
  # The decision's spec reads the same column: its cost is what counts.
  return config


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", type=int, default=573)
  parser.add_argument("--rounds", type=int, default=3)
  args = parser.parse_args()
  frame = _frame(args.images)
  times = {False: [], True: []}
  for _ in range(args.rounds):
    for intervals in (False, True):
      start = time.perf_counter()
      tfma.analyze_raw_data(frame, _config(intervals),
                            output_path=tempfile.mkdtemp())
      times[intervals].append(time.perf_counter() - start)
      print(f"intervals={intervals}: {times[intervals][-1]:.1f} s",
            flush=True)
  without, with_ = (statistics.median(times[False]),
                    statistics.median(times[True]))
  print(f"median without {without:.1f} s, with {with_:.1f} s "
        f"({args.images} images, {args.rounds} rounds)")
  print(f"ratio: {with_ / without:.2f}")


if __name__ == "__main__":
  main()
