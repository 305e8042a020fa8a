"""The blessing gates as TFMA's own validator applies them: the floors of
--min-accuracy/--min-auc/--min-recall, 0 turning the recall floor off, and
the no-regression rule against the latest blessed model."""

import pytest
from tensorflow_model_analysis.evaluators import metrics_validator
from tensorflow_model_analysis.metrics import metric_specs

from pipeline import eval_config
from schema import settings

GOOD = {"binary_accuracy": 0.90, "auc": 0.97, "recall": 0.93}


def _failures(gates, values, diffs=None, task="binary"):
  """{metric name (diff: 'name diff')} that TFMA's validator refuses."""
  config = eval_config.make_eval_config(task, gates)
  keys = metric_specs.metric_thresholds_from_metrics_specs(
      config.metrics_specs, eval_config=config)
  metrics = {}
  for key in keys:
    if key.is_diff:
      metrics[key] = (diffs or {}).get(key.name, 0.0)
    else:
      metrics[key] = values[key.name]
  result = metrics_validator.validate_metrics(((), metrics), config)
  failed = {f"{f.metric_key.name}{' diff' if f.metric_key.is_diff else ''}"
            for per_slice in result.metric_validations_per_slice
            for f in per_slice.failures}
  assert result.validation_ok == (not failed)
  return failed


def test_a_model_above_every_floor_is_blessed():
  assert _failures(settings.GateSettings(), GOOD) == set()


@pytest.mark.parametrize("metric,value,gates", [
    ("binary_accuracy", 0.70, settings.GateSettings()),
    ("auc", 0.94, settings.GateSettings(min_auc=0.95)),
    ("recall", 0.85, settings.GateSettings(min_recall=0.90)),
])
def test_a_model_under_a_floor_is_refused(metric, value, gates):
  assert _failures(gates, {**GOOD, metric: value}) == {metric}


def test_a_recall_floor_of_zero_is_no_gate_at_all():
  # Not even the no-regression rule: the recall may fall.
  assert _failures(settings.GateSettings(min_recall=0.0),
                   {**GOOD, "recall": 0.1}, {"recall": -0.5}) == set()


def test_falling_more_than_the_tolerance_below_the_blessed_model_is_refused():
  tolerance = eval_config.REGRESSION_TOLERANCE
  assert _failures(settings.GateSettings(), GOOD,
                   {"auc": -(tolerance - 0.005)}) == set()
  assert _failures(settings.GateSettings(), GOOD,
                   {"auc": -(tolerance + 0.005)}) == {"auc diff"}


def test_the_3class_task_is_gated_on_accuracy():
  gates = settings.GateSettings(min_accuracy=0.8)
  assert _failures(gates, {"sparse_categorical_accuracy": 0.79},
                   task="multiclass") == {"sparse_categorical_accuracy"}
  assert _failures(gates, {"sparse_categorical_accuracy": 0.81},
                   task="multiclass") == set()
