"""The warm-up file written into every exported model.

TF Serving replays `assets.extra/tf_serving_warmup_requests` (PredictionLog
records, TF Serving's SavedModel warm-up format) when it loads a version,
before the version is served, and so does `cxr serve`
(serving/server/repository.py). Without it the first request after a load
or a swap pays for graph optimisation and for creating every kernel
(oneDNN makes one per input shape).

The requests are real-sized: a chest-X-ray-shaped grayscale image of
WARMUP_IMAGE_SIDE pixels, as JPEG (what the Kaggle data sets hold) and as
16-bit PNG (what a detector's export holds), so both decoding branches of
the serving graph run; `serving_default` at each of
contract.WARMUP_BATCH_SIZES (a lone request and a full batch the batching
config merges), and `gradcam` at one image. A batch repeats one image in
TensorProto's compact form (one value, the shape declaring the batch),
which both servers expand, so the file stays small.
"""

import os

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2

from schema import contract
from schema import layout

# Pixels per side of the warm-up image: a typical chest X-ray export.
WARMUP_IMAGE_SIDE = 1024


def _image(dtype: tf.DType) -> tf.Tensor:
  """A smooth bright ellipse on black, as a chest X-ray's field sits."""
  grid = np.linspace(-1.0, 1.0, WARMUP_IMAGE_SIDE, dtype=np.float32)
  radius = np.hypot(grid[None, :] / 0.8, grid[:, None] / 0.9)
  level = np.clip(1.0 - radius, 0.0, 1.0)[..., None]
  return tf.cast(level * dtype.max, dtype)


def warmup_images() -> dict:
  """{format: encoded bytes}: the JPEG and the 16-bit PNG."""
  return {"jpeg": tf.io.encode_jpeg(_image(tf.uint8), quality=90).numpy(),
          "png16": tf.io.encode_png(_image(tf.uint16)).numpy()}


def _request(signature: str, alias: str, image: bytes,
             batch: int) -> predict_pb2.PredictRequest:
  request = predict_pb2.PredictRequest()
  request.model_spec.signature_name = signature
  proto = request.inputs[alias]
  proto.dtype = tf.string.as_datatype_enum
  proto.tensor_shape.dim.add(size=batch)
  proto.string_val.append(image)  # compact form: repeated to `batch`
  return request


def warmup_requests():
  """The PredictRequests of the warm-up file, in replay order."""
  images = warmup_images()
  requests = [_request(contract.SERVING_DEFAULT, contract.IMAGES_INPUT,
                       images["png16"], 1)]
  requests += [_request(contract.SERVING_DEFAULT, contract.IMAGES_INPUT,
                        images["jpeg"], batch)
               for batch in contract.WARMUP_BATCH_SIZES]
  requests.append(_request(contract.GRADCAM, contract.IMAGES_INPUT,
                           images["jpeg"], 1))
  return requests


def write_warmup_file(export_dir: str) -> str:
  """Writes the warm-up file into a SavedModel folder; returns its path."""
  path = os.path.join(export_dir, layout.WARMUP_FILE)
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.TFRecordWriter(path) as writer:
    for request in warmup_requests():
      log = prediction_log_pb2.PredictionLog(
          predict_log=prediction_log_pb2.PredictLog(request=request))
      writer.write(log.SerializeToString())
  return path
