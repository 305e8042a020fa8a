"""The pixels a model sees, as Transform stores them and every signature
rebuilds them.

Decodes JPEG/PNG, makes grayscale 3-channel, resizes to `image_size`
(squashed to a square, as the thesis's Keras loader did) and keeps uint8
pixels: 4x smaller than float32. tf.Example has no uint8 type, so the
pixels travel as one serialized uint8 tensor per image
(`tf.io.serialize_tensor`); `image_from_transformed` is the inverse, used
by the Trainer's input pipeline and by every serving signature.
"""

import tensorflow as tf

from schema import contract


def _taken_format(encoded: tf.Tensor) -> tf.Tensor:
  """Whether the bytes start as a JPEG or PNG file does (contract)."""
  return tf.reduce_any([
      tf.equal(tf.strings.substr(encoded, 0, len(magic)), magic)
      for magic in contract.IMAGE_FORMATS.values()])


def _png_pixels(encoded: tf.Tensor) -> tf.Tensor:
  """Width x height from a PNG's IHDR chunk (big-endian, bytes 16-23); 0
  for a file too short to hold one (the decoder then says what is wrong)."""
  header = tf.io.decode_raw(tf.strings.substr(encoded, 16, 8), tf.uint8)
  header = tf.cast(tf.pad(header, [[0, 8 - tf.shape(header)[0]]]), tf.int64)
  weights = tf.constant([2**24, 2**16, 2**8, 1], tf.int64)
  return (tf.reduce_sum(header[:4] * weights)
          * tf.reduce_sum(header[4:] * weights))


def _jpeg_pixels(encoded: tf.Tensor) -> tf.Tensor:
  shape = tf.cast(tf.image.extract_jpeg_shape(encoded), tf.int64)
  return shape[0] * shape[1]


def declared_pixels(encoded: tf.Tensor) -> tf.Tensor:
  """Pixels a JPEG or PNG declares in its header, read without decoding."""
  png_magic = contract.IMAGE_FORMATS["PNG"]
  return tf.cond(
      tf.equal(tf.strings.substr(encoded, 0, len(png_magic)), png_magic),
      lambda: _png_pixels(encoded), lambda: _jpeg_pixels(encoded))


def decode_and_resize(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
  """One encoded JPEG/PNG string -> uint8 [image_size, image_size, 3].

  Other formats TensorFlow could decode (GIF, BMP) are refused, with
  InvalidArgumentError, as ingestion quarantines them: a model serves the
  formats it was trained on. So are images whose header declares more than
  contract.MAX_IMAGE_PIXELS, before they are decoded: a small file can
  declare a huge image, and the graph is what tensorflow_model_server runs.
  """
  taken = tf.debugging.Assert(
      _taken_format(encoded),
      [f"not a {' or '.join(contract.IMAGE_FORMATS)} image"])
  with tf.control_dependencies([taken]):
    declared = declared_pixels(encoded)
  small = tf.debugging.Assert(
      declared <= contract.MAX_IMAGE_PIXELS,
      [f"image larger than {contract.MAX_IMAGE_PIXELS} pixels:", declared])
  with tf.control_dependencies([small]):
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  image = tf.image.resize(image, [image_size, image_size], antialias=True)
  image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
  return tf.ensure_shape(image, [image_size, image_size, 3])


def serialized_pixels(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
  """Encoded images [batch] -> serialized uint8 pixel tensors [batch]."""
  return tf.map_fn(
      lambda e: tf.io.serialize_tensor(decode_and_resize(e, image_size)),
      encoded, fn_output_signature=tf.string)


def image_from_transformed(pixels: tf.Tensor, image_size: int) -> tf.Tensor:
  """Serialized uint8 tensors [batch] -> uint8 [batch, S, S, 3]."""
  pixels = tf.reshape(pixels, [-1])
  return tf.map_fn(
      lambda s: tf.ensure_shape(tf.io.parse_tensor(s, tf.uint8),
                                [image_size, image_size, 3]),
      pixels, fn_output_signature=tf.TensorSpec([image_size, image_size, 3],
                                                tf.uint8))
