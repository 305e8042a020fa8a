"""The zoo beyond the thesis CNN: the transfer models (sizes, flat graphs,
weight loading), resnet_small, and each model's training recipe."""

import urllib.error

import numpy as np
import pytest
import tensorflow as tf
from tf_keras.src.utils import data_utils

from components import models
from schema import settings
from serving.export import gradcam


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


# resnet_small as the issue states it: a 5x5 stride-2 stem of 32 filters,
# then basic blocks of these filters, stride 2 from the second block.
_STEM, _BLOCKS = 32, (32, 64, 128, 256, 256)


def _resnet_small_parameters(classes_out: int) -> int:
  """Its parameter count, derived from that description: bias-free convs,
  4 batch-norm values per conv channel, a 1x1 projection where a block
  changes shape (every block but the first), the head on 256 pooled
  features."""
  convs = [(5, 3, _STEM)]
  inputs = _STEM
  for i, filters in enumerate(_BLOCKS):
    convs += [(3, inputs, filters), (3, filters, filters)]
    if i > 0:
      convs.append((1, inputs, filters))
    inputs = filters
  weights = sum(k * k * cin * cout for k, cin, cout in convs)
  batch_norm = 4 * sum(cout for _, _, cout in convs)
  return weights + batch_norm + (inputs + 1) * classes_out


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_resnet_small_has_the_stated_size(task):
  model = models.build_model("resnet_small", task, 64)
  expected = _resnet_small_parameters(models.head_units(task))
  assert model.count_params() == expected
  # The "2.5M parameters".
  assert 2.4e6 < expected < 2.6e6
  # Global pooling: the count does not depend on the input size.
  assert models.build_model("resnet_small", task, 128).count_params() == (
      expected)


@pytest.mark.parametrize("size", [models.MIN_IMAGE_SIZE["resnet_small"], 128])
def test_resnet_small_builds_and_grad_cam_finds_its_last_block(size):
  model = models.build_model("resnet_small", "binary", size)
  assert model.output_shape == (None, 1)
  assert gradcam.find_target_layer(model) == "block5_out"
  # Five stride-2 stages ('same' padding): size / 32, rounded up.
  assert model.get_layer("block5_out").output.shape[1:] == (
      -(-size // 32), -(-size // 32), 256)
  gradcam.gradcam_model(model)  # refuses a model without a Dense head
  if size == models.MIN_IMAGE_SIZE["resnet_small"]:
    with pytest.raises(ValueError, match="at least"):
      models.build_model("resnet_small", "binary", size - 1)


def test_resnet_small_in_bfloat16_keeps_a_float32_head():
  tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    model = models.build_model("resnet_small", "multiclass", 32)
  finally:
    tf.keras.mixed_precision.set_global_policy("float32")
  assert model.get_layer("block3_1_conv").compute_dtype == "bfloat16"
  assert model.get_layer("predictions").compute_dtype == "float32"
  out = model.predict(np.zeros((2, 32, 32, 3), np.float32), verbose=0)
  assert out.dtype == np.float32
  assert np.allclose(out.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("task", ["binary", "multiclass"])
def test_resnet_small_trains_a_step_with_its_recipe(task):
  recipe = models.training_recipe("resnet_small", settings.TrainingSettings())
  model = models.build_model("resnet_small", task, 32)
  models.compile_model(model, task, recipe.learning_rate,
                       optimizer=recipe.optimizer,
                       label_smoothing=recipe.label_smoothing)
  images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3))
  labels = np.array([0, 1, 1, 0]) if task == "binary" else np.array(
      [0, 1, 2, 1])
  before = [w.copy() for w in model.get_weights()]
  model.fit(images.astype(np.float32), labels, batch_size=4, epochs=1,
            verbose=0)
  assert model.predict(images, verbose=0).shape == (
      4, models.head_units(task))
  assert any(not np.array_equal(a, b)
             for a, b in zip(before, model.get_weights()))


# --- recipes -------------------------------------------------------------


def _compiled(name, task="binary", **given):
  recipe = models.training_recipe(name, settings.TrainingSettings(**given),
                                  native_bf16=False)
  model = models.build_model(name, task, 32 if name == "resnet_small" else 58)
  models.compile_model(model, task, recipe.learning_rate,
                       optimizer=recipe.optimizer,
                       label_smoothing=recipe.label_smoothing)
  return recipe, model


@pytest.mark.parametrize("name", ["cnn", "cnn_aug", "vgg16"])
def test_the_thesis_models_keep_rmsprop_at_a_constant_5e4(name):
  recipe, model = _compiled(name)
  assert isinstance(model.optimizer, tf.keras.optimizers.RMSprop)
  assert float(model.optimizer.learning_rate) == pytest.approx(5e-4)
  assert recipe.label_smoothing == 0 and recipe.mixed_precision == "float32"
  assert models.learning_rate_callback(recipe, 30) is None
  assert [recipe.learning_rate_at(e, 30) for e in (0, 15, 29)] == [5e-4] * 3


def test_resnet_small_takes_adam_with_warm_up_and_cosine_decay():
  recipe, model = _compiled("resnet_small")
  assert isinstance(model.optimizer, tf.keras.optimizers.Adam)
  assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)
  assert recipe.lr_schedule == "cosine" and recipe.warmup_epochs == 2
  rates = [recipe.learning_rate_at(e, 20) for e in range(20)]
  # Warm-up 1/3, 2/3 of the rate, the full rate at epoch 2, half of it
  # half-way through the cosine (epoch 2 + 18 / 2), near 0 at the end.
  assert rates[:3] == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3])
  assert rates[11] == pytest.approx(5e-4)
  assert 0 < rates[-1] < 1e-5
  assert all(a > b for a, b in zip(rates[2:], rates[3:]))


