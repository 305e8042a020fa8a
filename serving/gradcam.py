"""Grad-CAM (Selvaraju et al. 2017) and HiResCAM for every model of the zoo.

One implementation, used by the `gradcam` serving signature (in the graph)
and by reports (eagerly on a trained Keras model):

  gradcam:  heatmap = normalize(ReLU(sum_k mean_hw(d score / d A_k) * A_k))
  hirescam: heatmap = normalize(ReLU(sum_k (d score / d A_k) * A_k))

where A is the last convolutional feature map and `score` the probability
of the explained class: the sigmoid output for class 1 of a binary model,
its complement for class 0, the softmax output otherwise. The map is
upsampled to the model's input size and scaled to [0, 1] per image.

HiResCAM (Draelos & Carin 2020) keeps the gradient at each location instead
of averaging it over the map. The thesis's models end in Flatten + Dense,
which gives every location its own weights; averaging them away lets a
location that pushed the score down still light up. Both come from the same
gradient, so offering both costs one extra multiply.
"""

from typing import Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

OVERLAY_ALPHA = 0.4  # weight of the heat map over the X-ray
METHODS = ("gradcam", "hirescam")
DEFAULT_METHOD = "gradcam"  # the thesis's method


def class_probabilities(outputs: tf.Tensor) -> tf.Tensor:
  """Model output -> [batch, classes]; a sigmoid p becomes [1 - p, p]."""
  outputs = tf.cast(outputs, tf.float32)
  if outputs.shape[-1] == 1:
    return tf.concat([1.0 - outputs, outputs], axis=-1)
  return outputs


def _is_pooling(layer) -> bool:
  return "Pooling" in type(layer).__name__


def _output_rank(layer) -> int:
  try:
    return len(layer.output.shape)
  except (AttributeError, ValueError, TypeError):  # shared or list outputs
    return -1


def find_target_layer(model: keras.Model) -> str:
  """Name of the last layer producing a spatial feature map.

  Walks back from the output past Flatten/Dense and pooling layers: conv4_1
  for the thesis CNN, block5_conv3 (VGG16), out_relu (MobileNetV2),
  post_relu (ResNet50V2) -- the last convolutional evidence before the
  spatial layout is thrown away.
  """
  for layer in reversed(model.layers):
    if (_output_rank(layer) == 4 and not _is_pooling(layer)
        and not isinstance(layer, keras.layers.InputLayer)):
      return layer.name
  raise ValueError(f"model {model.name} has no layer with a 4-D output to "
                   "explain; name one with gradcam_layer")


def gradcam_model(model: keras.Model,
                  layer_name: Optional[str] = None) -> keras.Model:
  """A model with two outputs: the target feature map and the predictions."""
  layer = model.get_layer(layer_name or find_target_layer(model))
  if len(layer.output.shape) != 4:
    raise ValueError(f"Grad-CAM layer {layer.name} outputs shape "
                     f"{layer.output.shape}, not a [batch, h, w, channels] map")
  return keras.Model(model.inputs, [layer.output, model.output],
                     name=f"{model.name}_gradcam")


def gradcam(cam_model: keras.Model, images: tf.Tensor,
            class_index: Optional[tf.Tensor] = None,
            method=DEFAULT_METHOD) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """Heat maps for a batch.

  Args:
    cam_model: from gradcam_model().
    images: float32 [batch, S, S, 3], the model's own input (0..255).
    class_index: int [batch] classes to explain; None or empty: each
      image's predicted class.
    method: one of METHODS, a Python string or a string scalar tensor (the
      serving signature's input; an unknown name fails with
      InvalidArgumentError).

  Returns:
    (probabilities [batch, classes], class_id [batch] int64 -- the class
    explained, heatmap float32 [batch, S, S] in [0, 1]).
  """
  images = tf.convert_to_tensor(images, tf.float32)
  with tf.GradientTape() as tape:
    feature_map, outputs = cam_model(images, training=False)
    probabilities = class_probabilities(outputs)
    predicted = tf.argmax(probabilities, axis=-1)
    if class_index is None:
      class_id = predicted
    else:
      class_index = tf.cast(tf.reshape(class_index, [-1]), tf.int64)
      class_id = tf.cond(tf.size(class_index) > 0,
                         lambda: _checked(class_index, probabilities),
                         lambda: predicted)
    # Each image's score depends on its own feature map only (inference
    # mode), so one gradient of the sum gives every per-image gradient.
    score = tf.gather(probabilities, class_id, batch_dims=1)
  grads = tf.cast(tape.gradient(score, feature_map), tf.float32)
  feature_map = tf.cast(feature_map, tf.float32)
  cam = tf.nn.relu(_weighted_map(feature_map, grads, method))
  size = tf.shape(images)[1:3]
  cam = tf.image.resize(cam[..., tf.newaxis], size, method="bilinear")[..., 0]
  peak = tf.reduce_max(cam, axis=[1, 2], keepdims=True)
  # A map with no positive evidence stays all zero instead of dividing by 0.
  heatmap = tf.math.divide_no_nan(cam, peak)
  return probabilities, class_id, tf.clip_by_value(heatmap, 0.0, 1.0)


