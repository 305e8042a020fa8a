"""TFMA evaluation config: metrics, slices and the blessing thresholds."""

import re
from typing import List, Optional

import tensorflow_model_analysis as tfma

from schema import contract
from schema import settings
# A candidate may not fall more than this below the latest blessed model.
REGRESSION_TOLERANCE = 0.02


def _overall_threshold(lower_bound: float
                       ) -> tfma.PerSliceMetricThreshold:
  """A floor and a no-regression rule, on the whole test split only.

  Per-label slices hold one class, where AUC is undefined.
  """
  return tfma.PerSliceMetricThreshold(
      slicing_specs=[tfma.SlicingSpec()],
      threshold=tfma.MetricThreshold(
          value_threshold=tfma.GenericValueThreshold(
              lower_bound={"value": lower_bound}),
          change_threshold=tfma.GenericChangeThreshold(
              direction=tfma.MetricDirection.HIGHER_IS_BETTER,
              absolute={"value": -REGRESSION_TOLERANCE})))


# Slices besides the whole test split: the true label; the data set; the
# original file's channels (grayscale vs RGB files, a known shortcut in
# Kermany data); its size bucket; what a DICOM header says of how it was
# taken and stored (modality, view, bit depth, photometric, manufacturer:
# shortcuts a model may learn across hospitals and scanners). The binary
# model also gets the diagnosis, so its sensitivity on viral pneumonia
# shows on its own.
SLICE_FEATURES = (contract.LABEL_KEY, contract.SOURCE_KEY,
                  contract.CHANNELS_KEY, contract.SIZE_BUCKET_KEY,
                  contract.MODALITY_KEY, contract.VIEW_POSITION_KEY,
                  contract.BITS_STORED_KEY, contract.PHOTOMETRIC_KEY,
                  contract.MANUFACTURER_KEY)
BINARY_SLICE_FEATURES = (contract.DIAGNOSIS_KEY,)


def _metric(class_name: str, lower_bound: Optional[float],
            thresholds: bool = True, config: str = "") -> tfma.MetricConfig:
  """A metric gating blessing (floor and no regression) unless bound is None.

  A floor of 0 still gates: it keeps the no-regression rule, and the
  Evaluator blesses nothing when no metric has a threshold at all.
  """
  per_slice = []
  if thresholds and lower_bound is not None:
    per_slice = [_overall_threshold(lower_bound)]
  return tfma.MetricConfig(class_name=class_name, config=config,
                           per_slice_thresholds=per_slice)


def default_metric_name(class_name: str) -> str:
  """The name TFMA and Keras give a metric class by default: AUC -> auc,
  BinaryAccuracy -> binary_accuracy."""
  return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", class_name).lower()


# Metrics at the model's operating point: the same TFMA metrics on the
# served decision (serving_tf_example's 0/1 `pneumonia_decision`), named
# apart from their namesakes at 0.5 on the probability by this suffix.
# Summary and report read them by these names.
AT_THRESHOLD = "_at_threshold"
AT_THRESHOLD_METRICS = ("BinaryAccuracy", "Recall", "Specificity", "Precision",
                        "TruePositives", "FalsePositives", "TrueNegatives",
                        "FalseNegatives")
ACCURACY_AT_THRESHOLD = default_metric_name("BinaryAccuracy") + AT_THRESHOLD
RECALL_AT_THRESHOLD = default_metric_name("Recall") + AT_THRESHOLD
SPECIFICITY_AT_THRESHOLD = default_metric_name("Specificity") + AT_THRESHOLD
# Metrics whose values are proportions, in [0, 1] (their intervals are
# clipped to it: pipeline/summary.py).
PROPORTIONS = frozenset(
    [default_metric_name(c) for c in (
        "AUC", "BinaryAccuracy", "SparseCategoricalAccuracy", "Precision",
        "Recall", "Specificity", "SpecificityAtSensitivity",
        "SensitivityAtSpecificity")]
    + ["auc_pr"]
    + [default_metric_name(c) + AT_THRESHOLD for c in (
        "BinaryAccuracy", "Recall", "Specificity", "Precision")])
# TFMA's operating-point curves on the probability, for comparison with the
# chosen threshold's figures.
SPECIFICITY_AT_SENSITIVITY = 0.95
SENSITIVITY_AT_SPECIFICITY = 0.90


def _at_threshold_metrics(task: str, gates: settings.GateSettings,
                          thresholds: bool) -> List[tfma.MetricConfig]:
  """Accuracy, sensitivity, specificity, precision and the confusion
  counts of the served pneumonia decision. Its sensitivity and specificity
  floors apply to either task's model: both serve that decision. The
  accuracy floor applies here to a binary model only; a 3-class model's is
  on its 3-class accuracy."""
  # A recall or specificity floor of 0 means none: it would only add a
  # no-regression rule.
  floors = {"Recall": gates.min_recall or None,
            "Specificity": gates.min_specificity or None}
  if task == contract.BINARY:
    floors["BinaryAccuracy"] = gates.min_accuracy
  return [_metric(class_name, floors.get(class_name), thresholds,
                  config=f'"name": "{default_metric_name(class_name)}'
                  f'{AT_THRESHOLD}"')
          for class_name in AT_THRESHOLD_METRICS]


def evaluation_options(confidence_intervals: bool) -> tfma.Options:
  """TFMA options: Poisson bootstrap 95% intervals when asked for."""
  options = tfma.Options()
  if confidence_intervals:
    options.compute_confidence_intervals.value = True
    options.confidence_intervals.method = (
        tfma.ConfidenceIntervalOptions.POISSON_BOOTSTRAP)
  return options


