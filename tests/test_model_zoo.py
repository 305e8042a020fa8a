"""The thesis's transfer models: sizes, flat graphs, weight loading."""

import urllib.error

import numpy as np
import pytest
import tensorflow as tf
from tf_keras.src.utils import data_utils

from components import models


@pytest.mark.parametrize("name,total", [
    ("vgg16", 21_137_729),
    ("mobilenet_v2", 18_314_817),
])
def test_parameter_counts_at_224_binary(name, total):
  counts = models.parameter_counts(models.build_model(name, "binary", 224))
  assert counts["total"] == total
  # Frozen base: only Dense 256 and the head train.
  assert counts["trainable"] < counts["total"]


@pytest.mark.parametrize("name", list(models.TRANSFER_BASES))
@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_transfer_model_is_flat_and_trains_a_step(name, task):
  model = models.build_model(name, task, 64)
  # One flat graph: the base's conv layers are the model's own layers.
  assert not any(isinstance(layer, tf.keras.Model) for layer in model.layers)
  assert any(isinstance(layer, tf.keras.layers.Conv2D)
             for layer in model.layers)
  frozen = [w.numpy().copy() for w in model.non_trainable_weights[:3]]
  models.compile_model(model, task, 5e-4)
  images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3))
  model.fit(images.astype(np.float32), np.array([0, 1]), epochs=1, verbose=0)
  assert model.predict(images, verbose=0).shape == (
      2, models.head_units(task))
  for before, after in zip(frozen, model.non_trainable_weights[:3]):
    assert np.array_equal(before, after.numpy())


@pytest.fixture
def offline(monkeypatch, tmp_path):
  """No network and an empty Keras cache, whatever the machine has."""
  def refuse(*args, **kwargs):
    raise urllib.error.URLError("network is off in this test")
  monkeypatch.setattr(data_utils, "urlretrieve", refuse)
  monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
  return tmp_path / "keras"


def test_imagenet_offline_names_the_file_to_provide(offline):
  with pytest.raises(models.WeightsUnavailableError) as raised:
    models.build_model("mobilenet_v2", "binary", 96, weights="imagenet")
  expected = offline / "models" / (
      "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5")
  assert str(expected) in str(raised.value)


def _save_base_weights(path, size):
  base = tf.keras.applications.MobileNetV2(
      include_top=False, weights=None, input_shape=(size, size, 3))
  base.save_weights(str(path))
  return base.get_weights()


def test_imagenet_from_keras_cache_without_network(offline):
  path = offline / "models" / (
      "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5")
  path.parent.mkdir(parents=True)
  saved = _save_base_weights(path, 96)
  model = models.build_model("mobilenet_v2", "binary", 96, weights="imagenet")
  assert np.array_equal(model.get_layer("Conv1").get_weights()[0], saved[0])


def test_weights_from_a_file(tmp_path):
  path = tmp_path / "base.h5"
  saved = _save_base_weights(path, 64)
  model = models.build_model("mobilenet_v2", "binary", 64, weights=str(path))
  assert np.array_equal(model.get_layer("Conv1").get_weights()[0], saved[0])
  with pytest.raises(FileNotFoundError, match="weights file not found"):
    models.build_model("mobilenet_v2", "binary", 64,
                       weights=str(tmp_path / "missing.h5"))


@pytest.mark.parametrize("name", list(models.TRANSFER_BASES))
def test_fine_tune_unfreezes_exactly_n_layers(name):
  model = models.build_model(name, "binary", 64)
  assert not any(layer.trainable for layer in models.base_layers(model))
  before = len(model.trainable_weights)
  names = models.unfreeze_top(model, 3)
  trainable = [layer.name for layer in models.base_layers(model)
               if layer.trainable]
  assert trainable == names and len(names) == 3
  assert len(model.trainable_weights) > before
  with pytest.raises(ValueError, match="fine-tune layers must be"):
    models.unfreeze_top(model, 10_000)


def test_from_scratch_models_have_no_base_to_fine_tune():
  with pytest.raises(ValueError, match="no pretrained base"):
    models.unfreeze_top(models.build_model("cnn", "binary", 64), 1)
