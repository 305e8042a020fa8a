"""Serving signatures of every exported model.

* `serving_default`: encoded image bytes (JPEG/PNG, any size, grayscale or
  RGB) -> `probabilities` [batch, classes], `class_id`, `class_name`, and
  the screening decision at the model's operating point:
  `pneumonia_probability` (1 - P(normal)), `threshold` (the one chosen on
  the eval split, in every row) and `pneumonia_decision` (int64 0/1:
  probability >= threshold). A binary model's `class_id` is that decision;
  a 3-class model's is the arg-max class.
* `serving_tf_example`: serialized tf.Examples (as TFMA and InfraValidator
  send them) -> `outputs`, the model's own output ([batch, 1] sigmoid for
  binary, [batch, classes] softmax for multiclass), and
  `pneumonia_decision` [batch, 1] float32 0/1, which TFMA scores as the
  operating point's prediction.
* `pneumonia_label`: serialized tf.Examples with their label ->
  `pneumonia_label` [batch, 1] float32, 1 for pneumonia of any kind, NaN
  for an example without a label: the label TFMA scores a 3-class model's
  `pneumonia_decision` against. Not for clients.
* `gradcam`: encoded image bytes, an optional `class_index` [batch]
  (default: empty, each image's predicted class, as `class_id` above) and
  an optional `method`
  string ("hirescam", the default, or "gradcam") -> `probabilities`,
  `class_id` (the class explained), `heatmap` float32 [batch, S, S] in
  [0, 1] at the model's input size, `overlay_png` (jet heat map blended at
  0.4 over the input, PNG bytes). The defaults are recorded in the
  SignatureDef, so TF Serving (and `cxr serve`) accept requests without
  them.

All but `pneumonia_label` run the Transform graph (`tft_layer`), so
clients send raw file bytes and serving preprocesses exactly as training
did.
"""

from typing import Optional

import tensorflow as tf

from schema import contract
from serving.export import gradcam
from serving.export import pixels as pixels_lib
from serving.export import warmup

# The signatures' names, here for the callers that export and explain.
SERVING_DEFAULT = contract.SERVING_DEFAULT
TF_EXAMPLE = contract.TF_EXAMPLE
GRADCAM = contract.GRADCAM
# The decision threshold of a model exported without an operating point.
DEFAULT_THRESHOLD = 0.5


def pneumonia_probability(outputs: tf.Tensor) -> tf.Tensor:
  """The model's output -> [batch] P(pneumonia of any kind): a binary
  model's sigmoid, a 3-class model's 1 - P(normal)."""
  outputs = tf.cast(outputs, tf.float32)
  if outputs.shape[-1] == 1:
    return outputs[:, 0]
  return 1.0 - outputs[:, contract.NORMAL_CLASS]


def _unless_empty(batch: tf.Tensor, compute, empty):
  """compute() for a batch with images, empty() (zero rows) for none.

  An empty batch must answer an empty result, as TF Serving's own models
  do, but the oneDNN convolution kernels TensorFlow uses on many CPUs reject
  a zero-size batch instead of returning nothing, so the model is not run
  on one.
  """
  return tf.cond(tf.shape(batch)[0] > 0, compute, empty)