def test_label_smoothing_reaches_the_loss():
  s = 0.05
  # Binary: the target 1 becomes 1 - s / 2.
  _, thesis = _compiled("cnn")
  _, smoothed = _compiled("resnet_small")
  y, p = tf.constant([[1.0]]), tf.constant([[0.9]])
  t = 1 - s / 2
  assert float(thesis.loss(y, p)) == pytest.approx(-np.log(0.9), rel=1e-4)
  assert float(smoothed.loss(y, p)) == pytest.approx(
      -(t * np.log(0.9) + (1 - t) * np.log(0.1)), rel=1e-4)
  # 3 classes, sparse labels: the one-hot 2 becomes (1 - s) e_2 + s / 3.
  _, thesis = _compiled("cnn", "multiclass")
  _, smoothed = _compiled("resnet_small", "multiclass")
  y, p = tf.constant([2]), tf.constant([[0.2, 0.3, 0.5]])
  target = (1 - s) * np.eye(3)[2] + s / 3
  assert float(thesis.loss(y, p)) == pytest.approx(-np.log(0.5), rel=1e-4)
  assert float(smoothed.loss(y, p)) == pytest.approx(
      -(target * np.log([0.2, 0.3, 0.5])).sum(), rel=1e-4)


def test_the_users_settings_win_over_the_recipe():
  recipe, model = _compiled(
      "resnet_small", optimizer="rmsprop", learning_rate=2e-4,
      lr_schedule="constant", warmup_epochs=0, label_smoothing=0.0,
      mixed_precision="float16")
  assert isinstance(model.optimizer, tf.keras.optimizers.RMSprop)
  assert float(model.optimizer.learning_rate) == pytest.approx(2e-4)
  assert recipe == models.Recipe("rmsprop", 2e-4, "constant", 0, 0.0,
                                 "float16")
  recipe, model = _compiled("cnn_aug", optimizer="adam", lr_schedule="cosine",
                            warmup_epochs=1, label_smoothing=0.1)
  assert isinstance(model.optimizer, tf.keras.optimizers.Adam)
  assert recipe.learning_rate_at(0, 10) == pytest.approx(5e-4 / 2)
  assert recipe.label_smoothing == 0.1


@pytest.mark.parametrize("name", ["resnet_small", "cnn", "cnn_aug"])
def test_from_scratch_models_take_bfloat16_only_where_it_is_native(name):
  default = settings.TrainingSettings()
  assert models.training_recipe(name, default,
                                native_bf16=True).mixed_precision == "bfloat16"
  assert models.training_recipe(name, default,
                                native_bf16=False).mixed_precision == "float32"
  # The transfer models were not measured in bfloat16.
  assert models.training_recipe("vgg16", default,
                                native_bf16=True).mixed_precision == "float32"
  assert models.training_recipe(
      "resnet_small", settings.TrainingSettings(mixed_precision="float32"),
      native_bf16=True).mixed_precision == "float32"
