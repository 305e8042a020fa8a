"""A TF-Serving-compatible model server in Python, for development and tests.

Serves every model under a base directory laid out as TF Serving reads it,
BASE/<model name>/<integer version>/saved_model.pb, through TF Serving's own
gRPC API (PredictionService.Predict and GetModelMetadata,
ModelService.GetModelStatus from `tensorflow_serving.apis`) and, optionally,
its REST API (POST /v1/models/NAME[/versions/N]:predict with "instances",
GET /v1/models/NAME[/versions/N] for the status). A client written against it
works unchanged against tensorflow_model_server.

Versions: a thread polls BASE. A new version is loaded completely before
requests see it; the version it replaces stays loaded for requests pinned to
it; a version that fails to load is logged and left alone until its files
change, while the old one keeps serving.

Status codes are TF Serving's: NOT_FOUND (unknown model or version),
FAILED_PRECONDITION (unknown signature), INVALID_ARGUMENT (wrong inputs,
dtypes, shapes, images the model cannot decode), RESOURCE_EXHAUSTED (request
above the message size limit), INTERNAL (anything unexpected; logged).

Not implemented: Classify, Regress, MultiInference (UNIMPLEMENTED), version
labels, server-side batching.
"""

import base64
import concurrent.futures
import dataclasses
import http.server
import json
import os
import re
import socket
import ssl
import threading
import time
from typing import Dict, Optional, Tuple
import urllib.parse

from absl import logging
from google.protobuf import json_format
import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow.python.tools import saved_model_utils
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

DEFAULT_SIGNATURE = "serving_default"
# TF Serving's gRPC limit: ServerBuilder::SetMaxMessageSize(kint32max).
DEFAULT_MAX_MESSAGE_BYTES = 2**31 - 1
KEEP_VERSIONS = 2  # the latest, and the one it replaced
_WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
_SIGNATURE_DEF = "signature_def"

_Code = grpc.StatusCode
_CODES = {code.value[0]: code for code in grpc.StatusCode}
_State = get_model_status_pb2.ModelVersionStatus.State


class ServingError(Exception):
  """A failed request, with the gRPC status code TF Serving gives it."""

  def __init__(self, code: grpc.StatusCode, message: str):
    super().__init__(message)
    self.code = code
    self.message = message


def _op_error_message(error: tf.errors.OpError) -> str:
  """The op's own message, without eager's "Graph execution error" preamble."""
  lines = [line for line in error.message.splitlines() if line.strip()
           and not re.match(r"( {2}|Graph execution error|Detected at node|"
                            r"<stack traces unavailable>)", line)]
  return re.sub(r"\s*\[Op:[^\]]*\]", "", "\n".join(lines)) or error.message


def _dtype_name(enum: int) -> str:
  try:
    return tf.dtypes.as_dtype(enum).name
  except TypeError:
    return f"dtype enum {enum}"


