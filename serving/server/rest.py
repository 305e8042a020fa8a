"""TF Serving's REST API (http_rest_api_handler), row format only.

POST /v1/models/NAME[/versions/N | /labels/LABEL]:predict with
{"instances": [...]} answers {"predictions": [...]}; GET
/v1/models/NAME[/versions/N | /labels/LABEL] answers the status. Binary
values travel as {"b64": "..."}, both ways.
"""

import base64
import http.server
import json
import re
import socket
import ssl
import sys
import threading
import urllib.parse

from absl import logging
from google.protobuf import json_format
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import predict_pb2

from schema.settings import ServeSettings
from serving.server.errors import Code
from serving.server.errors import ServingError
from serving.server import metrics as metrics_lib
from serving.server.repository import ModelRepository

# TF Serving's paths: a model, optionally one version or one label of it.
_MODEL = r"/v1/models/([^/:]+)(?:/versions/(\d+)|/labels/([^/:]+))?"
_PREDICT_PATH = re.compile(_MODEL + ":predict")
_STATUS_PATH = re.compile(_MODEL)
_HTTP_STATUS = {Code.INVALID_ARGUMENT: 400, Code.FAILED_PRECONDITION: 400,
                Code.NOT_FOUND: 404, Code.RESOURCE_EXHAUSTED: 429}


_MAX_VERSION = 2**63 - 1  # an int64, as the ModelSpec holds it
# A tensor has at most 254 dimensions (TensorShape's kMaxDims); deeper JSON
# lists cannot be a tensor, and converting them would overflow the stack.
_MAX_DEPTH = 254


def _model_spec(match, model_spec) -> None:
  model_spec.name = match.group(1)
  if match.group(2):
    version = int(match.group(2))
    if version > _MAX_VERSION:
      raise ServingError(Code.INVALID_ARGUMENT,
                         f"version {match.group(2)} is not an int64")
    model_spec.version.value = version
  elif match.group(3):
    model_spec.version_label = match.group(3)


def _from_json(value, depth: int = 0):
  if depth > _MAX_DEPTH:
    raise ServingError(Code.INVALID_ARGUMENT, "JSON nested too deeply: a "
                       f"tensor has at most {_MAX_DEPTH} dimensions")
  if isinstance(value, dict) and set(value) == {"b64"}:
    try:
      return base64.b64decode(value["b64"], validate=True)
    # binascii.Error, or ValueError for text that is not ASCII.
    except (ValueError, TypeError) as e:
      raise ServingError(Code.INVALID_ARGUMENT,
                         f"malformed base64 value: {e}") from e
  return ([_from_json(v, depth + 1) for v in value] if isinstance(value, list)
          else value)


def _to_json(value):
  if isinstance(value, list):
    return [_to_json(v) for v in value]
  if isinstance(value, bytes):
    try:
      return value.decode("utf-8")
    except UnicodeDecodeError:  # PNGs and other binary outputs
      return {"b64": base64.b64encode(value).decode("ascii")}
  return value


