"""The Evaluator's confidence intervals, as TFMA computes them with the
pipeline's options: they bracket the point estimate and narrow with data."""

import numpy as np
import pandas as pd
import tensorflow_model_analysis as tfma

from pipeline import eval_config
from pipeline import summary


def _auc_interval(n, output_path, seed=0):
  rng = np.random.default_rng(seed)
  label = (rng.random(n) < 0.5).astype(np.int64)
  prediction = np.clip(rng.normal(np.where(label, 0.65, 0.35), 0.2), 0, 1)
  config = tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(label_key="label",
                                  prediction_key="prediction")],
      slicing_specs=[tfma.SlicingSpec()],
      metrics_specs=[tfma.MetricsSpec(metrics=[
          tfma.MetricConfig(class_name="AUC")])],
      options=eval_config.evaluation_options(confidence_intervals=True))
  tfma.analyze_raw_data(pd.DataFrame({"label": label,
                                      "prediction": prediction}),
                        config, output_path=output_path)
  metrics, intervals, _ = summary.read_evaluation(output_path)
  return metrics["Overall"], intervals["Overall"]


def test_intervals_bracket_the_estimate_and_narrow_with_more_data(tmp_path):
  widths = []
  for n in (100, 1600):
    values, bounds = _auc_interval(n, str(tmp_path / str(n)))
    low, high = bounds["auc"]
    assert low <= values["auc"] <= high, (n, values["auc"], low, high)
    widths.append(bounds["auc"][1] - bounds["auc"][0])
  # 16 times the data: about a quarter of the width (allow a wide margin).
  assert widths[1] < widths[0] / 2, widths


def test_no_intervals_when_turned_off():
  options = eval_config.evaluation_options(confidence_intervals=False)
  assert not options.compute_confidence_intervals.value