def _input_tensors(signature, request_inputs) -> Dict[str, tf.Tensor]:
  """Request TensorProtos -> tensors, checked against the SignatureDef.

  Follows TF Serving's predict_util.cc: an input missing from the request
  takes its SignatureDef default; missing without one, or unknown, is
  INVALID_ARGUMENT.
  """
  sent, expected = set(request_inputs), set(signature.inputs)
  if len(sent) > len(expected) or (
      len(sent) < len(expected) and not signature.defaults):
    raise ServingError(
        _Code.INVALID_ARGUMENT,
        f"input size does not match signature: {len(sent)}!={len(expected)} "
        f"len({{{','.join(sorted(sent))}}}) != "
        f"len({{{','.join(sorted(expected))}}}). Sent extra: "
        f"{{{','.join(sorted(sent - expected))}}}. Missing but required: "
        f"{{{','.join(sorted(expected - sent))}}}.")
  if sent - expected:
    raise ServingError(
        _Code.INVALID_ARGUMENT,
        f"Inputs contains invalid name. Used request inputs: "
        f"{','.join(sorted(sent & expected))}, request input: "
        f"{','.join(sorted(sent))}")
  tensors = {}
  for alias, info in signature.inputs.items():
    if alias in request_inputs:
      proto = request_inputs[alias]
    elif alias in signature.defaults:
      proto = signature.defaults[alias]
    else:
      raise ServingError(
          _Code.INVALID_ARGUMENT,
          f"Signature input alias: {alias}(feed name: {info.name}) not found "
          f"in request and no default value provided. Inputs expected to be "
          f"in the request {{{','.join(sorted(sent))}}}, or default input "
          f"alias set: {','.join(sorted(signature.defaults))}")
    if proto.dtype != info.dtype:
      raise ServingError(
          _Code.INVALID_ARGUMENT,
          f"Expects arg[{alias}] to be {_dtype_name(info.dtype)} but "
          f"{_dtype_name(proto.dtype)} is provided")
    try:
      value = tf.make_ndarray(proto)
    except (TypeError, ValueError) as e:
      raise ServingError(_Code.INVALID_ARGUMENT,
                         f"tensor parsing error: {alias}") from e
    if not info.tensor_shape.unknown_rank:
      want = [d.size for d in info.tensor_shape.dim]
      if len(want) != value.ndim or any(
          w >= 0 and w != v for w, v in zip(want, value.shape)):
        raise ServingError(
            _Code.INVALID_ARGUMENT,
            f"input {alias} has shape {list(value.shape)}, the signature "
            f"expects {want} (-1: any size)")
    tensors[alias] = tf.constant(value, dtype=tf.dtypes.as_dtype(info.dtype))
  return tensors


def _output_aliases(signature, output_filter) -> list:
  aliases = []
  for alias in output_filter:
    if alias not in signature.outputs:
      raise ServingError(
          _Code.INVALID_ARGUMENT,
          f"output tensor alias not found in signature: {alias} Outputs "
          f"expected to be in the set {{{','.join(sorted(signature.outputs))}"
          "}.")
    if alias in aliases:
      raise ServingError(_Code.INVALID_ARGUMENT,
                         f"duplicate output tensor alias: {alias}")
    aliases.append(alias)
  return aliases or sorted(signature.outputs)


# TF Serving answers Predict with typed fields (Tensor::AsProtoField), which
# clients may read directly (`outputs["x"].float_val`), not tensor_content.
_PROTO_FIELDS = {tf.float32: "float_val", tf.float64: "double_val",
                 tf.int8: "int_val", tf.int16: "int_val", tf.int32: "int_val",
                 tf.uint8: "int_val", tf.uint16: "int_val",
                 tf.int64: "int64_val", tf.uint32: "uint32_val",
                 tf.uint64: "uint64_val", tf.bool: "bool_val",
                 tf.string: "string_val"}


def _tensor_proto(tensor: tf.Tensor) -> tensor_pb2.TensorProto:
  field = _PROTO_FIELDS.get(tensor.dtype)
  if field is None:  # e.g. half, complex: tensor_content will do
    return tf.make_tensor_proto(tensor.numpy(), dtype=tensor.dtype,
                                shape=tensor.shape)
  proto = tensor_pb2.TensorProto(dtype=tensor.dtype.as_datatype_enum,
                                 tensor_shape=tensor.shape.as_proto())
  getattr(proto, field).extend(tensor.numpy().ravel().tolist())
  return proto


