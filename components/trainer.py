"""Trainer user code (`run_fn`) for the TFX Trainer.

Reads the Transform output with the Trainer's data accessor (tfxio: parallel
reads and parsing), decodes the stored uint8 pixels on batches, keeps them in
memory after the first epoch when they fit (--pixel-cache-mb), augments the
train split only, prefetches, trains one model and exports it with the
signatures of serving/export/signatures.py.

custom_config: the task, the model and schema.settings.TrainingSettings, as
schema.settings.trainer_custom_config writes them; checked on arrival.
"""

import dataclasses
import json
import os
import time
from typing import Dict, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx
from tfx.dsl.io import fileio
from tfx_bsl.public import tfxio

from components import augment
from components import calibration
from components import models
from components import operating_point
from components import training_curves
from schema import contract
from schema import layout
from schema import settings as settings_lib
from serving.export import gradcam
from serving.export import pixels
from serving.export import signatures

# Fine-tuning runs at this fraction of the first phase's learning rate.
FINE_TUNE_LR_FACTOR = 0.1


def input_fn(file_pattern, data_accessor: tfx.components.DataAccessor,
             tf_transform_output: tft.TFTransformOutput, batch_size: int,
             image_size: int, train: bool, augmented: bool, seed: int,
             cached_examples: int = 0) -> tf.data.Dataset:
  """(float32 pixels [batch, S, S, 3] in [0, 255], label [batch]) batches.

  One pass over the data per Keras epoch; shuffled and augmented for
  training only. cached_examples: 0 reads the files on every pass, shuffled
  through a 1,024-example buffer; otherwise the number of examples the
  files hold (pixel_cache_plan), whose decoded pixels the first pass keeps
  in memory and every pass shuffles whole.
  """
  dataset = data_accessor.tf_dataset_factory(
      file_pattern,
      tfxio.TensorFlowDatasetOptions(
          batch_size=batch_size, label_key=contract.LABEL_KEY,
          num_epochs=1, shuffle=train and not cached_examples,
          shuffle_seed=seed, shuffle_buffer_size=1024 if train else 1),
      tf_transform_output.transformed_metadata.schema)
  return training_batches(dataset, image_size, train, augmented, seed,
                          cached_examples, batch_size)


