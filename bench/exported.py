"""Exported models for the benchmarks (and the serving tests).

A finished run's trained model, read back through the run's summary (ML
Metadata), as the report reads it, not by globbing the pipeline root; or
an untrained model of the zoo exported as the Trainer exports it
(`export_test_model`): weights do not change a model's speed.
"""

import atexit
import os
import shutil
import tempfile

import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata
from tensorflow_transform.tf_metadata import schema_utils
from tfx.utils import path_utils

from components import models
from components import transform
from pipeline import summary as summary_lib
from schema import contract
from schema import layout
from serving.export import signatures

SMALLEST_CNN_SIZE = 58  # the smallest input the thesis CNN takes
_transform_outputs = {}


def transform_output(image_size: int = SMALLEST_CNN_SIZE
                     ) -> tft.TFTransformOutput:
  """A real Transform graph at image_size px, built once per process."""
  if image_size not in _transform_outputs:
    root = tempfile.mkdtemp(prefix="tft-")
    atexit.register(shutil.rmtree, root, True)
    metadata = dataset_metadata.DatasetMetadata(
        schema_utils.schema_from_feature_spec({
            contract.IMAGE_KEY: tf.io.FixedLenFeature([1], tf.string),
            contract.LABEL_KEY: tf.io.FixedLenFeature([1], tf.int64)}))
    # preprocessing_fn has no analyzer: one image is enough to trace it.
    image = tf.io.encode_png(tf.zeros([20, 30, 1], tf.uint8)).numpy()
    with tft_beam.Context(temp_dir=os.path.join(root, "tmp")):
      transform_fn = (([{contract.IMAGE_KEY: [image],
                         contract.LABEL_KEY: [0]}], metadata)
                      | tft_beam.AnalyzeDataset(
                          lambda inputs: transform.preprocessing_fn(
                              inputs, transform.make_custom_config(
                                  image_size))))
      _ = transform_fn | tft_beam.WriteTransformFn(os.path.join(root, "graph"))
    _transform_outputs[image_size] = tft.TFTransformOutput(
        os.path.join(root, "graph"))
  return _transform_outputs[image_size]


def export_test_model(base_dir: str, name: str, version: int,
                      task: str = "binary",
                      image_size: int = SMALLEST_CNN_SIZE,
                      model: str = "cnn") -> str:
  """Exports an untrained model of the zoo (the thesis CNN by default, at
  its smallest size) to base_dir/name/version; its path.

  Through a real Transform graph and serving.signatures, like the Trainer;
  written aside and renamed into place, like the Pusher.
  """
  model_dir = os.path.join(base_dir, name)
  os.makedirs(model_dir, exist_ok=True)
  staging = os.path.join(model_dir, f".staging-{version}")
  signatures.export_serving_model(
      models.build_model(model, task, image_size),
      transform_output(image_size), staging, task, image_size)
  os.rename(staging, os.path.join(model_dir, str(version)))
  return os.path.join(model_dir, str(version))


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
