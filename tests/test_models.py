"""The thesis CNN and the augmentation."""

import numpy as np
import pytest
import tensorflow as tf

from components import augment
from components import models


def test_thesis_cnn_parameter_count():
  # The thesis's from-scratch CNN at 224 px, binary head.
  assert models.build_model("cnn", "binary", 224).count_params() == 16_433_665
  # Dropout adds no parameters.
  assert models.build_model("cnn_aug", "binary",
                            224).count_params() == 16_433_665


@pytest.mark.parametrize("task,units", [("binary", 1), ("multiclass", 3)])
def test_heads_and_one_training_step(task, units):
  model = models.build_model("cnn_aug", task, 64)
  models.compile_model(model, task, 5e-4)
  images = np.random.default_rng(0).uniform(0, 255, (4, 64, 64, 3))
  labels = np.array([0, 1, 1, 0]) if units == 1 else np.array([0, 1, 2, 1])
  before = [w.copy() for w in model.get_weights()]
  model.fit(images.astype(np.float32), labels, epochs=1, verbose=0)
  out = model.predict(images.astype(np.float32), verbose=0)
  assert out.shape == (4, units)
  assert np.allclose(out.sum(axis=1), 1.0, atol=1e-5) or units == 1
  assert any(not np.array_equal(a, b)
             for a, b in zip(before, model.get_weights()))


def test_unknown_model_or_task():
  with pytest.raises(ValueError, match="model must be one of"):
    models.build_model("alexnet", "binary", 64)
  with pytest.raises(ValueError, match="task must be one of"):
    models.build_model("cnn", "ternary", 64)
  with pytest.raises(ValueError, match="at least 58 px"):
    models.build_model("cnn_aug", "binary", 57)


def test_augmentation_transforms_each_image_differently():
  tf.keras.utils.set_random_seed(1)
  # A bright square off-centre: any rotation, shift, zoom or flip moves it.
  image = np.zeros((64, 64, 3), np.float32)
  image[10:25, 12:30] = 255.0
  batch = tf.constant(np.stack([image] * 8))
  out = augment.augment_images(batch).numpy()
  assert out.shape == batch.shape and out.dtype == np.float32
  assert out.min() >= 0.0 and out.max() <= 255.0
  moved = [not np.allclose(o, image, atol=1.0) for o in out]
  assert all(moved)
  # Images differ from each other: per-image parameters, not one per batch.
  assert len({o.tobytes() for o in out}) == len(out)


def test_seeded_augmentation_depends_on_the_seed_only():
  images = tf.constant(np.random.default_rng(0).uniform(
      0, 255, (4, 32, 32, 3)).astype(np.float32))
  first = augment.augment_images(images, tf.constant([3, 4])).numpy()
  tf.random.uniform([7])  # moves the global generator: must not matter
  again = augment.augment_images(images, tf.constant([3, 4])).numpy()
  other = augment.augment_images(images, tf.constant([3, 5])).numpy()
  np.testing.assert_array_equal(first, again)
  assert not np.array_equal(first, other)


def test_gray_batches_are_resampled_once_with_the_same_pixels():
  rng = np.random.default_rng(2)
  gray = rng.uniform(0, 255, (4, 48, 40, 1)).astype(np.float32)
  colour = rng.uniform(0, 255, (4, 48, 40, 3)).astype(np.float32)
  seed = tf.constant([5, 6])
  transforms = augment.random_affine(4, 48, 40, seed)

  def whole(images):  # every channel resampled, as before the shortcut
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=[48, 40],
        fill_value=0.0, interpolation="BILINEAR", fill_mode="NEAREST")

  three = np.repeat(gray, 3, axis=-1)
  np.testing.assert_array_equal(augment.augment_images(three, seed),
                                whole(three))
  np.testing.assert_array_equal(augment.augment_images(colour, seed),
                                whole(colour))
  # One colour image among gray ones: the whole batch keeps its colours.
  mixed = np.concatenate([three[:3], colour[:1]])
  np.testing.assert_array_equal(augment.augment_images(mixed, seed),
                                whole(mixed))


def test_uint8_pixels_are_augmented_as_their_float_values():
  rng = np.random.default_rng(3)
  gray = rng.integers(0, 256, (4, 40, 48, 1), dtype=np.uint8)
  colour = rng.integers(0, 256, (4, 40, 48, 3), dtype=np.uint8)
  seed = tf.constant([8, 9])
  for images in (np.repeat(gray, 3, axis=-1), colour):
    out = augment.augment_images(tf.constant(images), seed)
    assert out.dtype == tf.float32
    np.testing.assert_array_equal(
        out, augment.augment_images(images.astype(np.float32), seed))


def test_augmentation_matrix_is_identity_at_zero_ranges(monkeypatch):
  for name in ("ROTATION_DEG", "SHIFT", "SHEAR_DEG", "ZOOM"):
    monkeypatch.setattr(augment, name, 0.0)
  transforms = augment.random_affine(16, 32, 32).numpy()
  a00, a01, a02, a10, a11, a12 = transforms[:, :6].T
  # Only the horizontal flip remains: x -> 31 - x.
  assert np.allclose(np.abs(a00), 1) and np.allclose(a11, 1)
  assert np.allclose(a01, 0) and np.allclose(a10, 0) and np.allclose(a12, 0)
  assert np.allclose(a02[a00 < 0], 31) and np.allclose(a02[a00 > 0], 0)


def test_training_progress_is_logged(caplog):
  from components import trainer  # pylint: disable=g-import-not-at-top
  model = models.build_model("cnn", "binary", 58)
  models.compile_model(model, "binary", 5e-4)
  data = tf.data.Dataset.from_tensor_slices(
      (np.zeros((8, 58, 58, 3), np.float32), np.zeros(8))).batch(2)
  progress = trainer._ProgressLog(epochs=2, batch_size=2, every_s=0.0)  # pylint: disable=protected-access
  with caplog.at_level("INFO"):
    model.fit(data, epochs=2, verbose=0, callbacks=[progress])
  lines = [r.getMessage() for r in caplog.records
           if r.getMessage().startswith("Training epoch")]
  assert lines[0].startswith("Training epoch 1/2, step 1,")
  # Once an epoch has been seen, steps per epoch and an ETA are known.
  assert "epoch 2/2, step 4/4" in lines[-1]
  assert "ETA 0.0 min (0 steps left)" in lines[-1]

  # A second phase (fine-tuning) counts only its own epochs as left.
  caplog.clear()
  phase2 = trainer._ProgressLog(epochs=4, batch_size=2, every_s=0.0,  # pylint: disable=protected-access
                                first_epoch=2)
  with caplog.at_level("INFO"):
    model.fit(data, initial_epoch=2, epochs=4, verbose=0, callbacks=[phase2])
  lines = [r.getMessage() for r in caplog.records
           if r.getMessage().startswith("Training epoch")]
  assert "epoch 4/4, step 4/4" in lines[-1]
  assert "(0 steps left)" in lines[-1]