def training_batches(dataset: tf.data.Dataset, image_size: int, train: bool,
                     augmented: bool, seed: int, cached_examples: int = 0,
                     batch_size: int = 0) -> tf.data.Dataset:
  """(Transform features, label) batches -> (pixels, label) batches.

  cached_examples, batch_size: as in input_fn; the kept examples are
  batched again by batch_size.
  """
  if cached_examples and batch_size < 1:
    raise ValueError(f"kept pixels are batched again: batch_size must be "
                     f"at least 1, got {batch_size}")

  def decode(features, label):
    return (pixels.image_from_transformed(features[contract.PIXELS_KEY],
                                          image_size),
            tf.reshape(label, [-1]))

  def to_float(images, label, batch_seed=None):
    if batch_seed is None:
      return tf.cast(images, tf.float32), label
    return augment.augment_images(images, batch_seed), label

  dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
  if cached_examples:
    # uint8, a quarter of float32's bytes; shuffled after the cache, so
    # each epoch draws a new order from all of them (seeded, repeatable).
    dataset = dataset.unbatch().cache()
    if train:
      dataset = dataset.shuffle(cached_examples, seed=seed,
                                reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
  if train and augmented:
    # One stateless seed per batch from a seeded stream that moves on every
    # epoch: the same transforms run after run. Stateful random ops in a
    # parallel map hand out their draws in scheduling order, which made
    # training differ between runs of the same seed.
    seeds = tf.data.Dataset.random(
        seed=seed, rerandomize_each_iteration=True).batch(2)
    dataset = tf.data.Dataset.zip((dataset, seeds)).map(
        lambda batch, batch_seed: to_float(*batch, batch_seed),
        num_parallel_calls=tf.data.AUTOTUNE)
  else:
    dataset = dataset.map(to_float, num_parallel_calls=tf.data.AUTOTUNE)
  return dataset.prefetch(tf.data.AUTOTUNE)


def _records(file_patterns) -> tf.data.Dataset:
  """The serialized examples of a split's GZIP TFRecord files."""
  files = [f for pattern in file_patterns for f in fileio.glob(pattern)]
  return tf.data.TFRecordDataset(files, compression_type="GZIP")


def count_examples(file_patterns, limit: int) -> int:
  """The examples the GZIP TFRecord files hold, if at most `limit`; else 0.

  Reads at most limit + 1 records: a split too large to keep is not read
  whole for nothing.
  """
  if limit <= 0:
    return 0
  count = int(_records(file_patterns)
              .take(limit + 1).reduce(np.int64(0), lambda n, _: n + 1))
  return count if count <= limit else 0


def pixel_cache_plan(train_files, eval_files, image_size: int,
                     budget_mb: int, train_epochs: int) -> Tuple[int, int]:
  """(train, eval) examples whose decoded pixels the Trainer keeps in
  memory, 0 for a split read from its files every epoch: the train split
  first, then the eval split in what is left of budget_mb. The train split
  only when it is read more than once (train_epochs > 1); the eval split is
  read at every epoch's end and again for the decision rule."""
  per_image = image_size * image_size * 3
  room = budget_mb * 2**20 // per_image
  train = count_examples(train_files, room) if train_epochs > 1 else 0
  return train, count_examples(eval_files, room - train)


class _EpochTimer(tf.keras.callbacks.Callback):
  """Adds seconds per epoch to the Keras history."""

  def on_epoch_begin(self, epoch, logs=None):
    self._start = time.perf_counter()

  def on_epoch_end(self, epoch, logs=None):
    if logs is not None:
      logs["seconds"] = time.perf_counter() - self._start


class _ProgressLog(tf.keras.callbacks.Callback):
  """Logs epoch, step, speed and ETA every `every_s` seconds.

  Keras's own progress bar is unreadable in a log file and verbose=2 says
  nothing until an epoch ends, which at 224 px on a CPU is minutes away.
  Steps per epoch are known only after the first pass over the data.
  """

  def __init__(self, epochs: int, batch_size: int, every_s: float = 30.0,
               first_epoch: int = 0):
    """epochs: the last epoch (1-based); first_epoch: epochs already done."""
    super().__init__()
    self._epochs, self._batch, self._every = epochs, batch_size, every_s
    self._first = first_epoch
    self._steps_per_epoch = None

  def on_train_begin(self, logs=None):
    self._start = self._last = time.perf_counter()
    self._done_steps = 0

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch = epoch

  def on_train_batch_end(self, batch, logs=None):
    self._done_steps += 1
    now = time.perf_counter()
    if now - self._last < self._every:
      return
    self._last = now
    rate = self._done_steps / (now - self._start)
    where = f"epoch {self._epoch + 1}/{self._epochs}, step {batch + 1}"
    eta = ""
    if self._steps_per_epoch:
      where += f"/{self._steps_per_epoch}"
      left = (self._steps_per_epoch * (self._epochs - self._first)
              - self._done_steps)
      eta = f", ETA {left / rate / 60:.1f} min ({left} steps left)"
    logging.info("Training %s, %.1f images/s%s", where, rate * self._batch,
                 eta)

  def on_epoch_end(self, epoch, logs=None):
    if self._steps_per_epoch is None:
      self._steps_per_epoch = self._done_steps


def device_name() -> str:
  """What trained the model, for reports: 'CPU' or '2 x GPU (name)'."""
  gpus = tf.config.list_physical_devices("GPU")
  if not gpus:
    return "CPU"
  details = tf.config.experimental.get_device_details(gpus[0])
  return f"{len(gpus)} x GPU ({details.get('device_name', 'unknown')})"


def distribution_strategy() -> tf.distribute.Strategy:
  """Every visible GPU through MirroredStrategy; the CPU otherwise."""
  gpus = tf.config.list_physical_devices("GPU")
  if gpus:
    logging.info("Training on %d GPU(s) with MirroredStrategy", len(gpus))
    return tf.distribute.MirroredStrategy()
  logging.info("No GPU visible: training on the CPU")
  return tf.distribute.get_strategy()


def balanced_class_weights(file_patterns, classes: int) -> Dict[int, float]:
  """n / (classes * n_c) per class, from the train split's labels only."""
  labels = _records(file_patterns).map(
      lambda record: tf.io.parse_single_example(
          record, {contract.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64)}
      )[contract.LABEL_KEY], num_parallel_calls=tf.data.AUTOTUNE)
  counts = np.bincount(np.fromiter(labels.as_numpy_iterator(), np.int64),
                       minlength=classes)
  if not counts.all():
    raise ValueError(f"class weighting needs every class in the train "
                     f"split; label counts are {counts.tolist()}")
  weights = counts.sum() / (classes * counts)
  logging.info("Class counts %s -> weights %s", counts.tolist(),
               weights.round(3).tolist())
  return {i: float(w) for i, w in enumerate(weights)}


