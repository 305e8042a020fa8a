"""TFMA evaluation config: metrics, slices and the blessing thresholds."""

from typing import Optional

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
# Kermany data); its size bucket. The binary model also gets the diagnosis,
# so its sensitivity on viral pneumonia shows on its own.
SLICE_FEATURES = (contract.LABEL_KEY, contract.SOURCE_KEY,
                  contract.CHANNELS_KEY, contract.SIZE_BUCKET_KEY)
BINARY_SLICE_FEATURES = (contract.DIAGNOSIS_KEY,)


def _metric(class_name: str, lower_bound: Optional[float],
            thresholds: bool = True) -> tfma.MetricConfig:
  """A metric gating blessing (floor and no regression) unless bound is None.

  A floor of 0 still gates: it keeps the no-regression rule, and the
  Evaluator blesses nothing when no metric has a threshold at all.
  """
  per_slice = []
  if thresholds and lower_bound is not None:
    per_slice = [_overall_threshold(lower_bound)]
  return tfma.MetricConfig(class_name=class_name,
                           per_slice_thresholds=per_slice)


def make_eval_config(task: str,
                     gates: settings.GateSettings = settings.GateSettings(),
                     thresholds: bool = True) -> tfma.EvalConfig:
  """Metrics overall and per slice; floors on the overall slice gate blessing.

  Binary: accuracy, loss, ROC AUC and PR AUC, precision, recall
  (sensitivity), specificity and the confusion matrix at 0.5, calibration.
  3-class: accuracy, loss, one-vs-rest AUC and per-class precision and recall
  (of the arg-max class), the confusion matrix. The gates' `min_auc` and
  `min_recall` apply to the binary task; the 3-class task is gated on
  accuracy. thresholds=False: no floors and no regression rule (cross-data
  scoring).
  """
  contract.check_task(task)
  gate = dict(thresholds=thresholds)
  if task == contract.BINARY:
    metrics = [
        tfma.MetricConfig(class_name="ExampleCount"),
        _metric("BinaryAccuracy", gates.min_accuracy, **gate),
        _metric("AUC", gates.min_auc, **gate),
        tfma.MetricConfig(class_name="AUC",
                          config='"curve": "PR", "name": "auc_pr"'),
        tfma.MetricConfig(class_name="BinaryCrossentropy",
                          config='"name": "loss"'),
        # At the 0.5 threshold: recall is sensitivity.
        tfma.MetricConfig(class_name="Precision"),
        # Gates only when asked for: at 0 it would add a no-regression rule.
        _metric("Recall", gates.min_recall or None, **gate),
        tfma.MetricConfig(class_name="Specificity"),
        # The confusion matrix at 0.5, as four numbers every slice keeps.
        tfma.MetricConfig(class_name="TruePositives"),
        tfma.MetricConfig(class_name="FalsePositives"),
        tfma.MetricConfig(class_name="TrueNegatives"),
        tfma.MetricConfig(class_name="FalseNegatives"),
        tfma.MetricConfig(class_name="CalibrationPlot"),
    ]
    slice_features = SLICE_FEATURES + BINARY_SLICE_FEATURES
  else:
    metrics = [
        tfma.MetricConfig(class_name="ExampleCount"),
        _metric("SparseCategoricalAccuracy", gates.min_accuracy, **gate),
        tfma.MetricConfig(class_name="SparseCategoricalCrossentropy",
                          config='"name": "loss"'),
        tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
    ]
    slice_features = SLICE_FEATURES
  metrics_specs = [tfma.MetricsSpec(metrics=metrics)]
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
            class_ids={"values": list(range(contract.class_count(task)))})))
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(signature_name=contract.TF_EXAMPLE,
                                  label_key=contract.LABEL_KEY,
                                  preprocessing_function_names=[])],
      slicing_specs=[tfma.SlicingSpec()] + [
          tfma.SlicingSpec(feature_keys=[feature])
          for feature in slice_features],
      metrics_specs=metrics_specs)
