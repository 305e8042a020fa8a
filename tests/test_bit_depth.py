"""16-bit PNGs holding 12-bit data (a detector's 0..4095) are scaled by the
bits they use, in Transform and in the served models (ingestion counts
them: tests/test_image_example_gen.py); 8-bit images decode as before."""

import numpy as np
import tensorflow as tf

from components import image_examples
from serving.export import pixels

SIZE = 32


def png16(top: int, shape=(48, 64)) -> bytes:
  """A grayscale 16-bit PNG: a ramp from 0 to `top`."""
  ramp = np.linspace(0, top, shape[0] * shape[1]).reshape(shape + (1,))
  return tf.io.encode_png(tf.constant(np.round(ramp).astype(np.uint16))
                          ).numpy()


def _png8(shape=(48, 64)) -> bytes:
  ramp = np.linspace(0, 255, shape[0] * shape[1]).reshape(shape + (1,))
  return tf.io.encode_png(tf.constant(np.round(ramp).astype(np.uint8))
                          ).numpy()


def test_twelve_bits_in_sixteen_fill_the_range():
  image = pixels.decode_and_resize(tf.constant(png16(4095)), SIZE).numpy()
  assert image.max() >= 250  # read as 16 bits it would be 16 at most
  assert int(pixels.png_bit_depth(tf.constant(png16(4095)))) == 16
  assert image_examples.bits_in_use(png16(4095)) == 12
  assert image_examples.bits_in_use(_png8()) is None
  jpeg = tf.io.encode_jpeg(tf.zeros([8, 8, 1], tf.uint8)).numpy()
  assert image_examples.bits_in_use(jpeg) is None


def test_full_sixteen_bits_and_eight_bits_match_their_8_bit_reading():
  full = pixels.decode_and_resize(tf.constant(png16(65535)), SIZE).numpy()
  eight = pixels.decode_and_resize(tf.constant(_png8()), SIZE).numpy()
  assert np.abs(full.astype(int) - eight.astype(int)).max() <= 1
  # 8-bit files: exactly what TensorFlow's own decoder and resize give.
  reference = tf.image.resize(tf.io.decode_image(_png8(), channels=3),
                              [SIZE, SIZE], antialias=True)
  reference = tf.cast(tf.clip_by_value(tf.round(reference), 0, 255),
                      tf.uint8).numpy()
  np.testing.assert_array_equal(eight, reference)
