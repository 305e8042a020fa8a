"""Server-side batching: TF Serving's parameters file, its scheduler's
rules, and cxr serve joining concurrent requests with unchanged answers."""

import concurrent.futures
import os
import threading

import grpc
import numpy as np
import pytest
import tensorflow as tf

from schema.settings import ServeSettings
from serving import server
from serving.server import batching
from serving.server.errors import Code
from serving.server.errors import ServingError
from tests.test_server import BINARY, POLL, _push_copy, _request, _stub, png
# model_base: the test models, exported once per session (conftest.py).
from tests.test_server import model_base  # noqa: F401  pylint: disable=unused-import

SERVING = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "serving")


@pytest.mark.parametrize("name,expected", [
    ("batching_cpu.config", batching.BatchingParameters(32, 0, 4, 4, ())),
    ("batching_gpu.config", batching.BatchingParameters(
        128, 2000, 4, 4, (1, 2, 4, 8, 16, 32, 64, 128))),
])
def test_reads_the_checked_in_parameter_files(name, expected):
  assert batching.read_parameters(os.path.join(SERVING, name)) == expected


@pytest.mark.parametrize("text,error", [
    ("max_batch_size { value: 8 }\nallowed_batch_sizes: 4", ValueError),
    ("max_batch_size { value: 0 }", ValueError),
    ("max_batch_sise { value: 8 }", ValueError),
])
def test_refuses_bad_parameter_files(tmp_path, text, error):
  path = tmp_path / "batching.config"
  path.write_text(text)
  with pytest.raises(error):
    batching.read_parameters(str(path))
  with pytest.raises(FileNotFoundError):
    batching.read_parameters(str(tmp_path / "missing.config"))


def _double(x):
  if tf.reduce_any(tf.equal(x, -1.0)):
    raise tf.errors.InvalidArgumentError(None, None, "a bad row")
  return {"y": x * 2.0}


def _submit_together(scheduler, rows_per_task):
  """Runs every task at once from its own thread; their outcomes."""
  barrier = threading.Barrier(len(rows_per_task))
  def one(rows):
    barrier.wait()
    try:
      return scheduler.run("key", _double,
                           {"x": tf.constant(rows, tf.float32)})["y"].numpy()
    except Exception as e:  # pylint: disable=broad-except
      return e
  with concurrent.futures.ThreadPoolExecutor(len(rows_per_task)) as pool:
    return list(pool.map(one, rows_per_task))


def test_joins_concurrent_tasks_and_splits_their_answers():
  scheduler = batching.BatchScheduler(batching.BatchingParameters(
      max_batch_size=8, batch_timeout_micros=300_000, max_enqueued_batches=4,
      num_batch_threads=1))
  try:
    tasks = [[[float(i)]] * (1 + i % 2) for i in range(6)]  # 9 rows
    answers = _submit_together(scheduler, tasks)
  finally:
    scheduler.stop()
  for rows, answer in zip(tasks, answers):
    np.testing.assert_array_equal(answer, np.array(rows) * 2)
  # 9 rows in batches of at most 8, at least one of several tasks.
  assert sum(size * n for size, n in scheduler.processed.items()) == 9
  assert max(scheduler.processed) > 2 and max(scheduler.processed) <= 8


def test_pads_to_an_allowed_size_and_drops_the_padding():
  scheduler = batching.BatchScheduler(batching.BatchingParameters(
      max_batch_size=8, batch_timeout_micros=300_000, max_enqueued_batches=4,
      num_batch_threads=1, allowed_batch_sizes=(4, 8)))
  try:
    answers = _submit_together(scheduler, [[[1.0]], [[2.0], [3.0]]])
  finally:
    scheduler.stop()
  np.testing.assert_array_equal(answers[0], [[2.0]])
  np.testing.assert_array_equal(answers[1], [[4.0], [6.0]])
  assert set(scheduler.processed) == {4}


