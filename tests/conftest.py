"""Shared fixtures: real data from ../shared/data and small synthetic sets."""

import csv
import os
import shutil

import pytest

# Before any test module imports TensorFlow: schema/__init__.py selects
# Keras 2.
import schema  # noqa: F401  pylint: disable=unused-import

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")
REAL_BINARY = os.path.join(SHARED_DATA, "chest_xray")
REAL_MULTICLASS = os.path.join(SHARED_DATA, "chest_xray_multiclass")


def _need(path):
  if not os.path.isdir(path):
    pytest.fail(f"real test data missing: {path} (see README, 'Tests')")
  return path


def _first(names, pattern, k):
  return [n for n in sorted(names) if pattern in n][:k]


@pytest.fixture(scope="session")
def real_binary_subset(tmp_path_factory):
  """A fixed slice of the real Kaggle-binary-layout set, every kind in it."""
  src = _need(REAL_BINARY)
  dst = tmp_path_factory.mktemp("real_binary")
  for split, k in (("train", 8), ("test", 3)):
    for folder, patterns in (("NORMAL", ("IM-",)),
                             ("PNEUMONIA", ("_bacteria_", "_virus_"))):
      names = os.listdir(os.path.join(src, split, folder))
      os.makedirs(dst / split / folder)
      for pattern in patterns:
        for name in _first(names, pattern, k):
          shutil.copy(os.path.join(src, split, folder, name),
                      dst / split / folder / name)
  return str(dst)


@pytest.fixture(scope="session")
def real_multiclass_subset(tmp_path_factory):
  """A fixed slice of the real Kaggle-3-class-layout set (5 per class)."""
  src = _need(REAL_MULTICLASS)
  dst = tmp_path_factory.mktemp("real_multiclass")
  for split, k in (("train", 6), ("test", 3)):
    with open(os.path.join(src, f"labels_{split}.csv")) as f:
      rows = list(csv.DictReader(f))
    chosen = []
    for class_id in ("0", "1", "2"):
      chosen += [r for r in rows if r["class_id"] == class_id][:k]
    os.makedirs(dst / f"{split}_images")
    for row in chosen:
      shutil.copy(os.path.join(src, f"{split}_images", row["file_name"]),
                  dst / f"{split}_images" / row["file_name"])
    with open(dst / f"labels_{split}.csv", "w", newline="") as f:
      writer = csv.DictWriter(f, fieldnames=["file_name", "class_id"])
      writer.writeheader()
      writer.writerows(chosen)
  return str(dst)


@pytest.fixture(scope="session")
def synthetic_pipeline(tmp_path_factory):
  """One tiny BeamDagRunner run of the thesis CNN on synthetic X-rays, pushed.

  Shared by the evaluation, serving and report tests ("a model pushed by a
  tiny pipeline run"); the floors are 0 so the model is always pushed,
  and those tests judge what they need themselves. Without the Evaluator's
  confidence intervals, which would cost it several times its time:
  tests/test_confidence_intervals.py computes them with the Evaluator's
  metrics and shows them through the summary and the report.
  """
  # pylint: disable=g-import-not-at-top
  import glob
  from pipeline import runner
  from pipeline import synthetic
  from schema import layout
  from schema import settings
  root = tmp_path_factory.mktemp("synthetic_pipeline")
  data, out = str(root / "data"), str(root / "out")
  synthetic.generate(data, n=SYNTHETIC_PIPELINE["n"],
                     size=SYNTHETIC_PIPELINE["size"], seed=7)
  runner.run(data, "binary", out,
             settings.RunSettings(
                 models=(SYNTHETIC_PIPELINE["model"],),
                 confidence_intervals=SYNTHETIC_PIPELINE["intervals"]),
             # float32 wherever it runs: test_evaluation checks that the
             # served graph's eval scores give the Trainer's threshold to
             # 1e-6, which holds where both compute in float32 (in mixed
             # bfloat16 they agree only to bfloat16's precision).
             settings.TrainingSettings(
                 image_size=SYNTHETIC_PIPELINE["image_size"],
                 epochs=SYNTHETIC_PIPELINE["epochs"], batch_size=16, seed=7,
                 mixed_precision="float32"),
             settings.GateSettings(0.0, 0.0, 0.0))
  serving = layout.output_paths(out).serving
  model_name = layout.serving_model_name("binary",
                                         SYNTHETIC_PIPELINE["model"])
  pushed = glob.glob(os.path.join(serving, model_name, "*", "saved_model.pb"))
  assert len(pushed) == 1, f"the run pushed {pushed}"
  return {"data": data, "output": out, "serving": serving,
          "model": SYNTHETIC_PIPELINE["model"], "model_name": model_name,
          "pushed_model": os.path.dirname(pushed[0])}


# Small and quick: the tests on it check plumbing, not accuracy (whether
# Grad-CAM finds the lesions is bench/gradcam_lesions.py's question).
# cnn learns this set in a dozen epochs (tests/test_pipeline_e2e.py); cnn_aug
# needs about 40.
SYNTHETIC_PIPELINE = {"model": "cnn", "n": 300, "size": 96, "image_size": 64,
                      "epochs": 12, "intervals": False}


@pytest.fixture(scope="session")
def exported_test_models(tmp_path_factory):
  """An untrained thesis CNN of each task exported as the Trainer exports
  it, version 1 under one serving folder: built once for every serving
  test module, which only read it."""
  from tests import test_server  # pylint: disable=g-import-not-at-top
  base = str(tmp_path_factory.mktemp("serving"))
  test_server.export_test_model(base, test_server.BINARY, 1)
  test_server.export_test_model(base, test_server.MULTICLASS, 1,
                                task="multiclass")
  return base