def _train_phase(model, train_data, eval_data, first_epoch: int, epochs: int,
                 training: settings_lib.TrainingSettings, log_dir: str,
                 class_weight, recipe: models.Recipe = models.THESIS_RECIPE):
  """Fits epochs first_epoch+1 .. first_epoch+epochs, the learning rate set
  per epoch by the recipe's schedule over this phase's epochs.

  Returns (history dict, 1-based epoch whose weights the model now holds).
  """
  last = first_epoch + epochs
  callbacks = [_EpochTimer(),
               _ProgressLog(last, training.batch_size,
                            first_epoch=first_epoch),
               tf.keras.callbacks.TensorBoard(log_dir=log_dir)]
  schedule = models.learning_rate_callback(recipe, epochs, first_epoch)
  if schedule is not None:
    callbacks.append(schedule)
  best = None
  if training.restore_best_epoch:
    # Patience of every epoch: never stops early, only restores the best.
    best = tf.keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=epochs, restore_best_weights=True,
        verbose=1)
    callbacks.append(best)
  history = model.fit(train_data, validation_data=eval_data,
                      initial_epoch=first_epoch, epochs=last,
                      class_weight=class_weight, callbacks=callbacks,
                      verbose=2)
  return history.history, (best.best_epoch + 1 if best is not None else last)


def decision_rule(model, eval_data: tf.data.Dataset,
                  training: settings_lib.TrainingSettings) -> Dict:
  """Calibrates `model` in place and chooses its threshold, on eval only.

  Returns what was done, for history.json: the temperature with the eval
  split's NLL, ECE, Brier score and reliability bins before and after, and
  the operating point (rule, threshold and its bootstrap range, eval
  sensitivity and specificity).
  The threshold is chosen on the calibrated model's own float32 outputs,
  the numbers the served graph compares with it.
  """
  logits, labels = calibration.logits_and_labels(model, eval_data)
  temperature, note = 1.0, None
  if training.calibration == "temperature":
    try:
      temperature = calibration.fit_temperature(logits, labels)
    except calibration.NoTemperatureError as e:
      note = f"{e}; kept 1"
      logging.warning("Calibration: %s", note)
    calibration.apply_temperature(model, temperature)
  record = {"calibration": {
      "method": training.calibration, "temperature": temperature,
      "before": calibration.measures(logits, labels, 1.0),
      "after": calibration.measures(logits, labels, temperature)}}
  if note:
    record["calibration"]["note"] = note
  scores = np.concatenate([
      signatures.pneumonia_probability(model(images, training=False)).numpy()
      for images, _ in eval_data]) if len(labels) else np.zeros(0)
  record["operating_point"] = operating_point.describe(
      scores, operating_point.is_pneumonia(labels), training.operating_rule,
      training.seed)
  logging.info("Calibration: temperature %.3f, eval NLL %.4f -> %.4f; "
               "operating point %s", temperature,
               record["calibration"]["before"]["nll"],
               record["calibration"]["after"]["nll"],
               record["operating_point"])
  return record


def run_fn(fn_args: tfx.components.FnArgs) -> None:
  """TFX Trainer entry point.

  The Keras dtype policy a recipe sets is global to the process; it is put
  back afterwards, so a Trainer run in process (LocalDagRunner, a test)
  leaves code after it with the policy it found.
  """
  previous = tf.keras.mixed_precision.global_policy()
  try:
    _train(fn_args)
  finally:
    tf.keras.mixed_precision.set_global_policy(previous)