def predict_request(repository: ModelRepository, path: str, body: bytes
                    ) -> predict_pb2.PredictRequest:
  """A :predict call's JSON body -> the PredictRequest gRPC would carry."""
  match = _PREDICT_PATH.fullmatch(path)
  if not match:
    raise ServingError(Code.INVALID_ARGUMENT,
                       f"Malformed request: POST {path}")
  try:
    document = json.loads(body)
    instances = document["instances"]
    signature_name = document.get("signature_name", "")
  except RecursionError as e:
    raise ServingError(Code.INVALID_ARGUMENT,
                       "JSON nested too deeply") from e
  except (ValueError, KeyError, TypeError, AttributeError):
    instances = signature_name = None
  if not isinstance(instances, list) or not isinstance(signature_name, str):
    raise ServingError(Code.INVALID_ARGUMENT, "expected a JSON object with "
                       "an \"instances\" list (row format)")
  request = predict_pb2.PredictRequest()
  _model_spec(match, request.model_spec)
  request.model_spec.signature_name = signature_name
  signature = repository.get(
      request.model_spec.name,
      repository.requested_version(request.model_spec)
  ).signature(signature_name)
  # Bare values feed the one input without a default (e.g. `images`).
  required = [a for a in signature.inputs if a not in signature.defaults]
  columns = {}
  for instance in instances:
    if not (isinstance(instance, dict) and set(instance) != {"b64"}):
      if len(required) != 1:
        raise ServingError(Code.INVALID_ARGUMENT, "instances must be "
                           f"objects keyed by input name: {sorted(required)}")
      instance = {required[0]: instance}
    for alias, value in instance.items():
      columns.setdefault(alias, []).append(_from_json(value))
  for alias, values in columns.items():
    info = signature.inputs.get(alias)  # unknown names fail in predict()
    try:
      request.inputs[alias].CopyFrom(tf.make_tensor_proto(
          values, dtype=tf.dtypes.as_dtype(info.dtype) if info else None))
    # OverflowError: an integer beyond the input's dtype, e.g. 10**30.
    except (TypeError, ValueError, OverflowError) as e:
      raise ServingError(Code.INVALID_ARGUMENT, f"input {alias}: {e}") from e
  return request


def predict(repository: ModelRepository, path: str, body: bytes,
            metrics: metrics_lib.ServerMetrics) -> dict:
  """POST :predict -> {"predictions": one row per instance}."""
  parsed = []
  def call():
    parsed.append(predict_request(repository, path, body))
    return repository.predict(parsed[0])
  response = metrics.observe(metrics_lib.PREDICT, metrics_lib.REST,
                             lambda: parsed[0] if parsed else None, call)
  outputs = {k: tf.make_ndarray(v).tolist()
             for k, v in sorted(response.outputs.items())}
  if len(outputs) == 1:
    return {"predictions": _to_json(next(iter(outputs.values())))}
  rows = {len(v) for v in outputs.values()}
  if len(rows) != 1:
    raise ServingError(Code.INVALID_ARGUMENT, "outputs differ in batch "
                       "size; the row format cannot hold them")
  return {"predictions": [{k: _to_json(v[i]) for k, v in outputs.items()}
                          for i in range(rows.pop())]}


def status(repository: ModelRepository, path: str,
           metrics: metrics_lib.ServerMetrics) -> dict:
  """GET a model's (or a version's) status, as GetModelStatus's JSON."""
  request = get_model_status_pb2.GetModelStatusRequest()
  def call():
    match = _STATUS_PATH.fullmatch(path)
    if not match:
      raise ServingError(Code.INVALID_ARGUMENT,
                         f"Malformed request: GET {path}")
    _model_spec(match, request.model_spec)
    return repository.status(request)
  response = metrics.observe(metrics_lib.STATUS, metrics_lib.REST,
                             lambda: request, call)
  return json_format.MessageToDict(
      response, including_default_value_fields=True,
      preserving_proto_field_name=True)


def content_length(header, max_body_bytes: int) -> int:
  """The body's length from its Content-Length header, checked: the body
  is read by it, never to the end of the stream."""
  if header is None:
    raise ServingError(Code.INVALID_ARGUMENT, "Content-Length required")
  if not header.strip().isdigit():
    raise ServingError(Code.INVALID_ARGUMENT,
                       f"malformed Content-Length: {header[:40]!r}")
  length = int(header)
  if length > max_body_bytes:
    raise ServingError(Code.RESOURCE_EXHAUSTED, f"request of {length} "
                       f"bytes, more than {max_body_bytes}")
  return length


