"""cxr skew: served images against a run's training images, on real X-rays."""

import glob
import os
import random

import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2

from cxr import cli
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
  """A run folder whose ingested train split holds real X-rays."""
  out = str(tmp_path_factory.mktemp("run"))
  split = os.path.join(layout.output_paths(out).pipeline_root,
                       layout.EXAMPLE_GEN, "examples", "7",
                       f"Split-{contract.TRAIN}")
  os.makedirs(split)
  options = tf.io.TFRecordOptions(compression_type="GZIP")
  with tf.io.TFRecordWriter(os.path.join(split, "data.gz"),
                            options) as writer:
    for image in _real("train", N_TRAINING, seed=1):
      feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))
      writer.write(tf.train.Example(features=tf.train.Features(
          feature={contract.IMAGE_KEY: feature})).SerializeToString())
  return out


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
  assert cli.main(["skew", "--training", training_run,
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
  assert cli.main(["skew", "--training", training_run,
                   "--serving-logs", logs]) == 1
  out = capsys.readouterr().out
  for feature in features:
    assert f"skew in {feature}: High approximate Jensen-Shannon" in out


def test_a_missing_log_or_run_is_a_clear_error(training_run, tmp_path,
                                               capsys):
  assert cli.main(["skew", "--training", training_run, "--serving-logs",
                   str(tmp_path)]) == 2
  assert "no request log" in capsys.readouterr().err
  logs = _log(tmp_path / "log", _real("test", 2, seed=3))
  assert cli.main(["skew", "--training", str(tmp_path / "nothing"),
                   "--serving-logs", logs]) == 2
  assert "no ingested examples" in capsys.readouterr().err