def _train(fn_args: tfx.components.FnArgs) -> None:
  config = settings_lib.TrainerConfig.from_custom_config(
      fn_args.custom_config)
  task, name, training = config.task, config.model, config.training
  recipe = models.training_recipe(name, training)
  logging.info("Training %s for the %s task with %s; recipe %s", name, task,
               training, recipe)
  tf.keras.utils.set_random_seed(training.seed)
  tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)
  # float16/bfloat16 compute; the head stays float32 (models._head). Set
  # for float32 too: Trainers of several models may share one process, and
  # one model's recipe must not leave its policy to the next.
  tf.keras.mixed_precision.set_global_policy(
      models.FLOAT32 if recipe.mixed_precision == models.FLOAT32
      else f"mixed_{recipe.mixed_precision}")

  train_epochs = training.epochs + (training.fine_tune_epochs
                                    if training.fine_tune_layers else 0)
  kept = dict(zip((True, False), pixel_cache_plan(
      fn_args.train_files, fn_args.eval_files, training.image_size,
      training.pixel_cache_mb, train_epochs)))
  logging.info("Decoded pixels kept in memory after the first epoch: %s "
               "train and %s eval examples (0: read from the files every "
               "epoch); --pixel-cache-mb %d", kept[True], kept[False],
               training.pixel_cache_mb)

  def dataset(files, train):
    return input_fn(files, fn_args.data_accessor, tf_transform_output,
                    training.batch_size, training.image_size, train=train,
                    augmented=name in models.AUGMENTED_MODELS,
                    seed=training.seed, cached_examples=kept[train])

  with distribution_strategy().scope():
    model = models.build_model(name, task, training.image_size,
                               training.weights)
    models.compile_model(model, task, recipe.learning_rate,
                         xla=training.xla, optimizer=recipe.optimizer,
                         label_smoothing=recipe.label_smoothing)
  model.summary(print_fn=logging.info)
  # A wrong Grad-CAM layer name fails now, not at export after training.
  gradcam_layer = training.gradcam_layer or gradcam.find_target_layer(model)
  gradcam.gradcam_model(model, gradcam_layer)
  logging.info("Grad-CAM explains layer %s", gradcam_layer)
  class_weight = None
  if training.class_weight == "balanced":
    class_weight = balanced_class_weights(fn_args.train_files,
                                          contract.class_count(task))
  train_data = dataset(fn_args.train_files, train=True)
  eval_data = dataset(fn_args.eval_files, train=False)
  log_dir = os.path.join(fn_args.model_run_dir, "logs")
  history, exported = _train_phase(model, train_data, eval_data, 0,
                                   training.epochs, training, log_dir,
                                   class_weight, recipe)
  record = {k: [float(v) for v in vs] for k, vs in history.items()}

  if training.fine_tune_layers:
    unfrozen = models.unfreeze_top(model, training.fine_tune_layers)
    fine_tune = dataclasses.replace(
        recipe, learning_rate=recipe.learning_rate * FINE_TUNE_LR_FACTOR)
    logging.info("Fine-tuning %d base layers (%s .. %s) at lr %g",
                 len(unfrozen), unfrozen[0], unfrozen[-1],
                 fine_tune.learning_rate)
    models.compile_model(model, task, fine_tune.learning_rate,
                         xla=training.xla, optimizer=fine_tune.optimizer,
                         label_smoothing=fine_tune.label_smoothing)
    history, exported = _train_phase(
        model, train_data, eval_data, training.epochs,
        training.fine_tune_epochs, training, log_dir, class_weight,
        fine_tune)
    for key, values in history.items():
      record.setdefault(key, []).extend(float(v) for v in values)
    record["fine_tuned_layers"] = unfrozen

  record.update(decision_rule(model, eval_data, training))
  fileio.makedirs(fn_args.model_run_dir)
  with fileio.open(
      os.path.join(fn_args.model_run_dir, layout.HISTORY_FILE), "w") as f:
    record["exported_epoch"] = exported  # 1-based, across both phases
    record["device"] = device_name()
    record["recipe"] = dataclasses.asdict(recipe)  # as resolved, for reports
    record["pixels_kept"] = {"train": kept[True], "eval": kept[False]}
    json.dump(record, f, indent=1)
  with fileio.open(
      os.path.join(fn_args.model_run_dir, layout.CURVES_FILE), "wb") as f:
    f.write(training_curves.plot_history(record, f"{name}, {task} task"))
  signatures.export_serving_model(model, tf_transform_output,
                                  fn_args.serving_model_dir, task,
                                  training.image_size,
                                  gradcam_layer=gradcam_layer,
                                  threshold=record["operating_point"][
                                      "threshold"])