class _Exporter(tf.Module):
  """Holds the model and the Transform layer so both are saved and tracked."""

  def __init__(self, model, tf_transform_output, task: str, image_size: int,
               gradcam_layer: Optional[str] = None,
               threshold: float = DEFAULT_THRESHOLD):
    super().__init__()
    self.threshold = tf.Variable(threshold, dtype=tf.float32,
                                 trainable=False, name="threshold")
    self._binary = task == contract.BINARY
    self.model = model
    self.cam_model = gradcam.gradcam_model(model, gradcam_layer)
    self.tft_layer = tf_transform_output.transform_features_layer()
    self._image_size = image_size
    self._class_names = tf.constant(contract.CLASS_NAMES[task])
    self._classes = contract.class_count(task)

  def _images(self, encoded: tf.Tensor) -> tf.Tensor:
    """Encoded bytes -> uint8 [batch, S, S, 3] through the Transform graph."""
    raw = {contract.IMAGE_KEY: tf.reshape(encoded, [-1, 1])}
    pixels = self.tft_layer(raw)[contract.PIXELS_KEY]
    return pixels_lib.image_from_transformed(pixels, self._image_size)

  def _predict_encoded(self, encoded: tf.Tensor) -> tf.Tensor:
    images = tf.cast(self._images(encoded), tf.float32)
    output = self.model.output
    return _unless_empty(
        images, lambda: self.model(images, training=False),
        lambda: tf.zeros([0] + output.shape[1:], output.dtype))

  # The Python argument names are the signatures' input names (the
  # TensorSpec names say so to TensorFlow): contract.IMAGES_INPUT,
  # EXAMPLES_INPUT, CLASS_INDEX_INPUT, METHOD_INPUT.
  def _decision(self, outputs: tf.Tensor):
    """(P(pneumonia), threshold per row, 0/1 int64 decision)."""
    probability = pneumonia_probability(outputs)
    threshold = tf.fill(tf.shape(probability), self.threshold)
    return (probability, threshold,
            tf.cast(probability >= threshold, tf.int64))

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name=contract.IMAGES_INPUT)])
  def serve_images(self, images):
    outputs = self._predict_encoded(images)
    probabilities = gradcam.class_probabilities(outputs)
    probability, threshold, decision = self._decision(outputs)
    class_id = decision if self._binary else tf.argmax(probabilities, -1)
    return {contract.PROBABILITIES: probabilities,
            contract.CLASS_ID: class_id,
            contract.CLASS_NAME: tf.gather(self._class_names, class_id),
            contract.PNEUMONIA_PROBABILITY: probability,
            contract.THRESHOLD: threshold,
            contract.PNEUMONIA_DECISION: decision}

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name=contract.EXAMPLES_INPUT)])
  def serve_tf_examples(self, examples):
    parsed = tf.io.parse_example(
        examples, {contract.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string)})
    outputs = self._predict_encoded(parsed[contract.IMAGE_KEY])
    decision = self._decision(outputs)[2]
    return {contract.OUTPUTS: outputs,
            contract.PNEUMONIA_DECISION: tf.cast(decision[:, None],
                                                 tf.float32)}

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name=contract.EXAMPLES_INPUT)])
  def pneumonia_label(self, examples):
    # An example without a label (a warm-up request's) gets NaN: nothing
    # to score it against, rather than an error or a made-up class.
    parsed = tf.io.parse_example(examples, {contract.LABEL_KEY: (
        tf.io.FixedLenFeature([1], tf.int64, default_value=[-1]))})
    label = parsed[contract.LABEL_KEY]
    pneumonia = tf.cast(label != contract.NORMAL_CLASS, tf.float32)
    return {contract.PNEUMONIA_LABEL: tf.where(
        label < 0, tf.constant(float("nan")), pneumonia)}

  @tf.function(input_signature=[
      tf.TensorSpec([None], tf.string, name=contract.IMAGES_INPUT),
      tf.TensorSpec([None], tf.int32, name=contract.CLASS_INDEX_INPUT),
      tf.TensorSpec([], tf.string, name=contract.METHOD_INPUT)])
  def serve_gradcam(self, images, class_index=tf.constant([], tf.int32),
                    method=tf.constant(contract.DEFAULT_GRADCAM_METHOD)):
    # The default arguments become SignatureDef.defaults on save.
    pixels = self._images(images)
    size, classes = self._image_size, self._classes
    probabilities, class_id, heatmap = _unless_empty(
        pixels,
        lambda: gradcam.gradcam(self.cam_model, tf.cast(pixels, tf.float32),
                                class_index, method,
                                threshold=self.threshold),
        lambda: (tf.zeros([0, classes]), tf.zeros([0], tf.int64),
                 tf.zeros([0, size, size])))
    return {contract.PROBABILITIES: probabilities,
            contract.CLASS_ID: class_id, contract.HEATMAP: heatmap,
            contract.OVERLAY_PNG: gradcam.overlay_png(pixels, heatmap)}


def export_serving_model(model, tf_transform_output, export_dir: str,
                         task: str, image_size: int,
                         gradcam_layer: Optional[str] = None,
                         threshold: float = DEFAULT_THRESHOLD) -> None:
  """Saves `model` with the signatures above (tf.saved_model.save) and
  the warm-up requests both servers replay on load (warmup.py).

  gradcam_layer: the feature map Grad-CAM explains; default: the last
  convolutional one (gradcam.find_target_layer). threshold: the operating
  point's threshold on P(pneumonia).
  """
  exporter = _Exporter(model, tf_transform_output, task, image_size,
                       gradcam_layer, threshold)
  tf.saved_model.save(exporter, export_dir, signatures={
      SERVING_DEFAULT: exporter.serve_images,
      TF_EXAMPLE: exporter.serve_tf_examples,
      contract.PNEUMONIA_LABEL_SIGNATURE: exporter.pneumonia_label,
      # The tf.function itself, not a concrete function: only then does
      # TensorFlow record the input defaults in the SignatureDef.
      GRADCAM: exporter.serve_gradcam,
  })
  warmup.write_warmup_file(export_dir)
