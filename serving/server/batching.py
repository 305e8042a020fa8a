"""Server-side batching for `cxr serve`, with TF Serving's semantics and its
`--batching_parameters_file` format (`--batching-parameters-file FILE`).

Concurrent requests to the same version and signature are joined along
the batch dimension and run as one call:

* a batch runs once it holds `max_batch_size` rows or its oldest request
  has waited `batch_timeout_micros`; `num_batch_threads` threads, shared
  by every model, run batches;
* a request of more rows than `max_batch_size` is INVALID_ARGUMENT, and
  one arriving while `max_enqueued_batches` batches are queued for its
  signature is UNAVAILABLE, with TF Serving's messages;
* with `allowed_batch_sizes`, a batch is padded (its last row repeated) to
  the next allowed size and the padding's outputs dropped.

Only signatures whose inputs and outputs all have an open batch dimension
and whose inputs have no defaults are batched (serving_default and
serving_tf_example here; gradcam's scalar `method` and its class default
keep it unbatched), as a batch cannot carry a per-request scalar. Empty
requests are not queued.

One difference from TF Serving, on purpose: when a joined batch fails
(one request's image cannot be decoded), each of its requests runs again
alone, so only the bad one fails instead of every request it was batched
with.

The tensorflow-serving-api wheel ships no servables/ protos, so the file
is read with BatchingParameters declared here as
tensorflow_serving/servables/tensorflow/session_bundle_config.proto
declares fields 1-7; text parsing fails on any other field.
"""

import collections
import dataclasses
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

from google.protobuf import descriptor_pb2
from google.protobuf import descriptor_pool
from google.protobuf import message_factory
from google.protobuf import text_format
from google.protobuf import wrappers_pb2
import tensorflow as tf

from serving.server.errors import Code
from serving.server.errors import ServingError


