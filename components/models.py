"""Keras models of the thesis (Vic, 2023), built on float pixels in [0, 255].

Every model scales its own input, so the input pipeline and every serving
signature hand it the same uint8-valued pixels that Transform stored.
"""

from typing import Dict

import tensorflow as tf
from tensorflow.python.autograph.core import config as autograph_config  # pylint: disable=g-direct-tensorflow-import

keras = tf.keras

# AutoGraph leaves `tensorflow` and `keras` code alone but not `tf_keras`,
# and transpiling its ~500 functions costs 20-40 s before the first training
# step (measured here with TF 2.16.2). Give tf_keras the rule keras has.
if not any(rule.matches("tf_keras")
           for rule in autograph_config.CONVERSION_RULES):
  autograph_config.CONVERSION_RULES = (
      (autograph_config.DoNotConvert("tf_keras"),)
      + tuple(autograph_config.CONVERSION_RULES))

CLASS_COUNTS: Dict[str, int] = {"binary": 2, "multiclass": 3}
MODELS = ("cnn", "cnn_aug")
# Models trained with the augmentation of components/augment.py.
AUGMENTED_MODELS = ("cnn_aug",)
INPUT_NAME = "image"


def head_units(task: str) -> int:
  """1 sigmoid unit for binary, one softmax unit per class otherwise."""
  return 1 if task == "binary" else CLASS_COUNTS[task]


def _head(x, task: str):
  units = head_units(task)
  return keras.layers.Dense(units,
                            activation="sigmoid" if units == 1 else "softmax",
                            name="predictions")(x)


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


def build_model(name: str, task: str, image_size: int) -> keras.Model:
  """An uncompiled model taking float32 [batch, S, S, 3] pixels in [0, 255]."""
  if task not in CLASS_COUNTS:
    raise ValueError(f"task must be one of {tuple(CLASS_COUNTS)}, got {task!r}")
  if name not in MODELS:
    raise ValueError(f"model must be one of {MODELS}, got {name!r}")
  inputs = keras.Input((image_size, image_size, 3), name=INPUT_NAME)
  outputs = _thesis_cnn(inputs, task, dropout=0.5 if name == "cnn_aug" else 0)
  return keras.Model(inputs, outputs, name=name)


def compile_model(model: keras.Model, task: str, learning_rate: float) -> None:
  """RMSprop as in the thesis; loss and metrics by task."""
  if task == "binary":
    loss = keras.losses.BinaryCrossentropy()
    metrics = [keras.metrics.BinaryAccuracy(name="accuracy"),
               keras.metrics.AUC(name="auc")]
  else:
    loss = keras.losses.SparseCategoricalCrossentropy()
    metrics = [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]
  model.compile(optimizer=keras.optimizers.RMSprop(learning_rate), loss=loss,
                metrics=metrics)
