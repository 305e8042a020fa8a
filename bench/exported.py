"""What the benchmarks read back from a finished run: the trained model.

Through the run's summary (ML Metadata), as the report reads it, not by
globbing the pipeline root.
"""

import tensorflow as tf
from tfx.utils import path_utils

from components import models
from pipeline import summary as summary_lib
from schema import layout


def model_result(output: str, task: str,
                 model: str) -> summary_lib.ModelResult:
  """The latest run's branch of `model` in the output folder."""
  return summary_lib.summarize(layout.output_paths(output).metadata,
                               layout.pipeline_name(task)).models[model]


def trained_keras_model(saved_model_dir: str, name: str, task: str,
                        image_size: int):
  """A fresh Keras model of the zoo holding an exported model's weights.

  The SavedModel keeps the Keras model's variables under their names; the
  zoo builds the same names, so the weights move across one by one.
  """
  restored = tf.saved_model.load(saved_model_dir)
  by_name = {v.name: v for v in restored.model.variables}
  model = models.build_model(name, task, image_size)
  for weight in model.weights:
    weight.assign(by_name[weight.name])
  return model


def trainer_serving_model(output: str, task: str, model: str) -> str:
  """The SavedModel the latest run's Trainer wrote for `model`."""
  return path_utils.serving_model_path(
      model_result(output, task, model).model_uri)
