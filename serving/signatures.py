"""Serving signatures of every exported model.

* `serving_default`: encoded image bytes (JPEG/PNG, any size, grayscale or
  RGB) -> `probabilities` [batch, classes], `class_id`, `class_name`.
* `serving_tf_example`: serialized tf.Examples (as TFMA and InfraValidator
  send them) -> `outputs`, the model's own output ([batch, 1] sigmoid for
  binary, [batch, classes] softmax for multiclass).

Both run the Transform graph (`tft_layer`), so clients send raw file bytes
and serving preprocesses exactly as training did.
"""

import tensorflow as tf

from components import transform
from components.image_layouts import CLASS_NAMES

SERVING_DEFAULT = "serving_default"
TF_EXAMPLE = "serving_tf_example"


def class_probabilities(outputs: tf.Tensor) -> tf.Tensor:
  """Model output -> [batch, classes]; a sigmoid p becomes [1 - p, p]."""
  if outputs.shape[-1] == 1:
    return tf.concat([1.0 - outputs, outputs], axis=-1)
  return outputs


class _Exporter(tf.Module):
  """Holds the model and the Transform layer so both are saved and tracked."""

  def __init__(self, model, tf_transform_output, task: str, image_size: int):
    super().__init__()
    self.model = model
    self.tft_layer = tf_transform_output.transform_features_layer()
    self._image_size = image_size
    self._class_names = tf.constant(CLASS_NAMES[task])

  def _predict_encoded(self, encoded: tf.Tensor) -> tf.Tensor:
    raw = {transform.IMAGE_KEY: tf.reshape(encoded, [-1, 1])}
    pixels = self.tft_layer(raw)[transform.PIXELS_KEY]
    images = transform.image_from_transformed(pixels, self._image_size)
    return self.model(tf.cast(images, tf.float32), training=False)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string,
                                              name="images")])
  def serve_images(self, images):
    probabilities = class_probabilities(self._predict_encoded(images))
    class_id = tf.argmax(probabilities, axis=-1)
    return {"probabilities": probabilities, "class_id": class_id,
            "class_name": tf.gather(self._class_names, class_id)}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string,
                                              name="examples")])
  def serve_tf_examples(self, examples):
    parsed = tf.io.parse_example(
        examples, {transform.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string)})
    return {"outputs": self._predict_encoded(parsed[transform.IMAGE_KEY])}


def export_serving_model(model, tf_transform_output, export_dir: str,
                         task: str, image_size: int) -> None:
  """Saves `model` with the signatures above (tf.saved_model.save)."""
  exporter = _Exporter(model, tf_transform_output, task, image_size)
  tf.saved_model.save(exporter, export_dir, signatures={
      SERVING_DEFAULT: exporter.serve_images,
      TF_EXAMPLE: exporter.serve_tf_examples,
  })