def _weighted_map(feature_map: tf.Tensor, grads: tf.Tensor,
                  method) -> tf.Tensor:
  """[batch, h, w]: feature maps weighted by their gradients, per `method`."""
  if isinstance(method, str):
    if method not in METHODS:
      raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    return _METHOD_MAPS[method](feature_map, grads)
  method = tf.convert_to_tensor(method, tf.string)
  known = tf.reduce_any(tf.equal(method, tf.constant(METHODS)))
  check = tf.debugging.Assert(
      known, ["method must be one of", tf.constant(METHODS), "got", method])
  with tf.control_dependencies([check]):
    # Both are cheap next to the gradient they share; pick one per request.
    return tf.where(tf.equal(method, "hirescam"),
                    _hirescam_map(feature_map, grads),
                    _gradcam_map(feature_map, grads))


def _gradcam_map(feature_map, grads):
  channel_weights = tf.reduce_mean(grads, axis=[1, 2])  # [batch, k]
  return tf.einsum("bhwk,bk->bhw", feature_map, channel_weights)


def _hirescam_map(feature_map, grads):
  return tf.reduce_sum(feature_map * grads, axis=-1)


_METHOD_MAPS = {"gradcam": _gradcam_map, "hirescam": _hirescam_map}


def _checked(class_index: tf.Tensor, probabilities: tf.Tensor) -> tf.Tensor:
  """class_index, after checking it has one valid class per image."""
  classes = tf.shape(probabilities, out_type=tf.int64)[-1]
  checks = [
      tf.debugging.assert_equal(
          tf.size(class_index, out_type=tf.int64),
          tf.shape(probabilities, out_type=tf.int64)[0],
          message="class_index needs one class per image (or none)"),
      tf.debugging.assert_less(class_index, classes,
                               message="class_index out of range"),
      tf.debugging.assert_non_negative(class_index,
                                       message="class_index out of range"),
  ]
  with tf.control_dependencies(checks):
    return tf.identity(class_index)


# Matplotlib's 'jet' as its segment data: (position, value) breakpoints per
# channel. Matplotlib cannot run inside a SavedModel, so the colour map is
# rebuilt from these as the same 256-entry lookup table.
_JET_SEGMENTS = (
    ((0.0, 0.0), (0.35, 0.0), (0.66, 1.0), (0.89, 1.0), (1.0, 0.5)),  # red
    ((0.0, 0.0), (0.125, 0.0), (0.375, 1.0), (0.64, 1.0), (0.91, 0.0),
     (1.0, 0.0)),  # green
    ((0.0, 0.5), (0.11, 1.0), (0.34, 1.0), (0.65, 0.0), (1.0, 0.0)),  # blue
)
_JET_ENTRIES = 256
_JET_TABLE = np.stack(
    [np.interp(np.linspace(0.0, 1.0, _JET_ENTRIES), *zip(*segments))
     for segments in _JET_SEGMENTS], axis=-1).astype(np.float32)


def jet(values: tf.Tensor) -> tf.Tensor:
  """[..] in [0, 1] -> [.., 3] RGB in [0, 1], as matplotlib's 'jet'."""
  index = tf.cast(tf.clip_by_value(values, 0.0, 1.0) * _JET_ENTRIES, tf.int32)
  return tf.gather(tf.constant(_JET_TABLE),
                   tf.minimum(index, _JET_ENTRIES - 1))


def overlay(images: tf.Tensor, heatmap: tf.Tensor) -> tf.Tensor:
  """uint8 [batch, S, S, 3]: the jet heat map blended over the images."""
  blended = (OVERLAY_ALPHA * 255.0 * jet(heatmap)
             + (1.0 - OVERLAY_ALPHA) * tf.cast(images, tf.float32))
  return tf.cast(tf.clip_by_value(tf.round(blended), 0.0, 255.0), tf.uint8)


def overlay_png(images: tf.Tensor, heatmap: tf.Tensor) -> tf.Tensor:
  """string [batch]: each overlay PNG-encoded, ready to save as a file."""
  return tf.map_fn(tf.io.encode_png, overlay(images, heatmap),
                   fn_output_signature=tf.string)
