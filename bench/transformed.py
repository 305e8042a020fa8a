"""Real Transform output for the input and training benchmarks, and the
thesis's Keras loader over the same JPEGs.

`prepare(root, n, image_size)` puts n real chest X-rays (harness.real_images)
into a temporary folder in the Kaggle binary layout (train/{NORMAL,PNEUMONIA}
plus a small test/), runs the project's ImageExampleGen executor and the
TFX Transform executor with components.transform.preprocessing_fn over it,
as the pipeline wires them, and returns what the Trainer's run_fn would get:
the transformed example files, the TFTransformOutput and a DataAccessor.
`trainer_input` is then components.trainer.input_fn itself, and
`thesis_flow` the thesis's ImageDataGenerator.flow_from_directory on the
same train/ folder. Both read every train JPEG: the Trainer side reads the
train and eval splits, which ImageExampleGen carved from that folder.

`trainer_model` builds and compiles a model as run_fn does.

Used by bench/input.py, bench/starvation.py and bench/train.py.
"""

import dataclasses
import json
import os
import shutil
import time
from typing import List, Optional

# The project first: schema/__init__.py selects Keras 2 before TensorFlow.
from components import image_example_gen  # pylint: disable=g-bad-import-order
from components import models
from components import trainer
from components import transform
from pipeline import runner
import schema
from schema import contract
from schema import layout
from schema import settings
import tensorflow as tf  # pylint: disable=g-bad-import-order
import tensorflow_transform as tft
from tfx.components.trainer import fn_args_utils
from tfx.components.transform import executor as transform_executor
from tfx.components.util import tfxio_utils
from tfx.proto import transform_pb2
from tfx.types import artifact_utils
from tfx.types import standard_artifacts
from tfx.types import standard_component_specs as specs
from tfx.utils import io_utils
from tfx.utils import proto_utils

from bench import harness

BATCH_SIZE = 32  # the thesis's and the Trainer's default
# The thesis's ImageDataGenerator, as components/augment.py reproduces it.
THESIS_AUGMENTATION = dict(
    rotation_range=40, width_shift_range=0.2, height_shift_range=0.2,
    shear_range=0.2, zoom_range=0.3, horizontal_flip=True,
    fill_mode="nearest")
THESIS_RESCALE = 1.0 / 255
TEST_IMAGES = 4  # ImageExampleGen's binary layout wants a test/ folder
# One worker: the benchmarks measure training and input, not Beam; the
# setup's time is printed apart.
_BEAM_ARGS = runner.beam_args("in_memory")


@dataclasses.dataclass
class Transformed:
  """What the Trainer's run_fn would receive for a folder of real JPEGs."""
  train_dir: str  # the JPEGs, in class folders (flow_from_directory's input)
  count: int  # JPEGs under train_dir, each one transformed example
  image_size: int
  files: List[str]  # patterns of the transformed train and eval splits
  output: tft.TFTransformOutput
  data_accessor: fn_args_utils.DataAccessor
  seconds: float  # ingestion + Transform


def _place(paths: List[str], split_dir: str) -> None:
  """Hard links (copies across file systems) of real images under
  split_dir/<class>/: ingestion quarantines symbolic links."""
  for path in paths:
    target = os.path.join(split_dir, os.path.basename(os.path.dirname(path)),
                          os.path.basename(path))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    try:
      os.link(path, target)
    except OSError:
      shutil.copyfile(path, target)


def jpeg_folder(root: str, n: int, seed: int = 0) -> str:
  """root/chest_xray with n real train JPEGs and TEST_IMAGES test ones."""
  folder = os.path.join(root, "chest_xray")
  _place(harness.real_images("chest_xray/train/*/*.jpeg", n, seed),
         os.path.join(folder, "train"))
  _place(harness.real_images("chest_xray/test/*/*.jpeg", TEST_IMAGES, seed),
         os.path.join(folder, "test"))
  return folder


def _ingest(folder: str, out: str) -> standard_artifacts.Examples:
  """The project's ImageExampleGen executor on the folder (binary task)."""
  examples = standard_artifacts.Examples()
  examples.uri = os.path.join(out, "examples")
  quarantine = image_example_gen.ImageQuarantine()
  quarantine.uri = os.path.join(out, "quarantine")
  executor = image_example_gen.Executor(image_example_gen.Executor.Context(
      beam_pipeline_args=_BEAM_ARGS, tmp_dir=os.path.join(out, "tmp")))
  executor.Do({}, {"examples": [examples], "quarantine": [quarantine]},
              {"input_base": folder, "task": contract.BINARY, "source": "",
               "eval_percent": settings.RunSettings().eval_percent,
               "split_salt": image_example_gen.DEFAULT_SPLIT_SALT,
               "input_fingerprint": ""})
  counts = json.loads(examples.get_string_custom_property(
      layout.COUNTS_PROPERTY))
  if counts.get("quarantined"):
    raise RuntimeError(f"ingestion quarantined images: {counts}")
  return examples


