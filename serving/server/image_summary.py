"""What an image looks like, in six numbers, for the skew check.

`summarize(encoded)` gives contract.SUMMARY_FEATURES of an encoded image:
its height, width and channels as stored, and of its grayscale pixels in
[0, 1] of the file's own range (255 for 8-bit, 65535 for 16-bit) the mean
(brightness), the standard deviation (contrast) and the mean of the outer
tenth on every side (border_brightness: dark on a chest X-ray, bright on
an inverted one, which mean and contrast barely tell). The same function
summarizes the training images (`cxr skew`, from the ingested examples)
and the served ones (the request log, which stores the summary in place of
an image it may not keep), so the two sides are measured alike.

A summary travels as a serialized tf.Example of those features
(`as_example`, `from_example`); `from_logged` reads either form back.
"""

from typing import Dict, Optional

import tensorflow as tf

from schema import contract

HEIGHT, WIDTH, CHANNELS, BRIGHTNESS, CONTRAST, BORDER = (
    contract.SUMMARY_FEATURES)


def summarize(encoded: bytes) -> Dict[str, float]:
  """The six numbers of a JPEG or PNG; ValueError if it cannot decode."""
  try:
    image = tf.io.decode_image(encoded, channels=0, expand_animations=False)
  except (tf.errors.InvalidArgumentError, ValueError) as e:
    raise ValueError(f"not a decodable image: {e}") from e
  scale = float(image.dtype.max)
  gray = tf.cast(image, tf.float32) / scale
  if image.shape[-1] >= 3:
    gray = tf.image.rgb_to_grayscale(gray[..., :3])
  elif image.shape[-1] == 2:  # gray + alpha
    gray = gray[..., :1]
  height, width = int(image.shape[0]), int(image.shape[1])
  edge_h, edge_w = max(1, height // 10), max(1, width // 10)
  inner = gray[edge_h:height - edge_h, edge_w:width - edge_w]
  border_pixels = height * width - int(tf.size(inner))
  border = ((tf.reduce_sum(gray) - tf.reduce_sum(inner)) / border_pixels
            if border_pixels else tf.reduce_mean(gray))
  return {HEIGHT: height, WIDTH: width, CHANNELS: int(image.shape[2]),
          BRIGHTNESS: float(tf.reduce_mean(gray)),
          CONTRAST: float(tf.math.reduce_std(gray)),
          BORDER: float(border)}


def as_example(summary: Dict[str, float]) -> bytes:
  """A summary as a serialized tf.Example."""
  feature = {}
  for key in contract.SUMMARY_FEATURES:
    value = summary[key]
    feature[key] = (
        tf.train.Feature(float_list=tf.train.FloatList(value=[value]))
        if key in contract.SUMMARY_FLOATS else
        tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)])))
  return tf.train.Example(features=tf.train.Features(
      feature=feature)).SerializeToString()


def from_example(data: bytes) -> Optional[Dict[str, float]]:
  """The summary a serialized tf.Example holds, or None if it holds none."""
  try:
    example = tf.train.Example.FromString(data)
  except Exception:  # pylint: disable=broad-except
    return None  # protobuf's DecodeError: image bytes, not a summary
  feature = example.features.feature
  if not all(key in feature for key in contract.SUMMARY_FEATURES):
    return None
  return {key: (feature[key].float_list.value[0]
                if key in contract.SUMMARY_FLOATS
                else feature[key].int64_list.value[0])
          for key in contract.SUMMARY_FEATURES}


def from_logged(value: bytes) -> Optional[Dict[str, float]]:
  """A logged image value's summary: stored, or computed from the image;
  None for an emptied or undecodable value."""
  if not value:
    return None
  stored = from_example(value)
  if stored is not None:
    return stored
  try:
    return summarize(value)
  except ValueError:
    return None
