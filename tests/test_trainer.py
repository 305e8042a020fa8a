"""Trainer pieces: class weights, training phases, mixed precision, the
repeatable augmented input."""

import numpy as np
import pytest
import tensorflow as tf

from components import models
from components import trainer
from schema import contract
from schema import settings


def test_balanced_class_weights(tmp_path):
  path = str(tmp_path / "labels.gz")
  with tf.io.TFRecordWriter(path, options="GZIP") as writer:
    for label in [0] * 10 + [1] * 30:
      writer.write(tf.train.Example(features=tf.train.Features(feature={
          "label": tf.train.Feature(int64_list=tf.train.Int64List(
              value=[label]))})).SerializeToString())
  weights = trainer.balanced_class_weights([str(tmp_path / "*.gz")], 2)
  assert weights == pytest.approx({0: 2.0, 1: 40 / 60})
  with pytest.raises(ValueError, match="every class"):
    trainer.balanced_class_weights([str(tmp_path / "*.gz")], 3)


def _data(n=8, size=64):
  rng = np.random.default_rng(0)
  images = rng.uniform(0, 255, (n, size, size, 3)).astype(np.float32)
  return tf.data.Dataset.from_tensor_slices(
      (images, np.arange(n) % 2)).batch(4)


def test_frozen_then_fine_tune_phases(tmp_path):
  config = settings.TrainingSettings(batch_size=4)
  model = models.build_model("vgg16", "binary", 64)
  models.compile_model(model, "binary", 5e-4)
  history, exported = trainer._train_phase(  # pylint: disable=protected-access
      model, _data(), _data(), 0, 2, config, str(tmp_path), None)
  assert len(history["loss"]) == 2 and 1 <= exported <= 2
  frozen_top = models.base_layers(model)[-1]
  kernel = frozen_top.weights[0].numpy().copy()
  models.unfreeze_top(model, 2)
  models.compile_model(model, "binary", 5e-5)
  history, exported = trainer._train_phase(  # pylint: disable=protected-access
      model, _data(), _data(), 2, 2, config, str(tmp_path), {0: 1.0, 1: 2.0})
  assert len(history["loss"]) == 2 and 3 <= exported <= 4
  # The second phase trained the layer the first phase kept frozen.
  assert not np.array_equal(kernel, frozen_top.weights[0].numpy())


@pytest.mark.parametrize("policy", ["mixed_bfloat16"])
def test_mixed_precision_keeps_a_float32_head(policy):
  tf.keras.mixed_precision.set_global_policy(policy)
  try:
    model = models.build_model("cnn", "multiclass", 64)
    models.compile_model(model, "multiclass", 5e-4)
    assert model.get_layer("conv1").compute_dtype == "bfloat16"
    model.fit(_data(), epochs=1, verbose=0)
    out = model.predict(_data(), verbose=0)
    assert out.dtype == np.float32
    assert np.allclose(out.sum(axis=1), 1.0, atol=1e-5)
  finally:
    tf.keras.mixed_precision.set_global_policy("float32")


def test_cpu_strategy_without_gpu():
  if tf.config.list_physical_devices("GPU"):
    assert isinstance(trainer.distribution_strategy(),
                      tf.distribute.MirroredStrategy)
  else:
    assert trainer.distribution_strategy() is tf.distribute.get_strategy()


def _transformed_batches(n=24, size=16):
  """Transform-output-like batches: serialized uint8 images and labels."""
  rng = np.random.default_rng(0)
  pixels = [tf.io.serialize_tensor(tf.constant(
      rng.integers(0, 256, (size, size, 3), dtype=np.uint8))).numpy()
            for _ in range(n)]
  return tf.data.Dataset.from_tensor_slices(
      ({contract.PIXELS_KEY: np.array(pixels).reshape(-1, 1)},
       np.arange(n) % 2)).batch(4)


def _two_epochs(seed, cached_examples=0):
  batches = trainer.training_batches(_transformed_batches(), 16, train=True,
                                     augmented=True, seed=seed,
                                     cached_examples=cached_examples,
                                     batch_size=4)
  return [np.stack([images.numpy() for images, _ in batches])
          for _ in range(2)]


@pytest.mark.parametrize("cached_examples", [0, 24])
def test_augmented_input_repeats_run_after_run_and_moves_on_each_epoch(
    cached_examples):
  first = _two_epochs(7, cached_examples)
  again = _two_epochs(7, cached_examples)
  for epoch in range(2):
    np.testing.assert_array_equal(first[epoch], again[epoch])
  assert first[0].shape == (6, 4, 16, 16, 3)
  assert not np.array_equal(first[0], first[1])
  assert not np.array_equal(first[0], _two_epochs(8, cached_examples)[0])


def _write_transformed(path, n, size=8, first_label=0):
  """A GZIP TFRecord file of n Transform-output-like examples; image i is
  filled with the value first_label + i, its label the same number."""
  with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
    for i in range(first_label, first_label + n):
      image = tf.io.serialize_tensor(tf.fill([size, size, 3],
                                             tf.constant(i, tf.uint8)))
      writer.write(tf.train.Example(features=tf.train.Features(feature={
          contract.PIXELS_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(
              value=[image.numpy()])),
          contract.LABEL_KEY: tf.train.Feature(int64_list=tf.train.Int64List(
              value=[i]))})).SerializeToString())


