"""Grad-CAM (Selvaraju et al. 2017) and HiResCAM for every model of the zoo.

One implementation, used by the `gradcam` serving signature (in the graph)
and by reports (eagerly on a trained Keras model):

  gradcam:  heatmap = normalize(ReLU(sum_k mean_hw(d score / d A_k) * A_k))
  hirescam: heatmap = normalize(ReLU(sum_k (d score / d A_k) * A_k))

where A is the last convolutional feature map and `score` the explained
class's logit, the output layer's input to its sigmoid or softmax, as in the
Grad-CAM paper: z for class 1 of a binary model, -z (the logit of 1 - p)
for class 0. For a sigmoid this is the gradient of the probability (the
sigmoid output for class 1, its complement for class 0) divided by
p (1 - p) > 0, which the normalisation cancels; but it does not vanish when
a confident model's p rounds to 1 in float32, where the probability's
gradient is exactly 0 and the map would be blank. The map is upsampled to
the model's input size and scaled to [0, 1] per image.

Upsampling puts each feature cell at the centre of its receptive field
(feature_geometry), not spread evenly over the image as an image resize
would: the thesis CNN's unpadded convolutions leave its conv4_1 cells
covering pixels 24.5..64.5 of a 96-px input at a stride of 8, which a plain
resize would stretch to 8..88 and so draw the evidence off the lesion.

HiResCAM (Draelos & Carin 2020) keeps the gradient at each location instead
of averaging it over the map. The thesis's models end in Flatten + Dense,
which gives every location its own weights; averaging them away lets a
location that pushed the score down still light up. For a model that pools
globally before its head the two are the same map. Both come from the same
gradient, so offering both costs one extra multiply; HiResCAM is the
default (DEFAULT_METHOD).
"""

import dataclasses
import math
from typing import Optional, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras as keras

from schema import contract

OVERLAY_ALPHA = 0.4  # weight of the heat map over the X-ray
METHODS = contract.GRADCAM_METHODS
DEFAULT_METHOD = contract.DEFAULT_GRADCAM_METHOD


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
  """A model with three outputs: the target feature map, the output layer's
  input (for the logits) and the predictions."""
  layer = model.get_layer(layer_name or find_target_layer(model))
  if len(layer.output.shape) != 4:
    raise ValueError(f"Grad-CAM layer {layer.name} outputs shape "
                     f"{layer.output.shape}, not a [batch, h, w, channels] map")
  head = model.layers[-1]
  activation = getattr(head, "activation", None)
  if not (isinstance(head, keras.layers.Dense) and activation in (
      keras.activations.sigmoid, keras.activations.softmax)):
    raise ValueError(f"Grad-CAM needs the model's last layer to be a Dense "
                     f"layer with a sigmoid or softmax; {head.name} is a "
                     f"{type(head).__name__}")
  return keras.Model(model.inputs, [layer.output, head.input, model.output],
                     name=f"{model.name}_gradcam")


def _logits(cam_model: keras.Model, head_input: tf.Tensor) -> tf.Tensor:
  """[batch, classes]: the logit of every class (binary: [-z, z])."""
  head = cam_model.get_layer(cam_model.output_names[-1])
  logits = tf.matmul(tf.cast(head_input, tf.float32),
                     tf.cast(head.kernel, tf.float32))
  if head.use_bias:
    logits += tf.cast(head.bias, tf.float32)
  return tf.concat([-logits, logits], -1) if logits.shape[-1] == 1 else logits


