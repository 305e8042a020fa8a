"""Temperature scaling: fitted on eval logits, saved in the output layer."""

import numpy as np
import pytest
import tensorflow as tf

from components import calibration
from components import models


def _overconfident(n=2000, classes=1, scale=6.0, seed=0):
  """Logits of a model right ~80% of the time but sure of every answer."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, max(classes, 2), n)
  right = rng.random(n) < 0.8
  said = np.where(right, labels, (labels + 1) % max(classes, 2))
  if classes == 1:
    logits = np.where(said == 1, scale, -scale)[:, None]
  else:
    logits = np.eye(classes)[said] * scale
  return logits + rng.normal(0, 0.5, logits.shape), labels


@pytest.mark.parametrize("classes", [1, 3])
def test_temperature_scaling_lowers_the_nll_of_an_overconfident_model(
    classes):
  logits, labels = _overconfident(classes=classes)
  t = calibration.fit_temperature(logits, labels)
  assert t > 1.5  # it softens
  before = calibration.measures(logits, labels, 1.0)
  after = calibration.measures(logits, labels, t)
  assert after["nll"] < before["nll"] - 0.1
  assert after["ece"] < before["ece"]
  assert after["brier"] < before["brier"]
  # The fit is the minimum: a little either side is worse.
  for other in (t * 0.8, t * 1.25):
    assert calibration.nll(logits, labels, other) > after["nll"]


def test_reliability_bins_count_every_example():
  logits, labels = _overconfident(n=500)
  bins = calibration.reliability(calibration.probabilities(logits), labels)
  assert sum(b["count"] for b in bins) == 500
  assert len(bins) == calibration.RELIABILITY_BINS


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_the_temperature_is_saved_in_the_output_layer(task):
  tf.keras.utils.set_random_seed(0)
  model = models.build_model("cnn", task, 58)
  images = np.random.default_rng(0).uniform(0, 255, (4, 58, 58, 3)).astype(
      np.float32)
  dataset = tf.data.Dataset.from_tensor_slices(
      (images, np.array([0, 1, 1, 0]))).batch(2)
  logits, labels = calibration.logits_and_labels(model, dataset)
  assert labels.tolist() == [0, 1, 1, 0]
  calibration.apply_temperature(model, 2.5)
  probs = model.predict(images, verbose=0)
  expected = calibration.probabilities(logits, 2.5)
  if task == "binary":
    expected = expected[:, 1:]
  np.testing.assert_allclose(probs, expected, rtol=1e-4, atol=1e-6)


def test_an_empty_eval_split_is_a_clear_error():
  with pytest.raises(ValueError, match="eval"):
    calibration.fit_temperature(np.zeros((0, 1)), np.zeros(0, np.int64))


def test_a_perfectly_separated_eval_split_has_no_temperature():
  labels = np.array([0, 1] * 10)
  logits = np.where(labels == 1, 4.0, -4.0)[:, None]
  with pytest.raises(calibration.NoTemperatureError, match="separated"):
    calibration.fit_temperature(logits, labels)