def _transform(examples, out: str, image_size: int):
  """The TFX Transform executor with the pipeline's preprocessing_fn, splits
  and custom_config (pipeline/pipeline.py)."""
  schema_artifact = standard_artifacts.Schema()
  schema_artifact.uri = os.path.dirname(schema.schema_path(contract.BINARY))
  graph = standard_artifacts.TransformGraph()
  graph.uri = os.path.join(out, "transform_graph")
  transformed = standard_artifacts.Examples()
  transformed.uri = os.path.join(out, "transformed_examples")
  executor = transform_executor.Executor(transform_executor.Executor.Context(
      beam_pipeline_args=_BEAM_ARGS, tmp_dir=os.path.join(out, "tmp")))
  executor.Do(
      {specs.EXAMPLES_KEY: [examples], specs.SCHEMA_KEY: [schema_artifact]},
      {specs.TRANSFORM_GRAPH_KEY: [graph],
       specs.TRANSFORMED_EXAMPLES_KEY: [transformed]},
      {specs.PREPROCESSING_FN_KEY: "components.transform.preprocessing_fn",
       specs.CUSTOM_CONFIG_KEY: json.dumps(
           transform.make_custom_config(image_size)),
       specs.SPLITS_CONFIG_KEY: proto_utils.proto_to_json(
           transform_pb2.SplitsConfig(
               analyze=[contract.TRAIN],
               transform=[contract.TRAIN, contract.EVAL])),
       specs.DISABLE_STATISTICS_KEY: 1})
  return graph, transformed


def prepare(root: str, n: int, image_size: int, seed: int = 0) -> Transformed:
  """n real JPEGs under root, ingested and transformed at image_size."""
  start = time.perf_counter()
  folder = jpeg_folder(root, n, seed)
  examples = _ingest(folder, os.path.join(root, "ingest"))
  graph, transformed = _transform(examples, os.path.join(root, "transform"),
                                  image_size)
  # As fn_args_utils.get_common_fn_args builds the Trainer's arguments.
  files = [io_utils.all_files_pattern(uri)
           for split in (contract.TRAIN, contract.EVAL)
           for uri in artifact_utils.get_split_uris([transformed], split)]
  accessor = fn_args_utils.DataAccessor(
      tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact(
          [transformed], []),
      record_batch_factory=None, data_view_decode_fn=None)
  train_dir = os.path.join(folder, "train")
  count = sum(len(names) for _, _, names in os.walk(train_dir))
  return Transformed(train_dir, count, image_size, files,
                     tft.TFTransformOutput(graph.uri), accessor,
                     time.perf_counter() - start)


def trainer_input(data: Transformed, augmented: bool, seed: int = 42,
                  batch_size: int = BATCH_SIZE,
                  pixel_cache_mb: Optional[int] = None) -> tf.data.Dataset:
  """The Trainer's training input (components.trainer.input_fn): one pass
  per iterator, shuffled, augmented when `augmented`, float32 pixels in
  [0, 255]. Build it once and iterate it once per epoch, as Keras's fit
  does: with the default pixel_cache_mb (the Trainer's) the first pass
  keeps the decoded pixels in memory when they fit; 0 reads the files on
  every pass."""
  if pixel_cache_mb is None:
    pixel_cache_mb = settings.TrainingSettings().pixel_cache_mb
  # Benchmarks iterate it for several epochs.
  kept, _ = trainer.pixel_cache_plan(data.files, [], data.image_size,
                                     pixel_cache_mb, train_epochs=2)
  return trainer.input_fn(data.files, data.data_accessor, data.output,
                          batch_size, data.image_size, train=True,
                          augmented=augmented, seed=seed,
                          cached_examples=kept)


def thesis_flow(data: Transformed, augmented: bool = True,
                rescale: bool = True, seed: int = 42,
                batch_size: int = BATCH_SIZE):
  """The thesis's loader: ImageDataGenerator(augmentation, rescale 1/255)
  .flow_from_directory on the same JPEGs, binary labels, shuffled."""
  generator = tf.keras.preprocessing.image.ImageDataGenerator(
      rescale=THESIS_RESCALE if rescale else None,
      **(THESIS_AUGMENTATION if augmented else {}))
  return generator.flow_from_directory(
      data.train_dir, target_size=(data.image_size, data.image_size),
      batch_size=batch_size, class_mode="binary", shuffle=True, seed=seed)


def trainer_model(name: str, image_size: int, policy: Optional[str] = None,
                  seed: int = 42) -> tf.keras.Model:
  """The model as components.trainer.run_fn builds and compiles it (binary
  task, default settings): seeded, in its recipe's compute dtype unless
  `policy` names a Keras one, under the Trainer's distribution strategy.
  Leaves the global Keras policy set, as run_fn does."""
  training = settings.TrainingSettings()
  recipe = models.training_recipe(name, training)
  tf.keras.utils.set_random_seed(seed)
  tf.keras.mixed_precision.set_global_policy(policy or (
      models.FLOAT32 if recipe.mixed_precision == models.FLOAT32
      else f"mixed_{recipe.mixed_precision}"))
  with trainer.distribution_strategy().scope():
    model = models.build_model(name, contract.BINARY, image_size)
    models.compile_model(model, contract.BINARY, recipe.learning_rate,
                         xla=training.xla, optimizer=recipe.optimizer,
                         label_smoothing=recipe.label_smoothing)
  return model


def describe(data: Transformed) -> str:
  return (f"{data.count} real JPEGs (chest_xray/train, drawn at random) at "
          f"{data.image_size} px, batch {BATCH_SIZE}; ingestion + Transform "
          f"took {data.seconds:.1f} s (not timed below)")
