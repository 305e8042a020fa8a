"""TFMA metrics and slices in the pipeline, and cross-data-set evaluation."""

import csv
import glob
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma

from components import operating_point
from pipeline import eval_config
from pipeline import runner
from pipeline import summary
from schema import contract
from schema import layout
from schema import settings

BINARY_METRICS = {"example_count", "binary_accuracy", "auc", "auc_pr", "loss",
                  "precision", "recall", "specificity", "true_positives",
                  "false_positives", "true_negatives", "false_negatives"}


def test_binary_evaluator_holds_every_metric_slice_and_plot(
    synthetic_pipeline):
  result = summary.summarize(
      os.path.join(synthetic_pipeline["output"], "metadata.sqlite"),
      layout.pipeline_name("binary"))
  model = result.models[synthetic_pipeline["model"]]
  metrics = model.metrics
  assert BINARY_METRICS <= set(metrics["Overall"]), metrics["Overall"]
  overall = metrics["Overall"]
  # The four cells of the confusion matrix add up to the test split.
  cells = sum(overall[k] for k in ("true_positives", "false_positives",
                                   "true_negatives", "false_negatives"))
  assert cells == overall["example_count"] == result.image_counts["test"]
  # Synthetic images are grayscale JPEGs under 1000 px from one data set,
  # without a DICOM header.
  expected = {"label:0", "label:1", "source:data", "channels:1",
              "size_bucket:<1000px", "view_position:unknown",
              "bits_stored:8", "diagnosis:normal",
              "diagnosis:bacterial", "diagnosis:viral"}
  assert expected <= set(metrics), sorted(metrics)
  per_kind = sum(metrics[f"diagnosis:{k}"]["example_count"]
                 for k in ("normal", "bacterial", "viral"))
  assert per_kind == overall["example_count"]
  # Viral sensitivity on its own: every viral image is a pneumonia image.
  viral = metrics["diagnosis:viral"]
  assert viral["false_positives"] == viral["true_negatives"] == 0
  plots = tfma.load_eval_result(model.evaluation_uri).plots
  overall_plots = next(p for key, p in plots if not key)
  plot_names = {name for by_key in overall_plots.values()
                for by_sub in by_key.values() for name in by_sub}
  assert "calibrationHistogramBuckets" in plot_names, plot_names


def test_multiclass_config_has_per_class_precision_recall_and_matrix():
  config = eval_config.make_eval_config(
      "multiclass", settings.GateSettings(min_accuracy=0.7))
  names = {m.class_name for spec in config.metrics_specs
           for m in spec.metrics}
  assert {"SparseCategoricalAccuracy", "MultiClassConfusionMatrixPlot",
          "Precision", "Recall", "AUC"} <= names
  per_class = next(s for s in config.metrics_specs if s.HasField("binarize"))
  assert list(per_class.binarize.class_ids.values) == [0, 1, 2]
  slices = {tuple(s.feature_keys) for s in config.slicing_specs}
  assert slices == {(), ("label",), ("source",), ("channels",),
                    ("size_bucket",), ("modality",), ("view_position",),
                    ("bits_stored",), ("photometric",), ("manufacturer",)}


def test_cross_data_config_gates_nothing():
  for task in ("binary", "multiclass"):
    config = eval_config.make_eval_config(
        task, settings.GateSettings(0.9, 0.9, 0.9), thresholds=False)
    assert not any(m.per_slice_thresholds or m.HasField("threshold")
                   for spec in config.metrics_specs for m in spec.metrics)


def _csv_test_counts(data):
  with open(os.path.join(data, "labels_test.csv")) as f:
    ids = [int(row["class_id"]) for row in csv.DictReader(f)]
  return {c: ids.count(c) for c in range(3)}


def _binary_test_counts(data):
  folder = os.path.join(data, "test", "PNEUMONIA")
  names = os.listdir(folder)
  return {"normal": len(os.listdir(os.path.join(data, "test", "NORMAL"))),
          "bacterial": sum("_bacteria_" in n for n in names),
          "viral": sum("_virus_" in n for n in names)}


# Intervals are tests/test_confidence_intervals.py's to show; these runs
# skip them.
CROSS_RUN = settings.RunSettings(models=("cnn",), confidence_intervals=False)
CROSS_TRAINING = settings.TrainingSettings(image_size=58, epochs=1,
                                           batch_size=8)