def test_a_bad_request_fails_alone():
  scheduler = batching.BatchScheduler(batching.BatchingParameters(
      max_batch_size=8, batch_timeout_micros=300_000, max_enqueued_batches=4,
      num_batch_threads=1))
  try:
    answers = _submit_together(scheduler, [[[1.0]], [[-1.0]], [[3.0]]])
  finally:
    scheduler.stop()
  np.testing.assert_array_equal(answers[0], [[2.0]])
  assert isinstance(answers[1], tf.errors.InvalidArgumentError)
  np.testing.assert_array_equal(answers[2], [[6.0]])


def test_too_large_a_task_and_a_full_queue_are_refused():
  started, release = threading.Event(), threading.Event()
  def slow(x):
    started.set()
    release.wait(30)
    return {"y": x}
  scheduler = batching.BatchScheduler(batching.BatchingParameters(
      max_batch_size=2, batch_timeout_micros=0, max_enqueued_batches=1,
      num_batch_threads=1))
  try:
    with pytest.raises(ServingError, match="larger than maximum input batch "
                       "size 2") as raised:
      scheduler.run("key", slow, {"x": tf.zeros([3, 1])})
    assert raised.value.code == Code.INVALID_ARGUMENT
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
      running = pool.submit(scheduler.run, "key", slow,
                            {"x": tf.zeros([2, 1])})
      assert started.wait(30)
      # The thread holds that batch; one more batch may queue, not two.
      queued = pool.submit(scheduler.run, "key", slow,
                           {"x": tf.zeros([2, 1])})
      deadline = 50
      while not scheduler._queues["key"] and deadline:  # pylint: disable=protected-access
        threading.Event().wait(0.1)
        deadline -= 1
      with pytest.raises(ServingError, match="queue to which this task was "
                         "submitted is full") as raised:
        scheduler.run("key", slow, {"x": tf.zeros([1, 1])})
      assert raised.value.code == Code.UNAVAILABLE
      release.set()
      assert running.result().keys() == queued.result().keys() == {"y"}
  finally:
    release.set()
    scheduler.stop()


def test_cxr_serve_batches_concurrent_requests_with_the_same_answers(
    tmp_path, model_base):
  base = tmp_path / "serving"
  _push_copy(os.path.join(model_base, BINARY, "1"), str(base / BINARY), 1)
  parameters = tmp_path / "batching.config"
  parameters.write_text("max_batch_size { value: 16 }\n"
                        "batch_timeout_micros { value: 200000 }\n"
                        "num_batch_threads { value: 2 }\n"
                        "max_enqueued_batches { value: 8 }\n")
  images = [png(40 + i, 50, seed=i) for i in range(8)]
  expected = tf.saved_model.load(os.path.join(str(base), BINARY, "1")
                                 ).signatures["serving_default"](
                                     images=tf.constant(images))
  handle = server.start_server(str(base), ServeSettings(
      port=0, poll_seconds=POLL, max_workers=16,
      batching_parameters_file=str(parameters)))
  try:
    before = sum(handle.batcher.processed.values())
    barrier = threading.Barrier(len(images) + 1)
    def one(i):
      request = _request(images=[images[i]] if i < len(images)
                         else [b"not an image"])
      barrier.wait()
      try:
        return _stub(handle.address).Predict(request, timeout=60)
      except grpc.RpcError as e:
        return e
    with concurrent.futures.ThreadPoolExecutor(len(images) + 1) as pool:
      answers = list(pool.map(one, range(len(images) + 1)))
    # The bad image fails alone; every other answer is the unbatched one.
    assert answers[-1].code() == grpc.StatusCode.INVALID_ARGUMENT
    for i, answer in enumerate(answers[:-1]):
      np.testing.assert_allclose(
          tf.make_ndarray(answer.outputs["probabilities"]),
          expected["probabilities"].numpy()[i:i + 1], atol=1e-5)
    joined = {size: n for size, n in handle.batcher.processed.items()
              if size > 1}
    assert joined, dict(handle.batcher.processed)
    assert sum(handle.batcher.processed.values()) > before
  finally:
    handle.stop()
