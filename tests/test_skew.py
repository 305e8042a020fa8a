"""cxr skew: served images against a run's training images, on real X-rays."""

import glob
import json
import os
import random

import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tfx.types import artifact_utils
from tfx.types import standard_artifacts

from components import image_statistics
from cxr import cli
from pipeline import summary
from schema import contract
from schema import layout
from serving.server import request_log
from tests.conftest import REAL_BINARY, _need

N_TRAINING, N_SERVED = 300, 60


def _real(split, n, seed):
  paths = sorted(glob.glob(os.path.join(_need(REAL_BINARY), split, "*",
                                        "*.jpeg")))
  return [open(p, "rb").read() for p in random.Random(seed).sample(paths, n)]


@pytest.fixture(scope="module")
def training_run(tmp_path_factory):
  """A run folder whose ImageStatisticsGen summarized real X-rays (and one
  example whose image does not decode) of its train split."""
  out = str(tmp_path_factory.mktemp("run"))
  pipeline_root = layout.output_paths(out).pipeline_root
  examples = standard_artifacts.Examples()
  examples.uri = os.path.join(tmp_path_factory.mktemp("examples"), "1")
  examples.split_names = artifact_utils.encode_split_names([contract.TRAIN])
  split = os.path.join(examples.uri, f"Split-{contract.TRAIN}")
  os.makedirs(split)
  options = tf.io.TFRecordOptions(compression_type="GZIP")
  with tf.io.TFRecordWriter(os.path.join(split, "data.gz"),
                            options) as writer:
    for image in _real("train", N_TRAINING, seed=1) + [b"not an image"]:
      feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))
      writer.write(tf.train.Example(features=tf.train.Features(
          feature={contract.IMAGE_KEY: feature})).SerializeToString())
  statistics = standard_artifacts.ExampleStatistics()
  statistics.uri = os.path.join(pipeline_root, layout.IMAGE_STATISTICS_GEN,
                                "statistics", "7")
  image_statistics.Executor().Do({"examples": [examples]},
                                 {"statistics": [statistics]}, {})
  return out, statistics


def test_image_statistics_count_every_image(training_run):
  _, statistics = training_run
  assert json.loads(statistics.get_string_custom_property(
      layout.COUNTS_PROPERTY)) == {
          contract.TRAIN: N_TRAINING,
          image_statistics.undecodable_counter(contract.TRAIN): 1}
  stats = summary.image_statistics(training_run[0], contract.TRAIN)
  assert stats.datasets[0].num_examples == N_TRAINING
  assert {f.path.step[0] for f in stats.datasets[0].features} == set(
      contract.SUMMARY_FEATURES)


def _log(folder, images, keep_images=False):
  """A request log of one Predict per image, as cxr serve writes it."""
  log = request_log.RequestLog(str(folder), 1.0, keep_images, 1 << 30)
  response = predict_pb2.PredictResponse()
  response.model_spec.name = "m"
  response.model_spec.version.value = 1
  for image in images:
    request = predict_pb2.PredictRequest()
    request.inputs[contract.IMAGES_INPUT].CopyFrom(
        tf.make_tensor_proto([image], dtype=tf.string, shape=[1]))
    log.record(request, response)
  log.close()
  return str(folder)


def _changed(images, change):
  out = []
  for image in images:
    pixels = tf.io.decode_jpeg(image)
    out.append(tf.io.encode_jpeg(change(pixels), quality=95).numpy())
  return out


def _darker(pixels):
  return tf.cast(tf.cast(pixels, tf.float32) * 0.6, tf.uint8)


def _inverted(pixels):
  return 255 - pixels


@pytest.mark.parametrize("keep_images", [False, True])
def test_served_images_like_the_training_ones_pass(training_run, tmp_path,
                                                   capsys, keep_images):
  logs = _log(tmp_path / "log", _real("test", N_SERVED, seed=2), keep_images)
  assert cli.main(["skew", "--training", training_run[0],
                   "--serving-logs", logs]) == 0
  out = capsys.readouterr().out
  assert f"training images: {N_TRAINING}; served images: {N_SERVED}" in out
  assert "no skew" in out


@pytest.mark.parametrize("change,features", [
    (_darker, ("brightness", "contrast")),
    (_inverted, ("border_brightness",)),
])
def test_darker_or_inverted_images_are_skew(training_run, tmp_path, capsys,
                                            change, features):
  served = _changed(_real("test", N_SERVED, seed=2), change)
  logs = _log(tmp_path / "log", served)
  assert cli.main(["skew", "--training", training_run[0],
                   "--serving-logs", logs]) == 1
  out = capsys.readouterr().out
  for feature in features:
    assert f"skew in {feature}: High approximate Jensen-Shannon" in out


def test_a_missing_log_or_run_is_a_clear_error(training_run, tmp_path,
                                               capsys):
  assert cli.main(["skew", "--training", training_run[0], "--serving-logs",
                   str(tmp_path)]) == 2
  assert "no request log" in capsys.readouterr().err
  logs = _log(tmp_path / "log", _real("test", 2, seed=3))
  assert cli.main(["skew", "--training", str(tmp_path / "nothing"),
                   "--serving-logs", logs]) == 2
  assert "no image statistics" in capsys.readouterr().err
