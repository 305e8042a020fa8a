"""16-bit PNGs holding 12-bit data (a detector's 0..4095) are scaled by the
bits they use, in Transform and in the served models, and ingestion counts
them; 8-bit images decode as before."""

import shutil

import numpy as np
import tensorflow as tf

from components import image_examples
from schema import layout
from serving.export import pixels
from tests.test_image_example_gen import run_executor

SIZE = 32


def _png16(top: int, shape=(48, 64)) -> bytes:
  """A grayscale 16-bit PNG: a ramp from 0 to `top`."""
  ramp = np.linspace(0, top, shape[0] * shape[1]).reshape(shape + (1,))
  return tf.io.encode_png(tf.constant(np.round(ramp).astype(np.uint16))
                          ).numpy()


def _png8(shape=(48, 64)) -> bytes:
  ramp = np.linspace(0, 255, shape[0] * shape[1]).reshape(shape + (1,))
  return tf.io.encode_png(tf.constant(np.round(ramp).astype(np.uint8))
                          ).numpy()


def test_twelve_bits_in_sixteen_fill_the_range():
  image = pixels.decode_and_resize(tf.constant(_png16(4095)), SIZE).numpy()
  assert image.max() >= 250  # read as 16 bits it would be 16 at most
  assert int(pixels.png_bit_depth(tf.constant(_png16(4095)))) == 16
  assert image_examples.bits_in_use(_png16(4095)) == 12
  assert image_examples.bits_in_use(_png8()) is None


def test_full_sixteen_bits_and_eight_bits_match_their_8_bit_reading():
  full = pixels.decode_and_resize(tf.constant(_png16(65535)), SIZE).numpy()
  eight = pixels.decode_and_resize(tf.constant(_png8()), SIZE).numpy()
  assert np.abs(full.astype(int) - eight.astype(int)).max() <= 1
  # 8-bit files: exactly what TensorFlow's own decoder and resize give.
  reference = tf.image.resize(tf.io.decode_image(_png8(), channels=3),
                              [SIZE, SIZE], antialias=True)
  reference = tf.cast(tf.clip_by_value(tf.round(reference), 0, 255),
                      tf.uint8).numpy()
  np.testing.assert_array_equal(eight, reference)


def test_ingestion_counts_the_rescaled_images(real_binary_subset, tmp_path):
  data = tmp_path / "data"
  shutil.copytree(real_binary_subset, data)
  (data / "train" / "NORMAL" / "IM-7001-0001.png").write_bytes(_png16(4095))
  (data / "train" / "NORMAL" / "IM-7002-0001.png").write_bytes(_png16(65535))
  _, counts, quarantined = run_executor(str(data), str(tmp_path / "out"),
                                        "binary")
  assert quarantined == []
  assert counts["ingested"] == counts["seen"]
  assert counts[layout.RESCALED_COUNT] == 1  # the full 16-bit one is not
