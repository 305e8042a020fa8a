"""Transform user code: encoded image bytes -> fixed-size uint8 pixels.

Scaling to [0, 1] and augmentation happen in the model and the Trainer's
input pipeline, not here, where they would be frozen into the graph every
signature runs. The pixel encoding itself is the exported model's
(serving/export/pixels.py), so training and serving cannot drift apart.
"""

import tensorflow as tf

from schema import contract
from schema import settings
from serving.export import pixels


_IMAGE_SIZE = "image_size"
_RESIZE = "resize"


def make_custom_config(image_size: int,
                       resize: str = settings.SQUASH) -> dict:
  """Transform's custom_config, as the pipeline passes it."""
  return {_IMAGE_SIZE: image_size, _RESIZE: resize}


def image_size_from(custom_config) -> int:
  """The image size of make_custom_config(); the Trainer's default without
  one."""
  return int((custom_config or {}).get(
      _IMAGE_SIZE, settings.TrainingSettings().image_size))


def resize_from(custom_config) -> str:
  """The resize mode of make_custom_config(); squash without one (a
  Transform graph made before the setting existed)."""
  return (custom_config or {}).get(_RESIZE, settings.SQUASH)


def _squeeze_last(x: tf.Tensor) -> tf.Tensor:
  """[batch, 1] -> [batch]: TFT hands FixedLenFeature([1]) as rank 2."""
  return tf.reshape(x, [-1])


def preprocessing_fn(inputs, custom_config):
  """TFT preprocessing_fn: keeps the label, turns the image into pixels."""
  encoded = _squeeze_last(inputs[contract.IMAGE_KEY])
  return {
      contract.PIXELS_KEY: pixels.serialized_pixels(
          encoded, image_size_from(custom_config),
          resize_from(custom_config)),
      contract.LABEL_KEY: _squeeze_last(inputs[contract.LABEL_KEY]),
  }