class Servable:
  """One loaded model version: its SignatureDefs and callable signatures."""

  def __init__(self, name: str, version: int, path: str):
    self.name, self.version, self.path = name, version, path
    # The SignatureDefs as saved (dtypes, shapes, defaults), which is what
    # TF Serving checks requests against and returns as metadata.
    meta_graph = saved_model_utils.get_meta_graph_def(path,
                                                      tf.saved_model.SERVING)
    self.signature_defs = dict(meta_graph.signature_def)
    self._functions = dict(
        tf.saved_model.load(path, tags=[tf.saved_model.SERVING]).signatures)

  def signature(self, name: str):
    name = name or DEFAULT_SIGNATURE
    if name not in self.signature_defs or name not in self._functions:
      raise ServingError(_Code.FAILED_PRECONDITION,
                         f'Serving signature key "{name}" not found.')
    return self.signature_defs[name]

  def predict(self, request) -> predict_pb2.PredictResponse:
    name = request.model_spec.signature_name or DEFAULT_SIGNATURE
    signature = self.signature(name)
    aliases = _output_aliases(signature, request.output_filter)
    inputs = _input_tensors(signature, request.inputs)
    try:
      outputs = self._functions[name](**inputs)
    except tf.errors.OpError as e:
      raise ServingError(_CODES.get(e.error_code, _Code.UNKNOWN),
                         _op_error_message(e)) from e
    response = predict_pb2.PredictResponse()
    response.model_spec.name = self.name
    response.model_spec.version.value = self.version
    response.model_spec.signature_name = name
    for alias in aliases:
      response.outputs[alias].CopyFrom(_tensor_proto(outputs[alias]))
    return response

  def warm_up(self) -> None:
    """Runs each signature once so the first request does not pay for it.

    Replays TF Serving's warm-up file if the model has one, else sends every
    signature an empty batch; failures only mean a cold first request.
    """
    requests = []
    warmup_file = os.path.join(self.path, _WARMUP_FILE)
    if tf.io.gfile.exists(warmup_file):
      for record in tf.data.TFRecordDataset(warmup_file):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        if log.HasField("predict_log"):
          requests.append(log.predict_log.request)
    else:
      for name, signature in self.signature_defs.items():
        if name not in self._functions:
          continue
        request = predict_pb2.PredictRequest()
        request.model_spec.signature_name = name
        for alias, info in signature.inputs.items():
          if alias in signature.defaults:
            continue
          shape = ([0] if info.tensor_shape.unknown_rank else
                   [max(d.size, 0) for d in info.tensor_shape.dim])
          dtype = tf.dtypes.as_dtype(info.dtype)
          request.inputs[alias].CopyFrom(tf.make_tensor_proto(
              np.zeros(shape, dtype.as_numpy_dtype), dtype=dtype, shape=shape))
        requests.append(request)
    for request in requests:
      try:
        self.predict(request)
      except Exception as e:  # pylint: disable=broad-except
        logging.debug("warm-up of %s version %d, signature %r: %s", self.name,
                      self.version, request.model_spec.signature_name, e)


def _requested_version(model_spec) -> Optional[int]:
  if model_spec.version_label:
    # TF Serving without configured labels answers the same.
    raise ServingError(
        _Code.INVALID_ARGUMENT,
        f"Unrecognized servable version label: {model_spec.version_label}")
  return model_spec.version.value if model_spec.HasField("version") else None


def _fingerprint(path: str) -> Optional[Tuple]:
  """Names, sizes and mtimes of a version's files; None while they move."""
  try:
    files = []
    for root, _, names in tf.io.gfile.walk(path):
      for name in names:
        stat = tf.io.gfile.stat(os.path.join(root, name))
        files.append((os.path.relpath(os.path.join(root, name), path),
                      stat.length, stat.mtime_nsec))
    return tuple(sorted(files))
  except tf.errors.NotFoundError:
    return None


def _scan(base: str) -> Dict[str, Dict[int, str]]:
  """{model name: {version: path}} of the version directories under base."""
  models = {}
  try:
    names = tf.io.gfile.listdir(base)
  except tf.errors.NotFoundError:
    return models
  for name in (n.rstrip("/") for n in names):
    model_dir = os.path.join(base, name)
    if name.startswith(".") or not tf.io.gfile.isdir(model_dir):
      continue
    try:
      entries = [e.rstrip("/") for e in tf.io.gfile.listdir(model_dir)]
    except tf.errors.NotFoundError:
      continue
    # Like TF Serving, only all-digit names are versions: the Pusher's
    # temporary directories are ignored until renamed into place.
    models[name] = {int(e): os.path.join(model_dir, e) for e in entries
                    if e.isdigit()
                    and tf.io.gfile.isdir(os.path.join(model_dir, e))}
  return models


