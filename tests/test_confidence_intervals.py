"""The Evaluator's confidence intervals, as TFMA computes them with the
pipeline's options and binary metrics: they bracket the point estimates,
narrow with data, and the summary and the report show them.

The pipeline runs of the other tests skip intervals (they cost the
Evaluator several times its time: BENCHMARKS.md, "What the intervals
cost"); here TFMA computes them on drawn labels and scores, read as raw
data, so no model is trained for them.
"""

from google.protobuf import json_format
import numpy as np
import pandas as pd
import pytest
import tensorflow_model_analysis as tfma

from pipeline import eval_config
from pipeline import pipeline as pipeline_lib
from pipeline import summary
from pipeline.report import document
from pipeline.report import sections
from schema import contract
from schema import layout
from schema import settings

PREDICTION = "prediction"
# What the summary and the report show with an interval, and the curves'
# operating points besides.
BRACKETED = (eval_config.ACCURACY_AT_THRESHOLD,
             eval_config.RECALL_AT_THRESHOLD,
             eval_config.SPECIFICITY_AT_THRESHOLD,
             "specificity_at_sensitivity", "sensitivity_at_specificity",
             "auc", "binary_accuracy")


def _binary_config() -> tfma.EvalConfig:
  """The binary Evaluator's metrics and options, intervals on, for raw
  scores in one column, which the operating point's metrics read too (at
  TFMA's 0.5; the pipeline gives them the served decision). The whole test
  split only: the summary and the report bracket no other slice."""
  config = eval_config.make_eval_config(contract.BINARY, thresholds=False,
                                        confidence_intervals=True)
  del config.model_specs[:]
  config.model_specs.add(label_key=contract.LABEL_KEY,
                         prediction_key=PREDICTION)
  del config.slicing_specs[1:]
  for spec in config.metrics_specs:
    del spec.output_names[:]
  return config


def _evaluate(n, output_path, seed=0, means=(0.35, 0.65)):
  """(metrics, intervals) of the whole split, as summary.read_evaluation
  reads them, for n drawn labels and scores (normal around means[0],
  pneumonia around means[1])."""
  rng = np.random.default_rng(seed)
  label = (rng.random(n) < 0.5).astype(np.int64)
  prediction = np.clip(rng.normal(np.where(label, means[1], means[0]), 0.2),
                       0, 1)
  tfma.analyze_raw_data(pd.DataFrame({contract.LABEL_KEY: label,
                                      PREDICTION: prediction}),
                        _binary_config(), output_path=output_path)
  metrics, intervals, _ = summary.read_evaluation(output_path)
  return metrics, intervals


@pytest.fixture(scope="module")
def small_split(tmp_path_factory):
  """100 drawn test images' metrics and intervals, as a ModelResult."""
  metrics, intervals = _evaluate(100, str(tmp_path_factory.mktemp("n100")))
  return summary.ModelResult(
      model=contract.CNN, metrics=metrics, intervals=intervals, blessed=True,
      failed_thresholds=[], pushed_model=None)


def test_intervals_bracket_every_shown_estimate(small_split):
  overall = small_split.metrics["Overall"]
  bounds = small_split.intervals["Overall"]
  for name in BRACKETED:
    low, high = bounds[name]
    assert low - 1e-9 <= overall[name] <= high + 1e-9, (name, low, high)
    assert low < high, (name, low, high)


def test_intervals_narrow_with_more_data(small_split, tmp_path):
  _, large = _evaluate(1600, str(tmp_path / "n1600"))
  widths = [b["Overall"]["auc"][1] - b["Overall"]["auc"][0]
            for b in (small_split.intervals, large)]
  # 16 times the data: about a quarter of the width (allow a wide margin).
  assert widths[1] < widths[0] / 2, widths


def test_proportions_intervals_stay_within_0_and_1(tmp_path):
  # A nearly separable split: TFMA's bootstrap (mean +- t standard
  # errors) puts the AUC's upper bound above 1.
  output = str(tmp_path / "separable")
  metrics, intervals = _evaluate(100, output, means=(0.15, 0.85))
  raw = {}
  for _, by_output in tfma.load_eval_result(output).slicing_metrics:
    for by_sub_key in by_output.values():
      for name, value in by_sub_key[""].items():
        if "boundedValue" in value:
          raw[name] = value["boundedValue"]["upperBound"]
  assert raw["auc"] > 1.0, raw  # else this test shows nothing
  for name, (low, high) in intervals["Overall"].items():
    if name in eval_config.PROPORTIONS:
      assert 0.0 <= low <= metrics["Overall"][name] <= high <= 1.0, name
  assert intervals["Overall"]["auc"][1] == 1.0
  # Counts keep TFMA's bounds.
  assert summary.within_range("example_count", 95.0, 105.0) == (95.0, 105.0)


def test_the_summary_shows_each_interval(small_split):
  overall = small_split.metrics["Overall"]
  bounds = small_split.intervals["Overall"]
  lines = "\n".join(small_split.lines())
  for name in ("auc", eval_config.ACCURACY_AT_THRESHOLD):
    low, high = bounds[name]
    assert f"{name} {overall[name]:.4f} [{low:.4f}, {high:.4f}]" in lines


def test_the_report_table_shows_each_interval(small_split):
  run = summary.RunSummary(
      pipeline_name=layout.pipeline_name(contract.BINARY), run_id="r",
      states={}, image_counts={}, quarantine_csv=None,
      models={small_split.model: small_split})
  blocks = sections.results_table(contract.BINARY, run)
  table = next(b for b in blocks if isinstance(b, document.Table))
  row = dict(zip(table.headers, (c.text for c in table.rows[0])))
  overall = small_split.metrics["Overall"]
  bounds = small_split.intervals["Overall"]

  def shown(key):  # the value at the operating point, with its interval
    low, high = bounds[key]
    return f"{overall[key]:.4f} [{low:.4f}, {high:.4f}]"

  assert row["accuracy"] == shown(eval_config.ACCURACY_AT_THRESHOLD)
  assert row["AUC"] == shown("auc")
  assert row["sensitivity"] == shown(eval_config.RECALL_AT_THRESHOLD)
  assert row["specificity"] == shown(eval_config.SPECIFICITY_AT_THRESHOLD)
  assert any(isinstance(b, document.Para) and "95% confidence intervals"
             in b.text for b in blocks), blocks


def test_no_intervals_when_turned_off():
  options = eval_config.evaluation_options(confidence_intervals=False)
  assert not options.compute_confidence_intervals.value


@pytest.mark.parametrize("intervals", [True, False])
def test_the_run_setting_reaches_every_evaluator(intervals):
  """RunSettings.confidence_intervals (`--no-intervals`) in the eval config
  of each model's Evaluator and cross-data Evaluator."""
  models = (contract.CNN, "cnn_aug")
  pipeline = pipeline_lib.create_pipeline(
      "p", "/root", "/data", contract.BINARY, "/serving",
      settings.RunSettings(models=models, confidence_intervals=intervals),
      cross_data_root="/cross")
  ids = {layout.node_id(kind, model) for model in models
         for kind in (layout.EVALUATOR, layout.CROSS_EVALUATOR)}
  evaluators = [c for c in pipeline.components if c.id in ids]
  assert len(evaluators) == len(ids), [c.id for c in pipeline.components]
  for evaluator in evaluators:
    config = json_format.Parse(evaluator.exec_properties["eval_config"],
                               tfma.EvalConfig())
    assert config.options.compute_confidence_intervals.value is intervals
