"""The blessing gates as TFMA's own validator applies them: the floors of
--min-accuracy/--min-auc/--min-recall/--min-specificity (binary accuracy,
sensitivity and specificity at the model's operating point; a 3-class
model's accuracy, and the sensitivity and specificity of its pneumonia
decision), 0 turning the recall and specificity floors off, and the
no-regression rule against the latest blessed model."""

import pytest
from tensorflow_model_analysis.evaluators import metrics_validator
from tensorflow_model_analysis.metrics import metric_specs

from pipeline import eval_config
from schema import contract
from schema import settings

ACCURACY = eval_config.ACCURACY_AT_THRESHOLD
RECALL = eval_config.RECALL_AT_THRESHOLD
SPECIFICITY = eval_config.SPECIFICITY_AT_THRESHOLD
GOOD = {ACCURACY: 0.90, "auc": 0.97, RECALL: 0.93, SPECIFICITY: 0.8}
MULTICLASS_ACCURACY = eval_config.default_metric_name(
    "SparseCategoricalAccuracy")
GOOD_MULTICLASS = {MULTICLASS_ACCURACY: 0.85, RECALL: 0.95, SPECIFICITY: 0.95}


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


def _gated(task, gates):
  """(metric, output) pairs with a floor in the task's config."""
  config = eval_config.make_eval_config(task, gates)
  keys = metric_specs.metric_thresholds_from_metrics_specs(
      config.metrics_specs, eval_config=config)
  return {(k.name, k.output_name) for k in keys if not k.is_diff}


def test_a_model_above_every_floor_is_blessed():
  assert _failures(settings.GateSettings(), GOOD) == set()


@pytest.mark.parametrize("metric,value,gates", [
    (ACCURACY, 0.70, settings.GateSettings()),
    ("auc", 0.94, settings.GateSettings(min_auc=0.95)),
    (RECALL, 0.85, settings.GateSettings(min_recall=0.90)),
    (SPECIFICITY, 0.75, settings.GateSettings(min_specificity=0.9)),
])
def test_a_model_under_a_floor_is_refused(metric, value, gates):
  assert _failures(gates, {**GOOD, metric: value}) == {metric}


@pytest.mark.parametrize("metric,gates", [
    (RECALL, settings.GateSettings(min_recall=0.0)),
    (SPECIFICITY, settings.GateSettings(min_specificity=0.0))])
def test_a_floor_of_zero_is_no_gate_at_all(metric, gates):
  # Not even the no-regression rule: the metric may fall.
  assert _failures(gates, {**GOOD, metric: 0.1}, {metric: -0.5}) == set()


def test_the_floors_apply_at_the_operating_point_not_at_half():
  # The same names at 0.5 carry no floor: only the served decision counts.
  gated = _gated("binary", settings.GateSettings(min_specificity=0.5))
  assert gated == {(ACCURACY, contract.PNEUMONIA_DECISION),
                   (RECALL, contract.PNEUMONIA_DECISION),
                   (SPECIFICITY, contract.PNEUMONIA_DECISION),
                   ("auc", contract.OUTPUTS)}


def test_falling_more_than_the_tolerance_below_the_blessed_model_is_refused():
  tolerance = eval_config.REGRESSION_TOLERANCE
  assert _failures(settings.GateSettings(), GOOD,
                   {"auc": -(tolerance - 0.005)}) == set()
  assert _failures(settings.GateSettings(), GOOD,
                   {"auc": -(tolerance + 0.005)}) == {"auc diff"}


def test_the_3class_task_is_gated_on_accuracy():
  gates = settings.GateSettings(min_accuracy=0.8)
  assert _failures(gates, {**GOOD_MULTICLASS, MULTICLASS_ACCURACY: 0.79},
                   task="multiclass") == {MULTICLASS_ACCURACY}
  assert _failures(gates, {**GOOD_MULTICLASS, MULTICLASS_ACCURACY: 0.81},
                   task="multiclass") == set()


@pytest.mark.parametrize("metric,value,gates", [
    (RECALL, 0.85, settings.GateSettings(min_recall=0.90)),
    (SPECIFICITY, 0.75, settings.GateSettings(min_specificity=0.9)),
])
def test_a_3class_model_under_a_floor_is_refused(metric, value, gates):
  # Its pneumonia decision is served too, so the screening floors hold.
  assert _failures(gates, {**GOOD_MULTICLASS, metric: value},
                   task="multiclass") == {metric}
  assert _failures(gates, GOOD_MULTICLASS, task="multiclass") == set()


def test_a_3class_model_is_gated_on_its_own_accuracy_not_the_decisions():
  gated = _gated("multiclass", settings.GateSettings(min_specificity=0.5))
  assert gated == {(MULTICLASS_ACCURACY, contract.OUTPUTS),
                   (RECALL, contract.PNEUMONIA_DECISION),
                   (SPECIFICITY, contract.PNEUMONIA_DECISION)}