class ModelRepository:
  """The loaded versions of every model under `base`, kept in step with it."""

  def __init__(self, base: str, keep_versions: int = KEEP_VERSIONS,
               warm_up: bool = True):
    self.base = base
    self._keep = max(1, keep_versions)
    self._warm_up = warm_up
    # {name: {version: Servable}}, replaced whole and never changed in place,
    # so request threads read it without a lock and never see a half-swap.
    self._models: Dict[str, Dict[int, Servable]] = {}
    # {(name, version): (fingerprint of the files that failed, reason)}.
    self._failed: Dict[Tuple[str, int], Tuple[Tuple, str]] = {}
    self._waiting = set()  # versions without saved_model.pb, logged once
    self._poll_lock = threading.Lock()
    self._stop = threading.Event()
    self._thread = None

  def start(self, poll_seconds: float) -> None:
    """Polls base every poll_seconds on a daemon thread."""
    def loop():
      while not self._stop.wait(poll_seconds):
        try:
          self.poll()
        except Exception:  # pylint: disable=broad-except
          logging.exception("polling %s failed; retrying", self.base)
    self._thread = threading.Thread(target=loop, name="model-poller",
                                    daemon=True)
    self._thread.start()

  def stop(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join()

  def models(self) -> Dict[str, Tuple[int, ...]]:
    return {name: tuple(sorted(v)) for name, v in self._models.items()}

  def poll(self) -> None:
    """Loads new versions, drops vanished and surplus ones."""
    with self._poll_lock:
      on_disk = _scan(self.base)
      for name in sorted(set(on_disk) | set(self._models)):
        self._update(name, on_disk.get(name, {}))

  def _update(self, name: str, on_disk: Dict[int, str]) -> None:
    loaded = {v: s for v, s in self._models.get(name, {}).items()
              if v in on_disk}
    for version in sorted(set(self._models.get(name, {})) - set(loaded)):
      logging.info("model %s version %d is gone from disk: unloaded", name,
                   version)
    for version in sorted(on_disk, reverse=True):
      if version <= max(loaded, default=-1):
        break
      servable = self._load(name, version, on_disk[version])
      if servable is not None:
        loaded[version] = servable
        break
    for version in sorted(loaded)[:-self._keep]:
      del loaded[version]
      logging.info("model %s version %d unloaded (newer versions loaded)",
                   name, version)
    latest = max(loaded, default=-1)
    self._failed = {k: v for k, v in self._failed.items()
                    if k[0] != name or (k[1] in on_disk and k[1] > latest)}
    models = dict(self._models)
    if loaded:
      models[name] = loaded
    else:
      models.pop(name, None)
    self._models = models

  def _load(self, name: str, version: int, path: str) -> Optional[Servable]:
    if not (tf.io.gfile.exists(os.path.join(path, "saved_model.pb")) or
            tf.io.gfile.exists(os.path.join(path, "saved_model.pbtxt"))):
      if (name, version) not in self._waiting:
        self._waiting.add((name, version))
        logging.info("model %s version %d has no saved_model.pb yet; "
                     "waiting for it", name, version)
      return None
    fingerprint = _fingerprint(path)
    failed = self._failed.get((name, version))
    if fingerprint is None or (failed and failed[0] == fingerprint):
      return None  # still moving, or failed with these very files
    start = time.monotonic()
    try:
      servable = Servable(name, version, path)
      if self._warm_up:
        servable.warm_up()
    except Exception as e:  # pylint: disable=broad-except
      reason = " ".join(str(e).split()) or type(e).__name__
      self._failed = {**self._failed, (name, version): (fingerprint, reason)}
      serving = sorted(self._models.get(name, {}))
      logging.warning("model %s version %d failed to load from %s: %s; %s",
                      name, version, path, reason,
                      f"still serving version {serving[-1]}" if serving
                      else "the model has no version to serve")
      return None
    logging.info("model %s version %d loaded from %s in %.1f s "
                 "(signatures: %s)", name, version, path,
                 time.monotonic() - start,
                 ", ".join(sorted(s for s in servable.signature_defs
                                  if not s.startswith("__"))))
    return servable

  def get(self, name: str, version: Optional[int]) -> Servable:
    versions = self._models.get(name, {})
    if version is None and versions:
      return versions[max(versions)]
    if version in versions:
      return versions[version]
    request = (f"Latest({name})" if version is None
               else f"Specific({name}, {version})")
    raise ServingError(_Code.NOT_FOUND,
                       f"Servable not found for request: {request}")

  def predict(self, request) -> predict_pb2.PredictResponse:
    if not request.HasField("model_spec"):
      raise ServingError(_Code.INVALID_ARGUMENT, "Missing ModelSpec")
    return self.get(request.model_spec.name,
                    _requested_version(request.model_spec)).predict(request)

  def metadata(self, request):
    """GetModelMetadata: the SignatureDefMap, packed as TF Serving packs it."""
    if not request.HasField("model_spec"):
      raise ServingError(_Code.INVALID_ARGUMENT, "Missing ModelSpec")
    if not request.metadata_field:
      raise ServingError(_Code.INVALID_ARGUMENT, "GetModelMetadataRequest "
                         "must specify at least one metadata_field")
    for field in request.metadata_field:
      if field != _SIGNATURE_DEF:
        raise ServingError(_Code.INVALID_ARGUMENT,
                           f"Metadata field {field} is not supported")
    servable = self.get(request.model_spec.name,
                        _requested_version(request.model_spec))
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in servable.signature_defs.items():
      signature_defs.signature_def[key].CopyFrom(signature)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    response.metadata[_SIGNATURE_DEF].Pack(signature_defs)
    return response

  def status(self, request) -> get_model_status_pb2.GetModelStatusResponse:
    """AVAILABLE for loaded versions, END with the reason for failed ones."""
    if not request.HasField("model_spec"):
      raise ServingError(_Code.INVALID_ARGUMENT, "Missing ModelSpec")
    name = request.model_spec.name
    version = _requested_version(request.model_spec)
    states = {v: (_State.AVAILABLE, "") for v in self._models.get(name, {})}
    for (model, v), (_, reason) in list(self._failed.items()):
      if model == name and v not in states:
        states[v] = (_State.END, reason)
    if version is not None:
      if version not in states:
        raise ServingError(_Code.NOT_FOUND, f"Could not find version "
                           f"{version} of model {name}")
      states = {version: states[version]}
    if not states:
      raise ServingError(_Code.NOT_FOUND,
                         f"Could not find any versions of model {name}")
    response = get_model_status_pb2.GetModelStatusResponse()
    for v, (state, reason) in sorted(states.items()):
      status = response.model_version_status.add(version=v, state=state)
      status.status.SetInParent()  # OK, spelled out as TF Serving does
      if reason:
        status.status.error_code = _Code.UNKNOWN.value[0]
        status.status.error_message = reason
    return response


def _answer(context, method: str, call):
  """Runs call(); errors become the request's status, never a crash."""
  try:
    return call()
  except ServingError as e:
    code, message = e.code, e.message
  except Exception as e:  # pylint: disable=broad-except
    logging.exception("%s failed unexpectedly", method)
    code, message = _Code.INTERNAL, f"{type(e).__name__}: {e}"
  context.abort(code, message)


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):

  def __init__(self, repository: ModelRepository):
    self._repository = repository

  def Predict(self, request, context):  # pylint: disable=invalid-name
    return _answer(context, "Predict",
                   lambda: self._repository.predict(request))

  def GetModelMetadata(self, request, context):  # pylint: disable=invalid-name
    return _answer(context, "GetModelMetadata",
                   lambda: self._repository.metadata(request))


