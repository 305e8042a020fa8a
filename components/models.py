"""Keras models of the thesis (Vic, 2023), built on float pixels in [0, 255].

Every model scales its own input, so the input pipeline and every serving
signature hand it the same uint8-valued pixels that Transform stored.

Transfer models (VGG16, MobileNetV2, ResNet50V2) are one flat functional
graph: the base is built on the model's own input tensor and the head on the
base's output, never a base nested as a layer, so Grad-CAM can reach the last
conv layer. Each base gets its own ImageNet preprocessing inside the model.
"""

import os
import shutil
import tempfile
from typing import Dict, List, Optional

import tensorflow as tf
from tensorflow.python.autograph.core import config as autograph_config  # pylint: disable=g-direct-tensorflow-import
from tfx.dsl.io import fileio

from schema import contract

keras = tf.keras

# AutoGraph leaves `tensorflow` and `keras` code alone but not `tf_keras`,
# whose ~500 functions it would transpile before the first training step
# for nothing: give tf_keras the rule keras has. Every model is built here,
# so this is the one place the rule is set.
if not any(rule.matches("tf_keras")
           for rule in autograph_config.CONVERSION_RULES):
  autograph_config.CONVERSION_RULES = (
      (autograph_config.DoNotConvert("tf_keras"),)
      + tuple(autograph_config.CONVERSION_RULES))

# Transfer bases: Keras constructor, its preprocess_input, and where Keras
# publishes the ImageNet no-top weights (_KERAS_WEIGHTS_URL/folder/file).
TRANSFER_BASES = {
    contract.VGG16: (keras.applications.VGG16,
              keras.applications.vgg16.preprocess_input,
              "vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"),
    contract.MOBILENET_V2: (keras.applications.MobileNetV2,
                     keras.applications.mobilenet_v2.preprocess_input,
                     "mobilenet_v2/mobilenet_v2_weights_tf_dim_ordering_tf_"
                     "kernels_1.0_{size}_no_top.h5"),
    contract.RESNET50_V2: (keras.applications.ResNet50V2,
                    keras.applications.resnet_v2.preprocess_input,
                    "resnet/resnet50v2_weights_tf_dim_ordering_tf_kernels_"
                    "notop.h5"),
}
_KERAS_WEIGHTS_URL = ("https://storage.googleapis.com/tensorflow/"
                      "keras-applications")
MODELS = contract.MODELS
THESIS_CNNS = (contract.CNN, contract.CNN_AUG)
assert set(MODELS) == set(THESIS_CNNS) | set(TRANSFER_BASES)
# Smallest input each model can take: the thesis CNN's valid convolutions and
# four poolings need 58 px; Keras's bases need 32.
MIN_IMAGE_SIZE = {name: 58 if name in THESIS_CNNS else 32 for name in MODELS}
# Models trained with the augmentation of components/augment.py.
AUGMENTED_MODELS = (contract.CNN_AUG,)
INPUT_NAME = "image"


def head_units(task: str) -> int:
  """1 sigmoid unit for binary, one softmax unit per class otherwise."""
  return 1 if task == contract.BINARY else contract.class_count(task)


def _head(x, task: str):
  units = head_units(task)
  # float32 whatever the mixed-precision policy: stable sigmoid/softmax.
  return keras.layers.Dense(units,
                            activation="sigmoid" if units == 1 else "softmax",
                            dtype="float32", name="predictions")(x)


def _thesis_cnn(inputs, task: str, dropout: float):
  """Conv 32 -> pool -> 2x Conv 64 -> pool -> 2x Conv 128 -> pool -> Conv 256
  -> pool -> Flatten -> [Dropout] -> Dense 512 -> head; 3x3 valid convs, L2
  1e-3 on all but the first (16,433,665 parameters at 224 px, binary)."""
  l2 = keras.regularizers.l2(1e-3)
  x = keras.layers.Rescaling(1.0 / 255, name="rescale")(inputs)
  x = keras.layers.Conv2D(32, 3, activation="relu", name="conv1")(x)
  x = keras.layers.MaxPooling2D(name="pool1")(x)
  for block, (filters, repeats) in enumerate(((64, 2), (128, 2), (256, 1)),
                                             start=2):
    for i in range(repeats):
      x = keras.layers.Conv2D(filters, 3, activation="relu",
                              kernel_regularizer=l2,
                              name=f"conv{block}_{i + 1}")(x)
    x = keras.layers.MaxPooling2D(name=f"pool{block}")(x)
  x = keras.layers.Flatten(name="flatten")(x)
  if dropout:
    x = keras.layers.Dropout(dropout, name="dropout")(x)
  x = keras.layers.Dense(512, activation="relu", name="dense")(x)
  return _head(x, task)


class WeightsUnavailableError(RuntimeError):
  """ImageNet weights were asked for and can be neither downloaded nor found."""


def keras_home() -> str:
  """KERAS_HOME, else ~/.keras: where Keras caches downloaded weights."""
  return os.environ.get("KERAS_HOME",
                        os.path.join(os.path.expanduser("~"), ".keras"))


def _imagenet_file(name: str, image_size: int) -> str:
  """'folder/file name' of a base's ImageNet weights at Keras's site."""
  # MobileNetV2 has weights for these sizes and falls back to 224 otherwise.
  size = image_size if image_size in (96, 128, 160, 192, 224) else 224
  return TRANSFER_BASES[name][2].format(size=size)


