"""preprocessing_fn through tft_beam on real chest X-rays."""

import glob
import os

import numpy as np
from PIL import Image
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata
from tensorflow_transform.tf_metadata import schema_utils

from components import transform
from schema import contract
from schema import settings
from serving.export import pixels as pixels_lib

SIZE = 48


def _raw_metadata():
  return dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec({
      "image": tf.io.FixedLenFeature([1], tf.string),
      "label": tf.io.FixedLenFeature([1], tf.int64),
  }))


def _transform(instances, tmp_path, resize=settings.SQUASH):
  with tft_beam.Context(temp_dir=str(tmp_path)):
    (transformed, _), _ = (
        (instances, _raw_metadata())
        | tft_beam.AnalyzeAndTransformDataset(
            lambda inputs: transform.preprocessing_fn(
                inputs, transform.make_custom_config(SIZE, resize))))
  return transformed


def transform_pixels(images, tmp_path, resize=settings.SQUASH):
  """Encoded images -> their uint8 [SIZE, SIZE, 3] pixels, through Transform
  as training runs it (tft_beam)."""
  transformed = _transform([{"image": [image], "label": [0]}
                            for image in images], tmp_path, resize)
  return [pixels_lib.image_from_transformed(
      tf.constant([row[contract.PIXELS_KEY]]), SIZE).numpy()[0]
          for row in transformed]


def _expected_pixels(path):
  """An independent reference: PIL decode, grayscale -> RGB, resize."""
  with Image.open(path) as img:
    rgb = np.asarray(img.convert("RGB"), np.float32)
  resized = tf.image.resize(rgb, [SIZE, SIZE], antialias=True).numpy()
  return np.clip(np.round(resized), 0, 255).astype(np.uint8)


def test_preprocessing_fn_on_real_images(real_binary_subset, tmp_path):
  paths = sorted(glob.glob(os.path.join(real_binary_subset, "train", "*",
                                        "*.jpeg")))[:6]
  instances = []
  for i, path in enumerate(paths):
    with open(path, "rb") as f:
      instances.append({"image": [f.read()], "label": [i % 2]})
  transformed = _transform(instances, tmp_path)
  assert len(transformed) == len(paths)
  for row, path, instance in zip(transformed, paths, instances):
    assert row[contract.LABEL_KEY] == instance["label"][0]
    pixels = pixels_lib.image_from_transformed(
        tf.constant([row[contract.PIXELS_KEY]]), SIZE).numpy()[0]
    assert pixels.dtype == np.uint8 and pixels.shape == (SIZE, SIZE, 3)
    # Grayscale X-rays become three equal channels.
    assert np.array_equal(pixels[..., 0], pixels[..., 1])
    assert np.array_equal(pixels[..., 1], pixels[..., 2])
    # Decoders may differ by a grey level on JPEG; the image is the same.
    diff = np.abs(pixels.astype(int) - _expected_pixels(path).astype(int))
    assert diff.mean() < 1.0 and pixels.std() > 10


def test_png_rgb_and_odd_sizes(tmp_path):
  rng = np.random.default_rng(0)
  encoded = []
  for shape in ((30, 70, 3), (100, 20)):
    pixels = rng.integers(0, 255, shape, dtype=np.uint8)
    path = str(tmp_path / f"{len(encoded)}.png")
    Image.fromarray(pixels).save(path)
    with open(path, "rb") as f:
      encoded.append((path, f.read()))
  transformed = _transform([{"image": [e], "label": [0]} for _, e in encoded],
                           tmp_path / "tft")
  for row, (path, _) in zip(transformed, encoded):
    pixels = pixels_lib.image_from_transformed(
        tf.constant([row[contract.PIXELS_KEY]]), SIZE).numpy()[0]
    # PNG is lossless: exactly the reference.
    assert np.array_equal(pixels, _expected_pixels(path))


def _png(pixels, path):
  Image.fromarray(pixels).save(path)
  with open(path, "rb") as f:
    return f.read()


def test_pad_keeps_the_aspect_ratio_between_black_bars(tmp_path):
  # A wide and a tall grey image, 2.5 times as long as broad: at 48 px the
  # image is 19.2 px broad, between two black bars of about 14 px.
  wide = _png(np.full((40, 100), 200, np.uint8), str(tmp_path / "wide.png"))
  tall = _png(np.full((100, 40), 200, np.uint8), str(tmp_path / "tall.png"))

  def pixels(resize):
    return [image[..., 0] for image in transform_pixels(
        [wide, tall], tmp_path / resize, resize)]

  assert all(np.all(image == 200) for image in pixels(settings.SQUASH))
  padded_wide, padded_tall = pixels(settings.PAD)
  for across in (padded_wide, padded_tall.T):  # rows across the long side
    grey = (across == 200).all(axis=1)
    black = (across == 0).all(axis=1)
    assert 18 <= grey.sum() <= 20, grey
    assert black[:14].all() and black[-14:].all()
    assert grey[SIZE // 2 - 9:SIZE // 2 + 9].all()