class _ModelService(model_service_pb2_grpc.ModelServiceServicer):

  def __init__(self, repository: ModelRepository):
    self._repository = repository

  def GetModelStatus(self, request, context):  # pylint: disable=invalid-name
    return _answer(context, "GetModelStatus",
                   lambda: self._repository.status(request))


# REST, like TF Serving's http_rest_api_handler (row format only).
_PREDICT_PATH = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+))?:predict")
_STATUS_PATH = re.compile(r"/v1/models/([^/:]+)(?:/versions/(\d+))?")
_HTTP_STATUS = {_Code.INVALID_ARGUMENT: 400, _Code.FAILED_PRECONDITION: 400,
                _Code.NOT_FOUND: 404, _Code.RESOURCE_EXHAUSTED: 429}


def _rest_model_spec(match, model_spec) -> None:
  model_spec.name = match.group(1)
  if match.group(2):
    model_spec.version.value = int(match.group(2))


def _from_json(value):
  if isinstance(value, dict) and set(value) == {"b64"}:
    return base64.b64decode(value["b64"])
  return [_from_json(v) for v in value] if isinstance(value, list) else value


def _to_json(value):
  if isinstance(value, list):
    return [_to_json(v) for v in value]
  if isinstance(value, bytes):
    try:
      return value.decode("utf-8")
    except UnicodeDecodeError:  # PNGs and other binary outputs
      return {"b64": base64.b64encode(value).decode("ascii")}
  return value