def make_eval_config(task: str,
                     gates: settings.GateSettings = settings.GateSettings(),
                     thresholds: bool = True,
                     confidence_intervals: bool = True) -> tfma.EvalConfig:
  """Metrics overall and per slice; floors on the overall slice gate blessing.

  Binary: on the probability, ROC AUC and PR AUC, loss, calibration,
  specificity at sensitivity 0.95 and sensitivity at specificity 0.90, and
  accuracy, precision, recall (sensitivity), specificity and the confusion
  matrix at 0.5; the same four and the confusion matrix at the model's own
  operating point (`*_at_threshold`, the served decision). The floors
  `min_accuracy`, `min_recall` and `min_specificity` apply at the operating
  point, `min_auc` to the AUC. 3-class: accuracy, loss, one-vs-rest AUC and
  per-class precision and recall (of the arg-max class), the confusion
  matrix; gated on accuracy; and its served pneumonia decision (1 -
  P(normal) at its threshold) against pneumonia of either kind, by the same
  `*_at_threshold` names, gated by `min_recall` and `min_specificity`.
  thresholds=False: no floors and no regression rule (cross-data scoring).
  confidence_intervals: TFMA's Poisson bootstrap 95% intervals on every
  metric; blessing stays on the point estimates.
  """
  contract.check_task(task)
  gate = dict(thresholds=thresholds)
  if task == contract.BINARY:
    metrics = [
        tfma.MetricConfig(class_name="ExampleCount"),
        tfma.MetricConfig(class_name="BinaryAccuracy"),
        _metric("AUC", gates.min_auc, **gate),
        tfma.MetricConfig(class_name="AUC",
                          config='"curve": "PR", "name": "auc_pr"'),
        tfma.MetricConfig(class_name="BinaryCrossentropy",
                          config='"name": "loss"'),
        # At the 0.5 threshold: recall is sensitivity.
        tfma.MetricConfig(class_name="Precision"),
        tfma.MetricConfig(class_name="Recall"),
        tfma.MetricConfig(class_name="Specificity"),
        # The confusion matrix at 0.5, as four numbers every slice keeps.
        tfma.MetricConfig(class_name="TruePositives"),
        tfma.MetricConfig(class_name="FalsePositives"),
        tfma.MetricConfig(class_name="TrueNegatives"),
        tfma.MetricConfig(class_name="FalseNegatives"),
        tfma.MetricConfig(
            class_name="SpecificityAtSensitivity",
            config=f'"sensitivity": {SPECIFICITY_AT_SENSITIVITY}'),
        tfma.MetricConfig(
            class_name="SensitivityAtSpecificity",
            config=f'"specificity": {SENSITIVITY_AT_SPECIFICITY}'),
        tfma.MetricConfig(class_name="CalibrationPlot"),
    ]
    slice_features = SLICE_FEATURES + BINARY_SLICE_FEATURES
    model_spec = tfma.ModelSpec(signature_name=contract.TF_EXAMPLE,
                                label_key=contract.LABEL_KEY,
                                preprocessing_function_names=[])
  else:
    metrics = [
        tfma.MetricConfig(class_name="ExampleCount"),
        _metric("SparseCategoricalAccuracy", gates.min_accuracy, **gate),
        tfma.MetricConfig(class_name="SparseCategoricalCrossentropy",
                          config='"name": "loss"'),
        tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
    ]
    slice_features = SLICE_FEATURES
    # The decision is scored against the label in its own terms, which the
    # exported model's pneumonia_label signature gives TFMA: a 3-class
    # label cannot be a binary metric's.
    model_spec = tfma.ModelSpec(
        signature_name=contract.TF_EXAMPLE,
        label_keys={contract.OUTPUTS: contract.LABEL_KEY,
                    contract.PNEUMONIA_DECISION: contract.PNEUMONIA_LABEL},
        preprocessing_function_names=[contract.PNEUMONIA_LABEL_SIGNATURE])
  # The exported model answers a dict; each spec names the output it scores.
  metrics_specs = [tfma.MetricsSpec(metrics=metrics,
                                    output_names=[contract.OUTPUTS])]
  # The served pneumonia decision, at the model's operating point.
  metrics_specs.append(tfma.MetricsSpec(
      metrics=_at_threshold_metrics(task, gates, thresholds),
      output_names=[contract.PNEUMONIA_DECISION]))
  if task == contract.MULTICLASS:
    # One-vs-rest per class (normal, bacterial, viral); top_k 1 makes
    # precision and recall those of the arg-max prediction. Except on exact
    # ties (a collapsed model with equal outputs): TFMA's top_k takes the
    # last tied class (np.argpartition), serving's class_id and the per-label
    # slices the first (argmax), so such a model shows recall 1.0 here for a
    # class it never names. The report reads the per-label slices.
    metrics_specs.append(tfma.MetricsSpec(
        metrics=[tfma.MetricConfig(class_name="AUC"),
                 tfma.MetricConfig(class_name="Precision",
                                   config='"top_k": 1'),
                 tfma.MetricConfig(class_name="Recall", config='"top_k": 1')],
        binarize=tfma.BinarizationOptions(
            class_ids={"values": list(range(contract.class_count(task)))}),
        output_names=[contract.OUTPUTS]))
  return tfma.EvalConfig(
      options=evaluation_options(confidence_intervals),
      model_specs=[model_spec],
      slicing_specs=[tfma.SlicingSpec()] + [
          tfma.SlicingSpec(feature_keys=[feature])
          for feature in slice_features],
      metrics_specs=metrics_specs)