def batching_parameters_class():
  """tensorflow.serving.BatchingParameters (see the module's docstring)."""
  field = descriptor_pb2.FieldDescriptorProto
  proto = descriptor_pb2.FileDescriptorProto(
      name="cxr/session_bundle_config.proto", package="tensorflow.serving",
      syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
  message = proto.message_type.add(name="BatchingParameters")
  for number, name, wrapper in (
      (1, "max_batch_size", "Int64Value"),
      (2, "batch_timeout_micros", "Int64Value"),
      (3, "max_enqueued_batches", "Int64Value"),
      (4, "num_batch_threads", "Int64Value"),
      (5, "thread_pool_name", "StringValue")):
    message.field.add(name=name, number=number, label=field.LABEL_OPTIONAL,
                      type=field.TYPE_MESSAGE,
                      type_name=f".google.protobuf.{wrapper}")
  message.field.add(name="allowed_batch_sizes", number=6,
                    label=field.LABEL_REPEATED, type=field.TYPE_INT64)
  message.field.add(name="pad_variable_length_inputs", number=7,
                    label=field.LABEL_OPTIONAL, type=field.TYPE_BOOL)
  pool = descriptor_pool.DescriptorPool()
  pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
  pool.AddSerializedFile(proto.SerializeToString())
  return message_factory.MessageFactory(pool).GetPrototype(
      pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
  """The file's values; unset ones take TF Serving's defaults."""
  max_batch_size: int = 1000
  batch_timeout_micros: int = 0
  max_enqueued_batches: int = 10
  num_batch_threads: int = 4
  allowed_batch_sizes: Tuple[int, ...] = ()


def read_parameters(path: str) -> BatchingParameters:
  """BatchingParameters from a TF Serving batching parameters file."""
  try:
    with tf.io.gfile.GFile(path) as f:
      message = text_format.Parse(f.read(), batching_parameters_class()())
  except tf.errors.NotFoundError as e:
    raise FileNotFoundError(f"batching parameters file not found: "
                            f"{path}") from e
  except text_format.ParseError as e:
    raise ValueError(f"{path}: not a BatchingParameters text proto: "
                     f"{e}") from e
  values = {name: getattr(message, name).value
            for name in ("max_batch_size", "batch_timeout_micros",
                         "max_enqueued_batches", "num_batch_threads")
            if message.HasField(name)}
  params = BatchingParameters(
      **values, allowed_batch_sizes=tuple(message.allowed_batch_sizes))
  allowed = params.allowed_batch_sizes
  if allowed and (list(allowed) != sorted(set(allowed))
                  or allowed[-1] != params.max_batch_size):
    raise ValueError(f"{path}: allowed_batch_sizes must increase and end at "
                     f"max_batch_size ({params.max_batch_size})")
  if min(params.max_batch_size, params.max_enqueued_batches,
         params.num_batch_threads) < 1 or params.batch_timeout_micros < 0:
    raise ValueError(f"{path}: batch sizes, queue and threads must be "
                     "positive and the timeout not negative")
  return params


def batchable(signature) -> bool:
  """Whether requests to a SignatureDef can be joined along dimension 0."""
  if signature.defaults:
    return False
  for info in list(signature.inputs.values()) + list(
      signature.outputs.values()):
    dims = info.tensor_shape.dim
    if info.tensor_shape.unknown_rank or not dims or dims[0].size != -1:
      return False
  return True


@dataclasses.dataclass
class _Task:
  inputs: Dict[str, tf.Tensor]
  size: int
  function: Callable
  enqueued: float
  done: threading.Event = dataclasses.field(default_factory=threading.Event)
  outputs: Optional[Dict[str, tf.Tensor]] = None
  error: Optional[BaseException] = None


def _rows(inputs: Dict[str, tf.Tensor]) -> Optional[int]:
  sizes = {int(t.shape[0]) for t in inputs.values()}
  return sizes.pop() if len(sizes) == 1 else None


class BatchScheduler:
  """Queues per (version, signature), run by threads shared by all."""

  def __init__(self, params: BatchingParameters):
    self.params = params
    # {batch size run: count}, padding included: what was merged.
    self.processed = collections.Counter()
    self._queues: Dict[object, collections.deque] = {}
    self._cv = threading.Condition()
    self._stopped = False
    self._threads = [threading.Thread(target=self._work, daemon=True,
                                      name=f"batch-{i}")
                     for i in range(params.num_batch_threads)]
    for thread in self._threads:
      thread.start()

  def stop(self) -> None:
    with self._cv:
      self._stopped = True
      self._cv.notify_all()
    for thread in self._threads:
      thread.join()

  def run(self, key, function: Callable,
          inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """function(**inputs), joined with other requests under the same key."""
    size = _rows(inputs)
    if not size:  # empty, or inputs that disagree: the function says why
      return function(**inputs)
    if size > self.params.max_batch_size:
      raise ServingError(
          Code.INVALID_ARGUMENT, f"Task size {size} is larger than maximum "
          f"input batch size {self.params.max_batch_size}")
    task = _Task(inputs, size, function, time.monotonic())
    with self._cv:
      queue = self._queues.setdefault(key, collections.deque())
      rows = sum(t.size for t in queue) + size
      if -(-rows // self.params.max_batch_size) > (
          self.params.max_enqueued_batches):
        raise ServingError(Code.UNAVAILABLE, "The batch scheduling queue to "
                           "which this task was submitted is full")
      queue.append(task)
      self._cv.notify()
    task.done.wait()
    if task.error is not None:
      raise task.error
    return task.outputs

  def _ready(self, now: float):
    """(key, tasks) of the batch to run now, else (None, seconds to the
    next deadline or None)."""
    timeout = self.params.batch_timeout_micros / 1e6
    wait = None
    for key, queue in sorted(self._queues.items(),
                             key=lambda kv: kv[1][0].enqueued if kv[1]
                             else float("inf")):
      if not queue:
        continue
      full = sum(t.size for t in queue) >= self.params.max_batch_size
      left = queue[0].enqueued + timeout - now
      if full or left <= 0:
        tasks, rows = [], 0
        while queue and rows + queue[0].size <= self.params.max_batch_size:
          rows += queue[0].size
          tasks.append(queue.popleft())
        return key, tasks
      wait = left if wait is None else min(wait, left)
    return None, wait

  def _work(self) -> None:
    while True:
      with self._cv:
        while True:
          if self._stopped:
            return
          key, found = self._ready(time.monotonic())
          if key is not None:
            break
          self._cv.wait(timeout=found)
      self._run_batch(found)

  def _run_batch(self, tasks: List[_Task]) -> None:
    try:
      rows = sum(t.size for t in tasks)
      padded = next((s for s in self.params.allowed_batch_sizes if s >= rows),
                    rows)
      if len(tasks) == 1 and padded == rows:
        self._finish(tasks[0])
        return
      inputs = {}
      for alias in tasks[0].inputs:
        parts = [t.inputs[alias] for t in tasks]
        if padded > rows:
          parts.append(tf.repeat(parts[-1][-1:], padded - rows, axis=0))
        inputs[alias] = tf.concat(parts, axis=0)
      self.processed[padded] += 1
      try:
        outputs = tasks[0].function(**inputs)
      except Exception:  # pylint: disable=broad-except
        # One bad request must not fail the others: each runs alone.
        for task in tasks:
          self._finish(task)
        return
      start = 0
      for task in tasks:
        task.outputs = {k: v[start:start + task.size]
                        for k, v in outputs.items()}
        start += task.size
        task.done.set()
    except BaseException as e:  # pylint: disable=broad-except
      for task in tasks:
        if not task.done.is_set():
          task.error = e
          task.done.set()

  def _finish(self, task: _Task) -> None:
    """Runs one task alone, its outputs or error its own."""
    if task.size:
      self.processed[task.size] += 1
    try:
      task.outputs = task.function(**task.inputs)
    except Exception as e:  # pylint: disable=broad-except
      task.error = e
    task.done.set()