def _read_transformed(path, batch_size):
  """The file as the Trainer's data accessor hands it: feature batches."""
  spec = {contract.PIXELS_KEY: tf.io.FixedLenFeature([1], tf.string),
          contract.LABEL_KEY: tf.io.FixedLenFeature([1], tf.int64)}
  return tf.data.TFRecordDataset(str(path), compression_type="GZIP").batch(
      batch_size).map(lambda records: tf.io.parse_example(records, spec)).map(
          lambda features: (features, features.pop(contract.LABEL_KEY)))


def _epoch(batches):
  """[(label, pixel value)] of one pass, in order; each image's pixels are
  checked to hold its own label's value."""
  seen = []
  for images, labels in batches:
    assert images.dtype == tf.float32
    for image, label in zip(images.numpy(), labels.numpy()):
      assert np.all(image == label)
      seen.append(int(label))
  return seen


def test_kept_pixels_are_read_once_and_shuffled_whole_every_epoch(tmp_path):
  path = tmp_path / "train.gz"
  _write_transformed(path, 40)
  batches = trainer.training_batches(
      _read_transformed(path, 8), 8, train=True, augmented=False, seed=3,
      cached_examples=40, batch_size=8)
  first = _epoch(batches)
  path.unlink()  # later epochs must not need the file
  second = _epoch(batches)
  assert sorted(first) == sorted(second) == list(range(40))
  assert first != second
  # Shuffled whole, not within a window: the first batch draws from the
  # whole set (a 1,024 buffer over 40 would too, so the file's own order
  # is the check: far from it).
  assert max(first[:8]) >= 16
  # Without keeping them, the second epoch reads the file again.
  _write_transformed(path, 40)
  unkept = trainer.training_batches(
      _read_transformed(path, 8), 8, train=True, augmented=False, seed=3)
  _epoch(unkept)
  path.unlink()
  with pytest.raises(tf.errors.NotFoundError):
    _epoch(unkept)


def test_kept_eval_pixels_keep_the_file_order(tmp_path):
  path = tmp_path / "eval.gz"
  _write_transformed(path, 10)
  batches = trainer.training_batches(
      _read_transformed(path, 4), 8, train=False, augmented=True, seed=3,
      cached_examples=10, batch_size=4)
  assert _epoch(batches) == list(range(10))
  path.unlink()
  assert _epoch(batches) == list(range(10))


def test_pixel_cache_plan_keeps_the_train_split_first(tmp_path):
  # At 256 px an image's pixels take 196,608 bytes: 5 fit in 1 MB.
  for name, n in (("train4", 4), ("train6", 6), ("eval3", 3)):
    (tmp_path / name).mkdir()
    _write_transformed(tmp_path / name / "data.gz", n)

  def plan(train, budget_mb, epochs=2):
    return trainer.pixel_cache_plan([str(tmp_path / train / "*.gz")],
                                    [str(tmp_path / "eval3" / "*.gz")], 256,
                                    budget_mb, epochs)

  assert plan("train4", 2) == (4, 3)
  assert plan("train4", 1) == (4, 0)  # 1 image of room left for eval's 3
  assert plan("train6", 1) == (0, 3)  # train too large; eval still fits
  assert plan("train4", 0) == (0, 0)
  # Read once, the train split is not worth keeping; eval is read again
  # for the decision rule.
  assert plan("train4", 1, epochs=1) == (0, 3)


def _trained_weights(seed, size=58):
  """The Trainer's seeding, model, optimizer and augmented input, 1 epoch."""
  tf.keras.utils.set_random_seed(seed)
  model = models.build_model("cnn_aug", "binary", size)
  models.compile_model(model, "binary", 5e-4)
  batches = trainer.training_batches(_transformed_batches(size=size), size,
                                     train=True, augmented=True, seed=seed)
  model.fit(batches, epochs=1, verbose=0)
  return model.get_weights()


def test_the_same_seed_trains_the_same_model():
  first, again = _trained_weights(3), _trained_weights(3)
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a, b)
  other = _trained_weights(4)
  assert any(not np.array_equal(a, b) for a, b in zip(first, other))


def test_the_recipes_schedule_sets_the_rate_each_epoch(tmp_path):
  recipe = models.training_recipe("resnet_small", settings.TrainingSettings(),
                                  native_bf16=False)
  model = models.build_model("resnet_small", "binary", 32)
  models.compile_model(model, "binary", recipe.learning_rate,
                       optimizer=recipe.optimizer,
                       label_smoothing=recipe.label_smoothing)
  data = _data(size=32)
  history, _ = trainer._train_phase(  # pylint: disable=protected-access
      model, data, data, 0, 4, settings.TrainingSettings(batch_size=4),
      str(tmp_path), None, recipe)
  # Two warm-up epochs, then the cosine from the full rate over epochs 2-3.
  assert history["lr"] == pytest.approx(
      [1e-3 / 3, 2e-3 / 3, 1e-3, 5e-4], rel=1e-5)
  # A later phase (fine-tuning) runs the schedule over its own epochs.
  history, _ = trainer._train_phase(  # pylint: disable=protected-access
      model, data, data, 4, 3, settings.TrainingSettings(batch_size=4),
      str(tmp_path), None, recipe)
  assert history["lr"] == pytest.approx([1e-3 / 3, 2e-3 / 3, 1e-3], rel=1e-5)
