"""Transform user code: encoded image bytes -> fixed-size uint8 pixels.

Decodes JPEG/PNG, makes grayscale 3-channel, resizes to `image_size` (squashed
to a square, as the thesis's Keras loader did) and stores uint8 pixels: 4x
smaller than float32. Scaling to [0, 1] and augmentation happen in the model
and the Trainer's input pipeline, not here, where they would be frozen in.

tf.Example has no uint8 type, so the pixels travel as one serialized uint8
tensor per image (`tf.io.serialize_tensor`); `image_from_transformed` is the
inverse used by the Trainer and every serving signature.
"""

import tensorflow as tf

IMAGE_KEY = "image"
LABEL_KEY = "label"
PIXELS_KEY = "pixels"  # transformed: serialized uint8 [S, S, 3]
DEFAULT_IMAGE_SIZE = 224


def image_size_from(custom_config) -> int:
  return int((custom_config or {}).get("image_size", DEFAULT_IMAGE_SIZE))


def decode_and_resize(encoded: tf.Tensor, image_size: int) -> tf.Tensor:
  """One encoded JPEG/PNG string -> uint8 [image_size, image_size, 3]."""
  image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
  image = tf.image.resize(image, [image_size, image_size], antialias=True)
  image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
  return tf.ensure_shape(image, [image_size, image_size, 3])


def _squeeze_last(x: tf.Tensor) -> tf.Tensor:
  """[batch, 1] -> [batch]: TFT hands FixedLenFeature([1]) as rank 2."""
  return tf.reshape(x, [-1])


def preprocessing_fn(inputs, custom_config):
  """TFT preprocessing_fn: keeps the label, turns `image` into `pixels`."""
  image_size = image_size_from(custom_config)
  encoded = _squeeze_last(inputs[IMAGE_KEY])
  pixels = tf.map_fn(
      lambda e: tf.io.serialize_tensor(decode_and_resize(e, image_size)),
      encoded, fn_output_signature=tf.string)
  return {PIXELS_KEY: pixels, LABEL_KEY: _squeeze_last(inputs[LABEL_KEY])}


def image_from_transformed(pixels: tf.Tensor, image_size: int) -> tf.Tensor:
  """Serialized uint8 tensors [batch] -> uint8 [batch, S, S, 3]."""
  pixels = tf.reshape(pixels, [-1])
  return tf.map_fn(
      lambda s: tf.ensure_shape(tf.io.parse_tensor(s, tf.uint8),
                                [image_size, image_size, 3]),
      pixels, fn_output_signature=tf.TensorSpec([image_size, image_size, 3],
                                                tf.uint8))