def imagenet_weights(name: str, image_size: int) -> str:
  """Local path of the base's ImageNet weights: Keras's cache or download.

  tf_keras's applications cache under ~/.keras whatever KERAS_HOME says, so
  the file is fetched here with Keras's get_file into KERAS_HOME/models.
  """
  remote = _imagenet_file(name, image_size)
  file_name = os.path.basename(remote)
  try:
    return keras.utils.get_file(file_name, f"{_KERAS_WEIGHTS_URL}/{remote}",
                                cache_subdir="models", cache_dir=keras_home())
  except Exception as e:  # pylint: disable=broad-except
    expected = os.path.join(keras_home(), "models", file_name)
    raise WeightsUnavailableError(
        f"ImageNet weights for {name} could not be downloaded or found in "
        f"Keras's cache ({e}). Put the file {file_name} at {expected} (set "
        "KERAS_HOME to move that folder), or pass --weights PATH with a "
        "weights file, or --weights none to train from random "
        "initialisation.") from e


def _local_weights(path: str) -> str:
  """A local copy of a weights file (h5 needs one), e.g. from gs://."""
  if os.path.exists(path):
    return path
  if not fileio.exists(path):
    raise FileNotFoundError(f"weights file not found: {path}")
  local = os.path.join(tempfile.mkdtemp(prefix="cxr-weights-"),
                       os.path.basename(path))
  with fileio.open(path, "rb") as src, open(local, "wb") as dst:
    shutil.copyfileobj(src, dst)
  return local


def _transfer(inputs, name: str, task: str, image_size: int,
              weights: Optional[str]):
  """Frozen base + Flatten + Dense 256 ReLU + head, as one flat graph."""
  constructor, preprocess, _ = TRANSFER_BASES[name]
  x = preprocess(inputs)
  if weights in (None, "none"):
    path = None
  elif weights == "imagenet":
    path = imagenet_weights(name, image_size)
  else:
    path = _local_weights(weights)
  base = constructor(include_top=False, weights=path, input_tensor=x,
                     input_shape=(image_size, image_size, 3))
  base.trainable = False
  x = keras.layers.Flatten(name="flatten")(base.output)
  x = keras.layers.Dense(256, activation="relu", name="dense")(x)
  return _head(x, task)


def build_model(name: str, task: str, image_size: int,
                weights: Optional[str] = "none") -> keras.Model:
  """An uncompiled model taking float32 [batch, S, S, 3] pixels in [0, 255].

  `weights` matters for transfer models only: "imagenet" (Keras's download
  and cache), "none", or a path to a weights file (local or gs://).
  """
  contract.check_task(task)
  if name not in MODELS:
    raise ValueError(f"model must be one of {MODELS}, got {name!r}")
  if image_size < MIN_IMAGE_SIZE[name]:
    raise ValueError(f"{name} needs images of at least "
                     f"{MIN_IMAGE_SIZE[name]} px, got {image_size}")
  inputs = keras.Input((image_size, image_size, 3), name=INPUT_NAME)
  if name in TRANSFER_BASES:
    outputs = _transfer(inputs, name, task, image_size, weights)
  else:
    outputs = _thesis_cnn(inputs, task,
                          dropout=0.5 if name == contract.CNN_AUG else 0)
  return keras.Model(inputs, outputs, name=name)


_HEAD_LAYERS = ("dense", "predictions")


def base_layers(model: keras.Model) -> List[keras.layers.Layer]:
  """Weighted layers of a transfer model's base, bottom to top.

  BatchNormalization layers are left out: they stay frozen (in inference
  mode) while fine-tuning, as Keras's transfer-learning guide advises.
  """
  if model.name not in TRANSFER_BASES:
    raise ValueError(f"{model.name} has no pretrained base to fine-tune")
  return [layer for layer in model.layers
          if layer.weights and layer.name not in _HEAD_LAYERS
          and not isinstance(layer, keras.layers.BatchNormalization)]


def unfreeze_top(model: keras.Model, n: int) -> List[str]:
  """Makes the top `n` base layers trainable; returns their names."""
  layers = base_layers(model)
  if not 0 < n <= len(layers):
    raise ValueError(f"fine-tune layers must be 1..{len(layers)} for "
                     f"{model.name}, got {n}")
  for layer in layers[-n:]:
    layer.trainable = True
  return [layer.name for layer in layers[-n:]]


def parameter_counts(model: keras.Model) -> Dict[str, int]:
  trainable = int(sum(tf.size(w).numpy() for w in model.trainable_weights))
  return {"total": model.count_params(), "trainable": trainable}


def compile_model(model: keras.Model, task: str, learning_rate: float,
                  xla: bool = False) -> None:
  """RMSprop as in the thesis; loss and metrics by task; optional XLA."""
  if task == contract.BINARY:
    loss = keras.losses.BinaryCrossentropy()
    metrics = [keras.metrics.BinaryAccuracy(name="accuracy"),
               keras.metrics.AUC(name="auc")]
  else:
    loss = keras.losses.SparseCategoricalCrossentropy()
    metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
  model.compile(optimizer=keras.optimizers.RMSprop(learning_rate), loss=loss,
                metrics=metrics, jit_compile=xla)
