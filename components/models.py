"""Keras models of the zoo, built on float pixels in [0, 255], and how each
is trained (its Recipe).

The thesis's five (Vic, 2023) are reproduced as published. RESNET_SMALL is
beyond the thesis: a small residual network trained from scratch with a
recipe of its own (Adam, warm-up + cosine decay, label smoothing).

Every model scales its own input, so the input pipeline and every serving
signature hand it the same uint8-valued pixels that Transform stored.

Transfer models (VGG16, MobileNetV2, ResNet50V2) are one flat functional
graph: the base is built on the model's own input tensor and the head on the
base's output, never a base nested as a layer, so Grad-CAM can reach the last
conv layer. Each base gets its own ImageNet preprocessing inside the model.
"""

import dataclasses
import math
import os
import shutil
import tempfile
from typing import Dict, List, Optional

import tensorflow as tf
from tensorflow.python.autograph.core import config as autograph_config  # pylint: disable=g-direct-tensorflow-import
from tfx.dsl.io import fileio

from schema import contract
from schema import settings as settings_lib

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
# Trained from scratch beyond the thesis, each with its own Recipe.
RESIDUAL_MODELS = (contract.RESNET_SMALL,)
assert set(MODELS) == (set(THESIS_CNNS) | set(TRANSFER_BASES)
                       | set(RESIDUAL_MODELS))
# Smallest input each model can take: the thesis CNN's valid convolutions and
# four poolings need 58 px; Keras's bases need 32, and the residual
# network's 'same' convolutions take the settings' floor of 32 too.
MIN_IMAGE_SIZE = {name: 58 if name in THESIS_CNNS else 32 for name in MODELS}
# Models trained with the augmentation of components/augment.py.
AUGMENTED_MODELS = (contract.CNN_AUG, contract.RESNET_SMALL)
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


# RESNET_SMALL: (filters, stride) of its basic residual blocks after the stem.
RESNET_SMALL_STEM = 32  # filters of the 5x5 stride-2 stem convolution
RESNET_SMALL_BLOCKS = ((32, 1), (64, 2), (128, 2), (256, 2), (256, 2))
RESNET_SMALL_DROPOUT = 0.3


def _conv_bn(x, filters: int, kernel: int, stride: int, name: str,
             relu: bool = True):
  """Conv (no bias: the batch norm's offset replaces it) -> BN [-> ReLU]."""
  x = keras.layers.Conv2D(filters, kernel, strides=stride, padding="same",
                          use_bias=False, kernel_initializer="he_normal",
                          name=f"{name}_conv")(x)
  x = keras.layers.BatchNormalization(name=f"{name}_bn")(x)
  return keras.layers.ReLU(name=f"{name}_relu")(x) if relu else x


def _residual_block(x, filters: int, stride: int, name: str):
  """He et al. 2016's basic block: two 3x3 conv-BN, the second without its
  ReLU, added to the input (through a 1x1 conv-BN where the shape changes),
  then ReLU. The residual branch is the Add's first input: Grad-CAM's
  receptive-field arithmetic follows first inputs (serving/export/gradcam)."""
  residual = _conv_bn(x, filters, 3, stride, f"{name}_1")
  residual = _conv_bn(residual, filters, 3, 1, f"{name}_2", relu=False)
  shortcut = x
  if stride != 1 or x.shape[-1] != filters:
    shortcut = _conv_bn(x, filters, 1, stride, f"{name}_shortcut",
                        relu=False)
  x = keras.layers.Add(name=f"{name}_add")([residual, shortcut])
  return keras.layers.ReLU(name=f"{name}_out")(x)


def _resnet_small(inputs, task: str):
  """Rescale -> 5x5/2 conv-BN-ReLU (32) -> basic blocks of 32, 64, 128, 256,
  256 filters (stride 2 from the second) -> global average pool -> Dropout
  0.3 -> head. The last block's output (block5_out) is the last spatial
  map, the one Grad-CAM explains; the global pool makes HiResCAM and
  Grad-CAM the same map for this model."""
  x = keras.layers.Rescaling(1.0 / 255, name="rescale")(inputs)
  x = _conv_bn(x, RESNET_SMALL_STEM, 5, 2, "stem")
  for block, (filters, stride) in enumerate(RESNET_SMALL_BLOCKS, start=1):
    x = _residual_block(x, filters, stride, f"block{block}")
  x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
  x = keras.layers.Dropout(RESNET_SMALL_DROPOUT, name="dropout")(x)
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
  elif name == contract.RESNET_SMALL:
    outputs = _resnet_small(inputs, task)
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


# --- how each model is trained -------------------------------------------

RMSPROP, ADAM = settings_lib.RMSPROP, settings_lib.ADAM
CONSTANT, COSINE = settings_lib.CONSTANT, settings_lib.COSINE
FLOAT32, BFLOAT16 = settings_lib.FLOAT32, settings_lib.BFLOAT16
# A recipe's compute dtype that is bfloat16 where the hardware computes it
# (native_bfloat16) and float32 elsewhere, where bfloat16 is emulated and
# slower, or unsupported (the T4 GPU of the cloud Trainer).
BFLOAT16_WHERE_NATIVE = "bfloat16 where native"