CROSS_GATES = settings.GateSettings(0.0, 0.0, 0.0)


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_cross_data_evaluation_maps_the_labels(task, real_binary_subset,
                                               real_multiclass_subset,
                                               tmp_path):
  """Binary model on 3-class data and 3-class model on binary-layout data."""
  if task == "binary":
    data, cross = real_binary_subset, real_multiclass_subset
    source = _csv_test_counts(cross)
    # 0 -> normal; 1 (bacterial) and 2 (viral) -> pneumonia.
    expected = {0: source[0], 1: source[1] + source[2]}
  else:
    data, cross = real_multiclass_subset, real_binary_subset
    source = _binary_test_counts(cross)
    # Kermany file names give the kind of pneumonia.
    expected = {0: source["normal"], 1: source["bacterial"],
                2: source["viral"]}
  out = str(tmp_path / "out")
  runner.run(data, task, out, CROSS_RUN, CROSS_TRAINING, CROSS_GATES,
             cross_data=cross)
  result = summary.summarize(layout.output_paths(out).metadata,
                             layout.pipeline_name(task))
  assert set(result.states.values()) == {"COMPLETE"}, result.states
  assert layout.node_id(layout.CROSS_EVALUATOR, "cnn") in (
      result.states)
  cross_metrics = result.models["cnn"].cross_metrics
  counts = {label: cross_metrics[f"label:{label}"]["example_count"]
            for label in expected}
  assert counts == expected, (counts, expected)
  assert cross_metrics["Overall"]["example_count"] == sum(expected.values())
  assert result.cross_image_counts["test"] == sum(expected.values())
  # The cross data set is named in its own source slice, apart from the
  # own data set's.
  assert f"source:{os.path.basename(cross)}" in cross_metrics
  assert f"source:{os.path.basename(data)}" in result.models["cnn"].metrics
  # Either task's served decision is scored against pneumonia of any
  # kind: its true positives and false negatives are the pneumonias.
  pneumonias = sum(n for label, n in expected.items()
                   if label != contract.NORMAL_CLASS)
  for metrics in (result.models["cnn"].metrics, cross_metrics):
    overall = metrics["Overall"]
    found = {k: overall[k + eval_config.AT_THRESHOLD] for k in (
        "true_positives", "false_negatives", "true_negatives",
        "false_positives")}
    assert sum(found.values()) == overall["example_count"], found
    if metrics is cross_metrics:
      assert found["true_positives"] + found["false_negatives"] == (
          pneumonias), (found, expected)
    normal = metrics[f"label:{contract.NORMAL_CLASS}"]
    assert normal["true_positives" + eval_config.AT_THRESHOLD] == 0
    assert normal["false_negatives" + eval_config.AT_THRESHOLD] == 0


def _split_scores(examples_uri, split, loaded):
  """(P(pneumonia) of the loaded exported model, labels) over one ingested
  split."""
  files = glob.glob(os.path.join(examples_uri, f"Split-{split}", "*"))
  records = list(tf.data.TFRecordDataset(files, compression_type="GZIP")
                 .as_numpy_iterator())
  labels = [tf.train.Example.FromString(r).features.feature[
      contract.LABEL_KEY].int64_list.value[0] for r in records]
  scored = loaded.signatures[contract.TF_EXAMPLE](
      examples=tf.constant(records))
  return scored[contract.OUTPUTS].numpy()[:, 0], np.array(labels)


def test_the_threshold_is_chosen_on_the_eval_split_only(synthetic_pipeline):
  metadata = os.path.join(synthetic_pipeline["output"], "metadata.sqlite")
  result = summary.summarize(metadata, layout.pipeline_name("binary"))
  model = result.models[synthetic_pipeline["model"]]
  op = model.operating_point
  assert op["rule"] == settings.TrainingSettings().operating_point
  examples = summary.evaluated_examples_uri(metadata, model.evaluation_uri)
  loaded = tf.saved_model.load(synthetic_pipeline["pushed_model"])
  chosen = {}
  for split in (contract.EVAL, contract.TEST):
    scores, labels = _split_scores(examples, split, loaded)
    chosen[split] = operating_point.choose_threshold(
        scores, operating_point.is_pneumonia(labels),
        settings.parse_operating_point(op["rule"]))
  # What the eval split gives, and not what the test split would have.
  assert op["threshold"] == pytest.approx(chosen[contract.EVAL], abs=1e-6)
  assert chosen[contract.TEST] != pytest.approx(op["threshold"], abs=1e-6)
  # The served model carries it.
  served = loaded.signatures[contract.SERVING_DEFAULT](
      images=tf.constant([open(glob.glob(
          os.path.join(synthetic_pipeline["data"], "**", "*.jpeg"),
          recursive=True)[0], "rb").read()]))
  assert served[contract.THRESHOLD].numpy()[0] == pytest.approx(
      op["threshold"])


def test_operating_point_metrics_in_the_summary(synthetic_pipeline):
  """Their intervals: tests/test_confidence_intervals.py (the fixture's run
  skips them)."""
  metadata = os.path.join(synthetic_pipeline["output"], "metadata.sqlite")
  result = summary.summarize(metadata, layout.pipeline_name("binary"))
  model = result.models[synthetic_pipeline["model"]]
  overall = model.metrics["Overall"]
  at = [eval_config.ACCURACY_AT_THRESHOLD, eval_config.RECALL_AT_THRESHOLD,
        eval_config.SPECIFICITY_AT_THRESHOLD, "specificity_at_sensitivity",
        "sensitivity_at_specificity"]
  assert set(at) <= set(overall), sorted(overall)
  # The served decision's confusion counts add up to the test split.
  cells = sum(overall[k + eval_config.AT_THRESHOLD] for k in (
      "true_positives", "false_positives", "true_negatives",
      "false_negatives"))
  assert cells == overall["example_count"]
  lines = "\n".join(result.lines())
  assert "operating point: sensitivity=0.95 on the eval split" in lines
  low, high = model.operating_point["threshold_range"]
  assert low <= model.operating_point["threshold"] <= high
  assert "over eval resamples]" in lines
  for name in at + ["auc"]:
    assert f"{name} {overall[name]:.4f}" in lines, name
  assert model.calibration["after"]["nll"] <= (
      model.calibration["before"]["nll"] + 1e-9)