def handler(repository: ModelRepository, settings: ServeSettings,
            metrics: metrics_lib.ServerMetrics):
  """The request handler class of an HTTP server over repository."""

  class Handler(http.server.BaseHTTPRequestHandler):
    """POST :predict and GET model status, answered as JSON."""

    # Seconds a client may pause while sending a request (socket timeout).
    timeout = settings.rest_timeout_seconds

    def do_POST(self):  # pylint: disable=invalid-name
      def call():
        length = content_length(self.headers.get("Content-Length"),
                                settings.max_message_bytes)
        return predict(repository, self._path(), self.rfile.read(length),
                       metrics)
      self._send(call)

    def do_GET(self):  # pylint: disable=invalid-name
      self._send(lambda: status(repository, self._path(), metrics))

    def _path(self) -> str:
      return urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)

    def _send(self, call):
      try:
        code, body = 200, call()
      except ServingError as e:
        code, body = _HTTP_STATUS.get(e.code, 500), {"error": e.message}
      except Exception:  # pylint: disable=broad-except
        # The details stay in the server's log.
        logging.exception("REST %s %s failed", self.command, self.path)
        code, body = 500, {"error": "internal error; see the server's log"}
      data = json.dumps(body).encode("utf-8")
      self.send_response(code)
      self.send_header("Content-Type", "application/json")
      self.send_header("Content-Length", str(len(data)))
      self.end_headers()
      self.wfile.write(data)

    def log_message(self, format, *args):  # pylint: disable=redefined-builtin
      logging.debug("REST %s " + format, self.address_string(), *args)

  return Handler


class _HTTPServer(http.server.ThreadingHTTPServer):
  """One thread per connection, at most max_connections at once; TLS
  handshakes run in the connection's thread, under its timeout, so one
  silent client cannot hold up the others."""
  daemon_threads = True
  tls_context = None
  timeout_seconds = None
  connections = None  # a BoundedSemaphore of the connections allowed

  def process_request(self, request, client_address):
    if not self.connections.acquire(blocking=False):
      logging.warning("REST: %d connections open; refusing %s",
                      self.max_connections, client_address[0])
      self.shutdown_request(request)
      return
    try:
      super().process_request(request, client_address)
    except BaseException:
      self.connections.release()
      raise

  def process_request_thread(self, request, client_address):
    try:
      super().process_request_thread(request, client_address)
    finally:
      self.connections.release()

  def finish_request(self, request, client_address):
    request.settimeout(self.timeout_seconds)
    if self.tls_context is None:
      super().finish_request(request, client_address)
      return
    with self.tls_context.wrap_socket(request, server_side=True) as tls:
      super().finish_request(tls, client_address)

  def handle_error(self, request, client_address):
    error = sys.exc_info()[1]
    if isinstance(error, (ConnectionError, TimeoutError, ssl.SSLError)):
      # A client that went away, stalled or spoke no TLS: not our fault.
      logging.debug("REST: %s: %s", client_address[0], error)
      return
    logging.exception("REST: connection from %s failed", client_address[0])


class _HTTP6Server(_HTTPServer):
  address_family = socket.AF_INET6


def serve(repository: ModelRepository, settings: ServeSettings,
          metrics: metrics_lib.ServerMetrics) -> http.server.HTTPServer:
  """Serves REST on settings' host and rest_port (0: a free one; read it
  from server_address) on a daemon thread, over TLS if settings say so.

  Bodies above max_message_bytes get RESOURCE_EXHAUSTED (HTTP 429). Raises
  OSError when the port cannot be bound or the PEM files read.
  """
  server_class = _HTTP6Server if ":" in settings.host else _HTTPServer
  server = server_class((settings.host, settings.rest_port),
                        handler(repository, settings, metrics))
  server.timeout_seconds = settings.rest_timeout_seconds
  server.max_connections = settings.max_connections
  server.connections = threading.BoundedSemaphore(settings.max_connections)
  try:
    if settings.tls_cert:
      context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
      context.load_cert_chain(settings.tls_cert, settings.tls_key)
      server.tls_context = context
  except BaseException:
    server.server_close()
    raise
  threading.Thread(target=server.serve_forever, name="rest",
                   daemon=True).start()
  return server
