"""cxr serve's request log: PredictionLog records, sampled, rotated, and
without the images unless asked."""

import glob
import os
import threading
import time

import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2

from schema import contract
from schema.settings import ServeSettings
from serving import server
from serving.server import image_summary
from serving.server import request_log
from tests.test_server import BINARY, POLL, _push_copy, _request, _stub, png
# model_base: the test models, exported once per session (conftest.py).
from tests.test_server import model_base  # noqa: F401  pylint: disable=unused-import


@pytest.fixture(scope="module")
def base(tmp_path_factory, model_base):
  folder = tmp_path_factory.mktemp("serving")
  _push_copy(os.path.join(model_base, BINARY, "1"), str(folder / BINARY), 1)
  return str(folder)


def _serve_and_send(base, log_dir, n, **log_settings):
  """Sends n Predicts (two images each) to a server logging to log_dir;
  the PredictionLogs it wrote, in order, and the files."""
  handle = server.start_server(base, ServeSettings(
      port=0, poll_seconds=POLL, log_requests=log_dir, **log_settings))
  try:
    stub = _stub(handle.address)
    for i in range(n):
      stub.Predict(_request(images=[png(40, 50, seed=i), png(60, 50)]),
                   timeout=60)
  finally:
    handle.stop()
  files = sorted(glob.glob(os.path.join(log_dir, "*.tfrecord")))
  logs = [prediction_log_pb2.PredictionLog.FromString(r.numpy())
          for r in tf.data.TFRecordDataset(files)]
  return logs, files


def test_every_answered_request_is_logged_without_its_images(base, tmp_path):
  logs, files = _serve_and_send(base, str(tmp_path / "log"), 5,
                                log_sample=1.0)
  assert len(logs) == 5 and len(files) == 1
  for i, log in enumerate(logs):
    assert log.log_metadata.model_spec.name == BINARY
    assert log.log_metadata.model_spec.version.value == 1
    assert log.log_metadata.sampling_config.sampling_rate == 1.0
    images = log.predict_log.request.inputs[contract.IMAGES_INPUT]
    # Two images, each replaced by its summary: no patient pixels.
    summaries = [image_summary.from_example(v) for v in images.string_val]
    assert summaries == [image_summary.summarize(png(40, 50, seed=i)),
                         image_summary.summarize(png(60, 50))]
    outputs = log.predict_log.response.outputs
    assert tf.make_ndarray(outputs[contract.PROBABILITIES]).shape == (2, 2)
  raw = b"".join(open(f, "rb").read() for f in files)
  assert png(40, 50, seed=0)[-64:] not in raw


def test_images_are_kept_when_asked(base, tmp_path):
  logs, _ = _serve_and_send(base, str(tmp_path / "log"), 2, log_sample=1.0,
                            log_images=True)
  images = logs[1].predict_log.request.inputs[contract.IMAGES_INPUT]
  assert list(images.string_val) == [png(40, 50, seed=1), png(60, 50)]


def test_sampling_and_rotation(base, tmp_path):
  assert _serve_and_send(base, str(tmp_path / "none"), 5,
                         log_sample=0.0)[0] == []
  # About half of 40, each file closed once it passes 2,000 bytes.
  logs, files = _serve_and_send(base, str(tmp_path / "half"), 40,
                                log_sample=0.5, log_file_bytes=2000)
  assert 8 <= len(logs) <= 32  # outside: p < 1e-4 for a fair coin
  sizes = [os.path.getsize(f) for f in files]
  assert len(files) > 1
  record = max(len(log.SerializeToString()) for log in logs) + 16
  assert all(size < 2000 + record for size in sizes)


def test_a_slow_writer_never_delays_a_request(tmp_path, monkeypatch):
  """Requests only queue: while the writer is stuck, record() returns at
  once, a full queue drops and counts, and close() writes what was
  queued."""
  log = request_log.RequestLog(str(tmp_path), 1.0, False, 1 << 30,
                               queue_size=3)
  release = threading.Event()
  written = []

  def stuck_write(data):
    release.wait(60)
    written.append(data)

  monkeypatch.setattr(log, "_write", stuck_write)
  request = _request(images=[png(40, 50)])
  response = predict_pb2.PredictResponse()
  response.model_spec.name = BINARY
  start = time.monotonic()
  for _ in range(10):
    log.record(request, response)
  assert time.monotonic() - start < 5
  release.set()
  log.close()
  # One record with the writer, three queued, the rest dropped (the
  # writer may not have taken the first before the queue filled).
  assert log.dropped in (6, 7) and len(written) == 10 - log.dropped
  logged = prediction_log_pb2.PredictionLog.FromString(written[0])
  assert image_summary.from_example(logged.predict_log.request.inputs[
      contract.IMAGES_INPUT].string_val[0]) == image_summary.summarize(
          png(40, 50))
