"""The whole pipeline on a tiny synthetic set, on the BeamDagRunner."""

import dataclasses
import glob
import json
import os
import tempfile

import numpy as np
from PIL import Image
import tensorflow as tf

from components import models
from pipeline import eval_config
from pipeline import runner
from pipeline import summary
from pipeline import synthetic
from schema import contract
from schema import layout
from schema import settings

RUN = settings.RunSettings(models=("cnn",), confidence_intervals=False)
TRAINING = settings.TrainingSettings(image_size=64, epochs=12, batch_size=16,
                                     seed=1)
GATES = settings.GateSettings(min_accuracy=0.8, min_auc=0.9, min_recall=0.0)


def test_pipeline_blesses_pushes_and_serves(tmp_path, monkeypatch):
  data, held_back = str(tmp_path / "data"), str(tmp_path / "held_back")
  synthetic.generate(data, n=300, size=96, seed=11)
  # Images the pipeline never sees: other patients, another seed.
  synthetic.generate(held_back, n=80, size=96, seed=12345)
  out = str(tmp_path / "out")
  # The run's own temporary files (TFX's sdists were some) are removed:
  # nothing is left in the temporary folder (a private one here, which no
  # other process writes to).
  system_tmp = tmp_path / "system_tmp"
  system_tmp.mkdir()
  monkeypatch.setattr(tempfile, "tempdir", str(system_tmp))

  runner.run(data, "binary", out, RUN, TRAINING, GATES)
  assert not os.listdir(system_tmp)
  paths = layout.output_paths(out)
  result = summary.summarize(paths.metadata,
                             layout.pipeline_name("binary"))
  assert set(result.states.values()) == {"COMPLETE"}, result.states
  assert list(result.models) == ["cnn"]
  cnn = result.models["cnn"]
  assert result.image_counts["ingested"] == 300
  # The thesis CNN trains in bfloat16 where this CPU computes it natively,
  # and the Trainer, run in this process, puts Keras's policy back.
  assert tf.keras.mixed_precision.global_policy().name == "float32"
  assert ("    trained on CPU, compute " + (
      "mixed bfloat16" if models.native_bfloat16() else "float32")
          ) in cnn.lines()
  assert result.image_counts["quarantined"] == 0
  # What the images look like, per split, for cxr skew.
  for split in contract.SPLITS:
    assert summary.image_statistics(out, split).datasets[0].num_examples == (
        result.image_counts[split])
  overall = cnn.metrics["Overall"]
  assert overall["example_count"] == result.image_counts["test"]
  assert overall["binary_accuracy"] >= GATES.min_accuracy
  assert overall["auc"] >= GATES.min_auc
  assert 0.0 < overall["loss"] < float("inf")
  # Sensitivity and specificity are the accuracies of the label slices.
  assert {"label:0", "label:1"} <= set(cnn.metrics)
  assert abs(overall["recall"] - cnn.metrics["label:1"][
      "binary_accuracy"]) < 1e-4
  assert abs(overall["specificity"] - cnn.metrics["label:0"][
      "binary_accuracy"]) < 1e-4
  assert 0.0 <= overall["precision"] <= 1.0
  assert cnn.blessed is True and cnn.failed_thresholds == [], (
      cnn.failed_thresholds, cnn.operating_point, overall)

  # The Trainer kept its history: one value per epoch for each metric.
  histories = glob.glob(os.path.join(paths.pipeline_root, "Trainer_cnn",
                                     "model_run", "*", "history.json"))
  assert len(histories) == 1
  with open(histories[0]) as f:
    history = json.load(f)
  for key in ("loss", "accuracy", "val_loss", "val_accuracy", "seconds"):
    assert len(history[key]) == TRAINING.epochs, key
  best = min(range(TRAINING.epochs), key=lambda i: history["val_loss"][i])
  assert history["exported_epoch"] == best + 1
  with Image.open(os.path.join(os.path.dirname(histories[0]),
                               "curves.png")) as curves:
    assert curves.format == "PNG" and curves.size == (1000, 400)
    assert np.asarray(curves.convert("L")).std() > 5  # not a blank canvas

  # Pushed where TF Serving looks: <base>/<model name>/<numeric version>/.
  model_dir = os.path.join(paths.serving,
                           layout.serving_model_name("binary", "cnn"))
  assert cnn.pushed_model and cnn.pushed_model.startswith(model_dir)
  versions = os.listdir(model_dir)
  assert len(versions) == 1 and versions[0].isdigit()
  loaded = tf.saved_model.load(os.path.join(model_dir, versions[0]))
  assert {contract.SERVING_DEFAULT, contract.TF_EXAMPLE} <= set(
      loaded.signatures)

  # As many normal as pneumonia images, so a model that calls one class
  # for everything fails.
  by_class = [sorted(glob.glob(os.path.join(held_back, "*", folder,
                                            "*.jpeg")))
              for folder in ("NORMAL", "PNEUMONIA")]
  per_class = min(len(f) for f in by_class)
  assert per_class >= 8, [len(f) for f in by_class]
  files = by_class[0][:per_class] + by_class[1][:per_class]
  truth = np.array([0] * per_class + [1] * per_class)
  encoded = []
  for f in files:
    with open(f, "rb") as fh:
      encoded.append(fh.read())
  outputs = loaded.signatures[contract.SERVING_DEFAULT](
      images=tf.constant(encoded))
  probabilities = outputs["probabilities"].numpy()
  assert probabilities.shape == (len(files), 2)
  assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
  predicted = outputs["class_id"].numpy()
  names = [n.decode() for n in outputs["class_name"].numpy()]
  assert names == [("normal", "pneumonia")[i] for i in predicted]
  recalls = [(predicted[truth == c] == c).mean() for c in (0, 1)]
  assert min(recalls) >= 0.5 and np.mean(recalls) >= 0.75, (recalls,
                                                             predicted)

  # The tf.Example signature (TFMA, InfraValidator) agrees with it.
  examples = [tf.train.Example(features=tf.train.Features(feature={
      "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[e]))
  })).SerializeToString() for e in encoded]
  via_examples = loaded.signatures[contract.TF_EXAMPLE](
      examples=tf.constant(examples))["outputs"].numpy()
  assert np.allclose(via_examples[:, 0], probabilities[:, 1], atol=1e-5)

  # A second run with unchanged data and code is served from the cache up
  # to the Trainer; the Evaluator runs again because it now has a baseline
  # (the blessed model of the first run).
  runner.run(data, "binary", out, RUN, TRAINING, GATES)
  rerun = summary.summarize(paths.metadata,
                            layout.pipeline_name("binary"))
  assert rerun.run_id != result.run_id
  assert {n for n, s in rerun.states.items() if s == "CACHED"} >= {
      "ImageExampleGen", "ImportSchemaGen", "StatisticsGen",
      "ImageStatisticsGen", "ExampleValidator", "DataValidationGate", "Transform", "Trainer_cnn"}
  assert rerun.states["Evaluator_cnn"] == "COMPLETE"
  assert rerun.models["cnn"].blessed
  # The same model is not pushed again: the run records the version that
  # already serves it.
  assert os.listdir(model_dir) == versions
  assert rerun.models["cnn"].pushed_model == cnn.pushed_model
  pushed_versions = set(os.listdir(model_dir))

  # A floor no model can reach: not blessed, not pushed, and the summary
  # says which metric missed which threshold.
  strict = dataclasses.replace(GATES, min_accuracy=1.01)
  runner.run(data, "binary", out, RUN, TRAINING, strict)
  refused = summary.summarize(paths.metadata,
                              layout.pipeline_name("binary")).models["cnn"]
  assert refused.blessed is False and refused.pushed_model is None
  assert any(f"{eval_config.ACCURACY_AT_THRESHOLD} on Overall" in f
             and "1.01" in f for f in refused.failed_thresholds), (
                 refused.failed_thresholds)
  assert set(os.listdir(model_dir)) == pushed_versions