def _rest_request(repository, path: str, body: bytes):
  match = _PREDICT_PATH.fullmatch(path)
  if not match:
    raise ServingError(_Code.INVALID_ARGUMENT,
                       f"Malformed request: POST {path}")
  try:
    document = json.loads(body)
    instances = document["instances"]
    signature_name = document.get("signature_name", "")
  except (ValueError, KeyError, TypeError, AttributeError):
    instances = signature_name = None
  if not isinstance(instances, list) or not isinstance(signature_name, str):
    raise ServingError(_Code.INVALID_ARGUMENT, "expected a JSON object with "
                       "an \"instances\" list (row format)")
  request = predict_pb2.PredictRequest()
  _rest_model_spec(match, request.model_spec)
  request.model_spec.signature_name = signature_name
  signature = repository.get(
      request.model_spec.name, _requested_version(request.model_spec)
  ).signature(signature_name)
  # Bare values feed the one input without a default (e.g. `images`).
  required = [a for a in signature.inputs if a not in signature.defaults]
  columns = {}
  for instance in instances:
    if not (isinstance(instance, dict) and set(instance) != {"b64"}):
      if len(required) != 1:
        raise ServingError(_Code.INVALID_ARGUMENT, "instances must be "
                           f"objects keyed by input name: {sorted(required)}")
      instance = {required[0]: instance}
    for alias, value in instance.items():
      columns.setdefault(alias, []).append(_from_json(value))
  for alias, values in columns.items():
    info = signature.inputs.get(alias)  # unknown names fail in predict()
    try:
      request.inputs[alias].CopyFrom(tf.make_tensor_proto(
          values, dtype=tf.dtypes.as_dtype(info.dtype) if info else None))
    except (TypeError, ValueError) as e:
      raise ServingError(_Code.INVALID_ARGUMENT, f"input {alias}: {e}") from e
  return request


def _rest_predict(repository, path: str, body: bytes) -> dict:
  response = repository.predict(_rest_request(repository, path, body))
  outputs = {k: tf.make_ndarray(v).tolist()
             for k, v in sorted(response.outputs.items())}
  if len(outputs) == 1:
    return {"predictions": _to_json(next(iter(outputs.values())))}
  rows = {len(v) for v in outputs.values()}
  if len(rows) != 1:
    raise ServingError(_Code.INVALID_ARGUMENT, "outputs differ in batch "
                       "size; the row format cannot hold them")
  return {"predictions": [{k: _to_json(v[i]) for k, v in outputs.items()}
                          for i in range(rows.pop())]}


def _rest_status(repository, path: str) -> dict:
  match = _STATUS_PATH.fullmatch(path)
  if not match:
    raise ServingError(_Code.INVALID_ARGUMENT, f"Malformed request: GET {path}")
  request = get_model_status_pb2.GetModelStatusRequest()
  _rest_model_spec(match, request.model_spec)
  return json_format.MessageToDict(
      repository.status(request), including_default_value_fields=True,
      preserving_proto_field_name=True)


def _rest_handler(repository: ModelRepository, max_body_bytes: int):
  class Handler(http.server.BaseHTTPRequestHandler):
    """POST :predict and GET model status, answered as JSON."""

    def do_POST(self):  # pylint: disable=invalid-name
      def call():
        length = int(self.headers.get("Content-Length") or 0)
        if length > max_body_bytes:
          raise ServingError(_Code.RESOURCE_EXHAUSTED, f"request of {length} "
                             f"bytes, more than {max_body_bytes}")
        return _rest_predict(repository, self._path(), self.rfile.read(length))
      self._send(call)

    def do_GET(self):  # pylint: disable=invalid-name
      self._send(lambda: _rest_status(repository, self._path()))

    def _path(self) -> str:
      return urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)

    def _send(self, call):
      try:
        status, body = 200, call()
      except ServingError as e:
        status, body = _HTTP_STATUS.get(e.code, 500), {"error": e.message}
      except Exception as e:  # pylint: disable=broad-except
        logging.exception("REST %s %s failed", self.command, self.path)
        status, body = 500, {"error": f"{type(e).__name__}: {e}"}
      data = json.dumps(body).encode("utf-8")
      self.send_response(status)
      self.send_header("Content-Type", "application/json")
      self.send_header("Content-Length", str(len(data)))
      self.end_headers()
      self.wfile.write(data)

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
      logging.debug("REST %s " + format, self.address_string(), *args)

  return Handler


