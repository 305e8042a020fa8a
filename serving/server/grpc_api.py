"""TF Serving's gRPC API: PredictionService.Predict and GetModelMetadata,
ModelService.GetModelStatus, answered from a ModelRepository.

Classify, Regress and MultiInference are not implemented (UNIMPLEMENTED).
"""

import concurrent.futures
from typing import Tuple

from absl import logging
import grpc
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import prediction_service_pb2_grpc

from schema.settings import ServeSettings
from serving.server.errors import Code
from serving.server.errors import ServingError
from serving.server import metrics as metrics_lib
from serving.server.repository import ModelRepository


def host_port(host: str, port: int) -> str:
  """A gRPC address; IPv6 hosts in brackets."""
  return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _answer(context, method: str, call):
  """Runs call(); errors become the request's status, never a crash."""
  try:
    return call()
  except ServingError as e:
    code, message = e.code, e.message
  except Exception as e:  # pylint: disable=broad-except
    logging.exception("%s failed unexpectedly", method)
    code, message = Code.INTERNAL, f"{type(e).__name__}: {e}"
  context.abort(code, message)


class PredictionService(
    prediction_service_pb2_grpc.PredictionServiceServicer):
  """Predict and GetModelMetadata."""

  def __init__(self, repository: ModelRepository,
               metrics: metrics_lib.ServerMetrics):
    self._repository = repository
    self._metrics = metrics

  def Predict(self, request, context):  # pylint: disable=invalid-name
    return _answer(context, "Predict", lambda: self._metrics.observe(
        metrics_lib.PREDICT, metrics_lib.GRPC, lambda: request,
        lambda: self._repository.predict(request)))

  def GetModelMetadata(self, request, context):  # pylint: disable=invalid-name
    return _answer(context, "GetModelMetadata", lambda: self._metrics.observe(
        metrics_lib.METADATA, metrics_lib.GRPC, lambda: request,
        lambda: self._repository.metadata(request)))


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
  """GetModelStatus."""

  def __init__(self, repository: ModelRepository,
               metrics: metrics_lib.ServerMetrics):
    self._repository = repository
    self._metrics = metrics

  def GetModelStatus(self, request, context):  # pylint: disable=invalid-name
    return _answer(context, "GetModelStatus", lambda: self._metrics.observe(
        metrics_lib.STATUS, metrics_lib.GRPC, lambda: request,
        lambda: self._repository.status(request)))


def serve(repository: ModelRepository, settings: ServeSettings,
          metrics: metrics_lib.ServerMetrics) -> Tuple[grpc.Server, int]:
  """Starts both services on settings' host and port; the server and the
  port bound (the free one picked, for port 0).

  Requests above max_message_bytes get RESOURCE_EXHAUSTED from gRPC itself,
  as from TF Serving. Raises OSError (e.g. a missing PEM file) or grpcio's
  RuntimeError when the port cannot be bound, with nothing left running.
  """
  server = grpc.server(
      concurrent.futures.ThreadPoolExecutor(max_workers=settings.max_workers),
      options=[("grpc.max_receive_message_length",
                settings.max_message_bytes),
               ("grpc.max_send_message_length", settings.max_message_bytes)])
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
      PredictionService(repository, metrics), server)
  model_service_pb2_grpc.add_ModelServiceServicer_to_server(
      ModelService(repository, metrics), server)
  address = host_port(settings.host, settings.port)
  try:
    if settings.tls_cert:
      # Local PEM files, as the REST server's ssl module needs them too.
      with open(settings.tls_key, "rb") as key, \
          open(settings.tls_cert, "rb") as cert:
        credentials = grpc.ssl_server_credentials([(key.read(),
                                                    cert.read())])
      port = server.add_secure_port(address, credentials)
    else:
      port = server.add_insecure_port(address)
    server.start()
  except BaseException:
    server.stop(0)
    raise
  return server, port
