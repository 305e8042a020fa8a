"""A sampled log of the Predict calls `cxr serve` answered, in TF Serving's
own request-logging format (`--log-requests DIR --log-sample R`).

Each sampled, successful Predict is one `PredictionLog` record (request,
response, and `log_metadata` naming the model version that answered and
the sampling rate), as TF Serving's logging_config writes them, in
TFRecord files `DIR/requests-<start>-<n>.tfrecord`; a file is closed and a
new one started once it holds `--log-file-bytes`. Open-source TF Serving
has no sink for its logs; this one is a folder any TFRecord reader takes
(tf.data, TFDV, Beam).

Images are patient data. Unless `--log-images` is given, each image is
replaced by its summary (image_summary.py: size, channels, brightness,
contrast, as a serialized tf.Example) before the record is written, and an
example input's values by empty strings; the shape and everything else
stay. A log then holds the decisions, their probabilities and what
`cxr skew` compares with training, not the X-rays.

A request thread only samples and queues; one writer thread summarizes
and writes, so neither the summaries' decoding nor a slow disk delays an
answer. When the queue is full (the writer fell behind), the record is
dropped and counted, with a warning, rather than making requests wait.
Each written record is flushed; records still queued when the process is
killed are lost.
"""

import os
import queue
import random
import threading
import time

from absl import logging
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2

from schema import contract
from serving.server import image_summary

# Inputs whose values are images, or tf.Examples holding them.
IMAGE_INPUTS = (contract.IMAGES_INPUT, contract.EXAMPLES_INPUT)
# TFRecord framing per record: length, its CRC, the data's CRC.
_FRAME_BYTES = 16
# Sampled requests waiting for the writer; a full queue drops the newest.
QUEUE_SIZE = 256
_STOP = object()


def _summary_or_empty(image: bytes) -> bytes:
  try:
    return image_summary.as_example(image_summary.summarize(image))
  except ValueError:
    return b""  # not an image the model could read either


def redacted(request: predict_pb2.PredictRequest
             ) -> predict_pb2.PredictRequest:
  """A copy of request whose images are their summaries and whose
  examples are empty strings."""
  out = predict_pb2.PredictRequest()
  out.CopyFrom(request)
  for alias in IMAGE_INPUTS:
    if alias in out.inputs:
      values = out.inputs[alias].string_val
      kept = [_summary_or_empty(v) if alias == contract.IMAGES_INPUT
              else b"" for v in values]
      del values[:]
      values.extend(kept)
  return out


class RequestLog:
  """Writes sampled PredictionLogs; safe to call from every request thread."""

  def __init__(self, folder: str, sample: float, keep_images: bool,
               max_file_bytes: int, queue_size: int = QUEUE_SIZE):
    self.folder, self.sample = folder, sample
    self.keep_images, self.max_file_bytes = keep_images, max_file_bytes
    self.dropped = 0  # sampled but not logged: the queue was full
    self._lock = threading.Lock()
    self._writer, self._written, self._files = None, 0, 0
    self._start = time.strftime("%Y%m%d-%H%M%S")
    tf.io.gfile.makedirs(folder)
    self._queue = queue.Queue(maxsize=queue_size)
    self._thread = threading.Thread(target=self._drain, name="request-log",
                                    daemon=True)
    self._thread.start()

  def record(self, request, response) -> None:
    """Queues one answered Predict for the log, if sampled; never blocks
    and never fails the request."""
    if self.sample <= 0 or random.random() >= self.sample:
      return
    try:
      self._queue.put_nowait((request, response))
    except queue.Full:
      with self._lock:
        self.dropped += 1
        dropped = self.dropped
      if dropped == 1 or dropped % 1000 == 0:
        logging.warning("request log in %s: the writer fell behind; %d "
                        "sampled requests dropped so far", self.folder,
                        dropped)

  def _drain(self) -> None:
    while True:
      item = self._queue.get()
      if item is _STOP:
        return
      self._log(*item)

  def _log(self, request, response) -> None:
    try:
      log = prediction_log_pb2.PredictionLog()
      log.log_metadata.model_spec.CopyFrom(response.model_spec)
      log.log_metadata.sampling_config.sampling_rate = self.sample
      log.predict_log.request.CopyFrom(
          request if self.keep_images else redacted(request))
      log.predict_log.response.CopyFrom(response)
      self._write(log.SerializeToString())
    except Exception:  # pylint: disable=broad-except
      logging.exception("writing a request to the log in %s failed",
                        self.folder)

  def _write(self, data: bytes) -> None:
    with self._lock:
      if self._writer is None:
        self._files += 1
        path = os.path.join(self.folder, f"requests-{self._start}-"
                            f"{self._files:05d}.tfrecord")
        self._writer = tf.io.TFRecordWriter(path)
        self._written = 0
      self._writer.write(data)
      self._writer.flush()  # a killed server loses no logged request
      self._written += len(data) + _FRAME_BYTES
      if self._written >= self.max_file_bytes:
        self._writer.close()
        self._writer = None

  def close(self) -> None:
    """Writes what is queued, then closes the file."""
    self._queue.put(_STOP)
    self._thread.join()
    if self.dropped:
      logging.warning("request log in %s: %d sampled requests were dropped "
                      "because the writer fell behind", self.folder,
                      self.dropped)
    with self._lock:
      if self._writer is not None:
        self._writer.close()
        self._writer = None