def _host_port(host: str, port: int) -> str:
  return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _HTTPServer(http.server.ThreadingHTTPServer):
  daemon_threads = True


class _HTTP6Server(_HTTPServer):
  address_family = socket.AF_INET6


@dataclasses.dataclass
class ServerHandle:
  """A running server: where it listens, its models, and stop()."""
  host: str
  port: int
  rest_port: Optional[int]
  repository: ModelRepository
  grpc_server: grpc.Server
  http_server: Optional[http.server.HTTPServer] = None

  @property
  def address(self) -> str:
    """host:port for clients (a wildcard host becomes localhost)."""
    wildcard = self.host in ("0.0.0.0", "::", "")
    return _host_port("localhost" if wildcard else self.host, self.port)

  def wait(self) -> None:
    self.grpc_server.wait_for_termination()

  def stop(self, grace: float = 1.0) -> None:
    self.repository.stop()
    if self.http_server is not None:
      self.http_server.shutdown()
      self.http_server.server_close()
    self.grpc_server.stop(grace).wait()


def start_server(model_base: str, host: str = "127.0.0.1", port: int = 0,
                 rest_port: Optional[int] = None, poll_seconds: float = 1.0,
                 max_workers: int = 8,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 tls_cert: Optional[str] = None, tls_key: Optional[str] = None,
                 keep_versions: int = KEEP_VERSIONS) -> ServerHandle:
  """Loads the models under model_base and serves them until stop().

  port / rest_port 0 pick a free port (read it from the handle); rest_port
  None serves no REST. tls_cert and tls_key (PEM files) put both on TLS.
  Raises OSError when a port cannot be bound.
  """
  if bool(tls_cert) != bool(tls_key):
    raise ValueError("TLS needs both a certificate and its key")
  repository = ModelRepository(model_base, keep_versions)
  repository.poll()  # like TF Serving: serve once the initial models loaded
  if not repository.models():
    logging.warning("no loadable model under %s yet; polling every %g s",
                    model_base, poll_seconds)
  repository.start(poll_seconds)
  server = grpc.server(
      concurrent.futures.ThreadPoolExecutor(max_workers=max_workers),
      options=[("grpc.max_receive_message_length", max_message_bytes),
               ("grpc.max_send_message_length", max_message_bytes)])
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
      _PredictionService(repository), server)
  model_service_pb2_grpc.add_ModelServiceServicer_to_server(
      _ModelService(repository), server)
  handle = ServerHandle(host, 0, None, repository, server)
  try:
    if tls_cert:
      with open(tls_key, "rb") as key, open(tls_cert, "rb") as cert:
        credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
      handle.port = server.add_secure_port(_host_port(host, port), credentials)
    else:
      handle.port = server.add_insecure_port(_host_port(host, port))
    server.start()
    if rest_port is not None:
      server_class = _HTTP6Server if ":" in host else _HTTPServer
      handle.http_server = server_class(
          (host, rest_port), _rest_handler(repository, max_message_bytes))
      if tls_cert:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(tls_cert, tls_key)
        handle.http_server.socket = context.wrap_socket(
            handle.http_server.socket, server_side=True)
      handle.rest_port = handle.http_server.server_address[1]
      threading.Thread(target=handle.http_server.serve_forever, name="rest",
                       daemon=True).start()
  except (OSError, RuntimeError) as e:  # grpcio raises RuntimeError on bind
    handle.http_server = None
    handle.stop(grace=0)
    raise OSError(f"cannot serve on {host} (gRPC port {port}, REST port "
                  f"{rest_port}): {e}") from e
  logging.info("serving %s: gRPC at %s%s%s", model_base,
               _host_port(host, handle.port),
               f", REST on port {handle.rest_port}" if handle.rest_port
               else "", " (TLS)" if tls_cert else "")
  return handle
