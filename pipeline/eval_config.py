"""TFMA evaluation config: metrics, slices and the blessing thresholds."""

import tensorflow_model_analysis as tfma

from components import image_layouts
from serving import signatures

LABEL_KEY = "label"
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


def make_eval_config(task: str, min_accuracy: float,
                     min_auc: float) -> tfma.EvalConfig:
  """Overall and per-true-label metrics; accuracy (and AUC) gate blessing.

  `min_auc` applies to the binary task, whose AUC does not depend on a
  decision threshold; the 3-class task is gated on accuracy alone.
  """
  if task not in image_layouts.TASKS:
    raise ValueError(f"task must be one of {image_layouts.TASKS}")
  if task == "binary":
    metrics = [
        tfma.MetricConfig(class_name="ExampleCount"),
        tfma.MetricConfig(class_name="BinaryAccuracy",
                          per_slice_thresholds=[_overall_threshold(min_accuracy)]),
        tfma.MetricConfig(
            class_name="AUC",
            per_slice_thresholds=[_overall_threshold(min_auc)]),
        tfma.MetricConfig(class_name="BinaryCrossentropy",
                          config='"name": "loss"'),
        # At the 0.5 threshold: recall is sensitivity.
        tfma.MetricConfig(class_name="Precision"),
        tfma.MetricConfig(class_name="Recall"),
        tfma.MetricConfig(class_name="Specificity"),
    ]
  else:
    metrics = [
        tfma.MetricConfig(class_name="ExampleCount"),
        tfma.MetricConfig(class_name="SparseCategoricalAccuracy",
                          per_slice_thresholds=[_overall_threshold(min_accuracy)]),
        tfma.MetricConfig(class_name="SparseCategoricalCrossentropy",
                          config='"name": "loss"'),
        tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot"),
    ]
  metrics_specs = [tfma.MetricsSpec(metrics=metrics)]
  if task == "multiclass":
    # One-vs-rest AUC per class (normal, bacterial, viral).
    metrics_specs.append(tfma.MetricsSpec(
        metrics=[tfma.MetricConfig(class_name="AUC")],
        binarize=tfma.BinarizationOptions(
            class_ids={"values": list(range(3))})))
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(signature_name=signatures.TF_EXAMPLE,
                                  label_key=LABEL_KEY,
                                  preprocessing_function_names=[])],
      slicing_specs=[tfma.SlicingSpec(),
                     tfma.SlicingSpec(feature_keys=[LABEL_KEY])],
      metrics_specs=metrics_specs)