def gradcam(cam_model: keras.Model, images: tf.Tensor,
            class_index: Optional[tf.Tensor] = None,
            method=DEFAULT_METHOD,
            threshold=None) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """Heat maps for a batch.

  Args:
    cam_model: from gradcam_model().
    images: float32 [batch, S, S, 3], the model's own input (0..255).
    class_index: int [batch] classes to explain; None or empty: each
      image's predicted class (a binary model's: pneumonia when its
      probability reaches `threshold`, default 0.5; else the arg-max).
    method: one of METHODS, a Python string or a string scalar tensor (the
      serving signature's input; an unknown name fails with
      InvalidArgumentError).

  Returns:
    (probabilities [batch, classes], class_id [batch] int64 -- the class
    explained, heatmap float32 [batch, S, S] in [0, 1]).
  """
  images = tf.convert_to_tensor(images, tf.float32)
  with tf.GradientTape() as tape:
    feature_map, head_input, outputs = cam_model(images, training=False)
    probabilities = class_probabilities(outputs)
    predicted = tf.argmax(probabilities, axis=-1)
    if threshold is not None and outputs.shape[-1] == 1:  # sigmoid
      predicted = tf.cast(probabilities[:, contract.POSITIVE_CLASS]
                          >= tf.cast(threshold, tf.float32), tf.int64)
    if class_index is None:
      class_id = predicted
    else:
      class_index = tf.cast(tf.reshape(class_index, [-1]), tf.int64)
      class_id = tf.cond(tf.size(class_index) > 0,
                         lambda: _checked(class_index, probabilities),
                         lambda: predicted)
    # Each image's score depends on its own feature map only (inference
    # mode), so one gradient of the sum gives every per-image gradient.
    score = tf.gather(_logits(cam_model, head_input), class_id,
                      batch_dims=1)
  grads = tf.cast(tape.gradient(score, feature_map), tf.float32)
  feature_map = tf.cast(feature_map, tf.float32)
  cam = tf.nn.relu(_weighted_map(feature_map, grads, method))
  rows, cols = upsampling_matrices(cam_model)
  cam = tf.einsum("yi,bij,xj->byx", rows, cam, cols)
  peak = tf.reduce_max(cam, axis=[1, 2], keepdims=True)
  # A map with no positive evidence stays all zero instead of dividing by 0.
  heatmap = tf.math.divide_no_nan(cam, peak)
  return probabilities, class_id, tf.clip_by_value(heatmap, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class Axis:
  """Where the cells of a feature map sit along one input axis.

  Cell i's receptive field is centred on input pixel index
  `start + i * stride`; `cells` is the feature map's length.
  """
  start: float
  stride: float
  cells: int

  def interpolation(self, pixels: int) -> np.ndarray:
    """[pixels, cells]: linear weights from cells to each input pixel.

    Pixels beyond the first or last cell centre take that cell's value,
    as an image resize clamps at its edges.
    """
    position = np.clip((np.arange(pixels) - self.start) / self.stride,
                       0.0, self.cells - 1)
    below = np.floor(position).astype(int)
    above = np.minimum(below + 1, self.cells - 1)
    weights = np.zeros((pixels, self.cells), np.float32)
    weights[np.arange(pixels), below] += 1.0 - (position - below)
    weights[np.arange(pixels), above] += position - below
    return weights


def uniform_axis(pixels: int, cells: int) -> Axis:
  """Cells spread evenly over the image: what tf.image.resize assumes."""
  return Axis(start=(pixels / cells - 1.0) / 2.0, stride=pixels / cells,
              cells=cells)


# Layers that move or scale the grid; every other layer must keep the
# spatial size (activations, normalisation, Add, preprocessing ops).
_WINDOWED = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "MaxPooling2D",
             "AveragePooling2D")


def feature_geometry(model: keras.Model,
                     layer_name: str) -> Optional[Tuple[Axis, Axis]]:
  """(rows, cols) geometry of a layer's output in the model's input pixels.

  Receptive-field arithmetic along the layer's first-input path back to the
  model input (branches that meet in an Add keep the same grid in every zoo
  model). TF 2 has no public tool for this (tf.contrib.receptive_field went
  with TF 1), hence these few lines. None when a layer on the path changes
  the grid in a way not modelled here; callers then fall back to spreading
  the cells evenly.
  """
  path = []
  layer = model.get_layer(layer_name)
  while not isinstance(layer, keras.layers.InputLayer):
    path.append(layer)
    node = layer._inbound_nodes[0]  # pylint: disable=protected-access
    inbound = node.inbound_layers
    layer = inbound[0] if isinstance(inbound, (list, tuple)) else inbound
  size = list(layer.output.shape[1:3])
  start, stride = [0.0, 0.0], [1.0, 1.0]
  for layer in reversed(path):
    kind = type(layer).__name__
    config = layer.get_config()
    if kind in _WINDOWED:
      kernel = config.get("kernel_size", config.get("pool_size"))
      strides = config["strides"] or kernel
      dilation = config.get("dilation_rate", (1, 1))
      for axis in range(2):
        span = (kernel[axis] - 1) * dilation[axis] + 1
        if config["padding"] == "same":
          out = math.ceil(size[axis] / strides[axis])
          before = max((out - 1) * strides[axis] + span - size[axis], 0) // 2
        else:
          out = (size[axis] - span) // strides[axis] + 1
          before = 0
        start[axis] += stride[axis] * ((span - 1) / 2.0 - before)
        stride[axis] *= strides[axis]
        size[axis] = out
    elif kind in ("ZeroPadding2D", "Cropping2D"):
      edges = config["padding" if kind == "ZeroPadding2D" else "cropping"]
      sign = 1 if kind == "ZeroPadding2D" else -1
      for axis in range(2):
        start[axis] -= sign * stride[axis] * edges[axis][0]
        size[axis] += sign * (edges[axis][0] + edges[axis][1])
    elif list(_spatial(layer.output)) != size:
      logging.warning("Grad-CAM: %s (%s) changes the grid in a way not "
                      "modelled; its cells are spread evenly instead",
                      layer.name, kind)
      return None
  if size != list(_spatial(model.get_layer(layer_name).output)):
    logging.warning("Grad-CAM: receptive-field arithmetic for %s gave %s; "
                    "its cells are spread evenly instead", layer_name, size)
    return None
  return tuple(Axis(start[a], stride[a], size[a]) for a in range(2))


def _spatial(tensor) -> Tuple[int, int]:
  return tuple(tensor.shape[1:3])


def upsampling_matrices(cam_model: keras.Model) -> Tuple[tf.Tensor, tf.Tensor]:
  """(rows [H, h], cols [W, w]): feature map -> input pixels, by geometry."""
  pixels = _spatial(cam_model.inputs[0])
  cells = _spatial(cam_model.outputs[0])
  geometry = feature_geometry(cam_model, cam_model.output_names[0])
  if geometry is None:
    geometry = tuple(uniform_axis(p, c) for p, c in zip(pixels, cells))
  return tuple(tf.constant(axis.interpolation(p))
               for axis, p in zip(geometry, pixels))


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