@dataclasses.dataclass(frozen=True)
class Recipe:
  """How a model is trained: its optimizer, learning rate and schedule,
  label smoothing and compute dtype. Every TrainingSettings field of the
  same name overrides it when the user gives one (training_recipe)."""
  optimizer: str = RMSPROP
  learning_rate: float = 5e-4
  lr_schedule: str = CONSTANT
  warmup_epochs: int = 0
  label_smoothing: float = 0.0
  mixed_precision: str = FLOAT32

  def learning_rate_at(self, epoch: int, epochs: int) -> float:
    """The rate of 0-based `epoch` of `epochs`.

    cosine: epochs 0 .. w-1 climb linearly to the full rate in w + 1 equal
    steps (epoch e at (e + 1) / (w + 1) of it), then the rate follows half a
    cosine from the full rate at epoch w down to 0 at epoch `epochs`, one
    past the last, so every epoch trains.
    """
    if self.lr_schedule == CONSTANT:
      return self.learning_rate
    warmup = min(self.warmup_epochs, epochs - 1)
    if epoch < warmup:
      return self.learning_rate * (epoch + 1) / (warmup + 1)
    progress = (epoch - warmup) / (epochs - warmup)
    return self.learning_rate * 0.5 * (1.0 + math.cos(math.pi * progress))


# The thesis's Table 1: RMSprop at a constant 5e-4, no smoothing, float32.
THESIS_RECIPE = Recipe()
# Its from-scratch CNNs train in mixed bfloat16 where the CPU computes it
# natively: as accurate over seeds and several times faster (BENCHMARKS.md).
# The transfer models keep float32: not measured in bfloat16.
THESIS_CNN_RECIPE = Recipe(mixed_precision=BFLOAT16_WHERE_NATIVE)
RECIPES: Dict[str, Recipe] = {
    **{name: THESIS_RECIPE for name in contract.THESIS_MODELS},
    **{name: THESIS_CNN_RECIPE for name in (contract.CNN, contract.CNN_AUG)},
    contract.RESNET_SMALL: Recipe(
        optimizer=ADAM, learning_rate=1e-3, lr_schedule=COSINE,
        warmup_epochs=2, label_smoothing=0.05,
        mixed_precision=BFLOAT16_WHERE_NATIVE),
}
assert set(RECIPES) == set(MODELS)


def native_bfloat16() -> bool:
  """Whether this machine trains bfloat16 in hardware: no GPU visible, and a
  CPU with AMX-BF16 or AVX-512 BF16 (the flags Linux lists in
  /proc/cpuinfo; elsewhere False)."""
  if tf.config.list_physical_devices("GPU"):
    return False
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      flags = set(f.read().split())
  except OSError:
    return False
  return bool(flags & {"amx_bf16", "avx512_bf16"})


def training_recipe(name: str, training: settings_lib.TrainingSettings,
                    native_bf16: Optional[bool] = None) -> Recipe:
  """The model's recipe with every recipe setting the user gave over it.

  native_bf16: whether bfloat16 is native here (default: native_bfloat16()),
  for a recipe that takes bfloat16 only where it is.
  """
  own = RECIPES[name]
  given = {field.name: getattr(training, field.name)
           for field in dataclasses.fields(Recipe)
           if getattr(training, field.name) not in (None, "")}
  recipe = dataclasses.replace(own, **given)
  if recipe.mixed_precision == BFLOAT16_WHERE_NATIVE:
    native = native_bfloat16() if native_bf16 is None else native_bf16
    recipe = dataclasses.replace(
        recipe, mixed_precision=BFLOAT16 if native else FLOAT32)
  return recipe


def learning_rate_callback(recipe: Recipe, epochs: int,
                           first_epoch: int = 0
                           ) -> Optional[keras.callbacks.Callback]:
  """Sets the optimizer's rate at each epoch's start; None if constant.

  Per epoch rather than a per-step LearningRateSchedule: a per-step
  schedule needs the run's step count up front, and the Trainer's tfxio
  dataset does not know its length until one pass over the data is done.
  first_epoch: epochs already done before this phase, which the schedule
  does not count (Keras passes the absolute epoch).
  """
  if recipe.lr_schedule == CONSTANT:
    return None
  return keras.callbacks.LearningRateScheduler(
      lambda epoch, _: recipe.learning_rate_at(epoch - first_epoch, epochs))


def _smoothed_sparse_crossentropy(classes: int, smoothing: float):
  """Categorical cross-entropy with label smoothing on sparse int labels.

  tf-keras's SparseCategoricalCrossentropy has no label_smoothing, so the
  labels are made one-hot here, inside the loss, and the input pipeline and
  metrics keep their sparse labels.
  """
  def smoothed_crossentropy(y_true, y_pred):
    one_hot = tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), classes)
    return keras.losses.categorical_crossentropy(
        one_hot, y_pred, label_smoothing=smoothing)
  return smoothed_crossentropy


def compile_model(model: keras.Model, task: str, learning_rate: float,
                  xla: bool = False, optimizer: str = RMSPROP,
                  label_smoothing: float = 0.0) -> None:
  """Optimizer (the thesis's RMSprop by default), loss with optional label
  smoothing and metrics by task; optional XLA."""
  if task == contract.BINARY:
    loss = keras.losses.BinaryCrossentropy(label_smoothing=label_smoothing)
    metrics = [keras.metrics.BinaryAccuracy(name="accuracy"),
               keras.metrics.AUC(name="auc")]
  else:
    loss = keras.losses.SparseCategoricalCrossentropy()
    if label_smoothing:
      loss = _smoothed_sparse_crossentropy(contract.class_count(task),
                                           label_smoothing)
    metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
  optimizers = {RMSPROP: keras.optimizers.RMSprop, ADAM: keras.optimizers.Adam}
  model.compile(optimizer=optimizers[optimizer](learning_rate), loss=loss,
                metrics=metrics, jit_compile=xla)
