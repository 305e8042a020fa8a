"""A TF-Serving-compatible model server in Python, for development and tests.

Serves every model under a base folder laid out as TF Serving reads it,
BASE/<model name>/<integer version>/saved_model.pb (schema.layout), through
TF Serving's own gRPC API (PredictionService.Predict and GetModelMetadata,
ModelService.GetModelStatus from `tensorflow_serving.apis`) and, optionally,
its REST API (POST /v1/models/NAME[/versions/N]:predict with "instances",
GET /v1/models/NAME[/versions/N] for the status; /labels/LABEL in place of
/versions/N). A client written against it works unchanged against
tensorflow_model_server, status codes included.

  handle = start_server("OUT/serving", ServeSettings(port=0, rest_port=0))
  handle.address, handle.rest_port
  handle.stop()

The modules, one concern each:
  errors      ServingError and TF Serving's status codes
  tensors     request TensorProtos -> checked tensors -> response protos
  repository  Servable, ModelRepository: loading, polling, swapping,
              warm-up, version labels, status, metadata
  version_labels  the stable/canary labels and their history in the
              serving folder (cxr promote / rollback write them)
  grpc_api    the PredictionService and ModelService servicers
  rest        the REST handler and its JSON
  metrics     Prometheus metrics of both (--monitoring-port)
  request_log a sampled PredictionLog of answered Predicts (--log-requests)
  batching    TF Serving's server-side batching (--batching-parameters-file)
Both front ends answer every request through the repository's predict,
metadata and status, so what wraps those (batching, metrics, request logs)
serves gRPC and REST alike.

Not implemented: Classify, Regress, MultiInference (UNIMPLEMENTED).
"""

import dataclasses
import http.server
import ipaddress
from typing import Optional

from absl import logging
import grpc

from schema.settings import ServeSettings
from serving.server import batching
from serving.server import grpc_api
from serving.server import metrics as metrics_lib
from serving.server import request_log as request_log_lib
from serving.server import rest
from serving.server import tensors
from serving.server.errors import ServingError
from serving.server.repository import KEEP_VERSIONS
from serving.server.repository import ModelRepository
from serving.server.repository import Servable

__all__ = ["KEEP_VERSIONS", "ModelRepository", "Servable", "ServerHandle",
           "ServingError", "start_server"]


@dataclasses.dataclass
class ServerHandle:
  """A running server: where it listens, its models, and stop()."""
  host: str
  port: int
  rest_port: Optional[int]
  repository: ModelRepository
  grpc_server: grpc.Server
  metrics: metrics_lib.ServerMetrics
  http_server: Optional[http.server.HTTPServer] = None
  monitoring_port: Optional[int] = None
  request_log: Optional[request_log_lib.RequestLog] = None
  batcher: Optional[batching.BatchScheduler] = None

  @property
  def address(self) -> str:
    """host:port for clients (a wildcard host becomes localhost)."""
    wildcard = self.host in ("0.0.0.0", "::", "")
    return grpc_api.host_port("localhost" if wildcard else self.host,
                              self.port)

  def wait(self) -> None:
    self.grpc_server.wait_for_termination()

  def stop(self, grace: float = 1.0) -> None:
    self.repository.stop()
    self.metrics.stop()
    if self.http_server is not None:
      self.http_server.shutdown()
      self.http_server.server_close()
    self.grpc_server.stop(grace).wait()
    if self.batcher is not None:
      self.batcher.stop()
    if self.request_log is not None:
      self.request_log.close()


def start_server(model_base: str, settings: ServeSettings = ServeSettings(),
                 keep_versions: int = KEEP_VERSIONS) -> ServerHandle:
  """Loads the models under model_base and serves them until stop().

  Args:
    model_base: BASE/<model name>/<version>/, local or gs://; polled every
      settings.poll_seconds for new versions.
    settings: where to listen and how much to take on. port / rest_port 0
      pick a free port (read it from the handle); rest_port None serves no
      REST; tls_cert and tls_key (local PEM files) put both on TLS.
    keep_versions: versions of a model kept loaded, the latest included.

  Returns:
    The running server's handle.

  Raises:
    OSError: a port cannot be bound or a PEM file read.
  """
  repository = ModelRepository(
      model_base, tensors.RequestLimits(settings.max_batch,
                                        settings.max_input_bytes),
      keep_versions)
  batcher = None
  if settings.batching_parameters_file:
    batcher = batching.BatchScheduler(
        batching.read_parameters(settings.batching_parameters_file))
    repository.batcher = batcher
  metrics = metrics_lib.ServerMetrics(repository)
  repository.on_load = metrics.load_attempt
  log = None
  if settings.log_requests:
    log = request_log_lib.RequestLog(settings.log_requests,
                                     settings.log_sample, settings.log_images,
                                     settings.log_file_bytes)
    repository.on_predict = log.record
  repository.poll()  # like TF Serving: serve once the initial models loaded
  if not repository.models():
    logging.warning("no loadable model under %s yet; polling every %g s",
                    model_base, settings.poll_seconds)
  repository.start(settings.poll_seconds)
  try:
    grpc_server, port = grpc_api.serve(repository, settings, metrics)
  except (OSError, RuntimeError) as e:  # grpcio raises RuntimeError on bind
    repository.stop()
    if batcher is not None:
      batcher.stop()
    raise _bind_error(settings, e) from e
  handle = ServerHandle(settings.host, port, None, repository, grpc_server,
                        metrics, request_log=log, batcher=batcher)
  try:
    if settings.rest_port is not None:
      handle.http_server = rest.serve(repository, settings, metrics)
      handle.rest_port = handle.http_server.server_address[1]
    if settings.monitoring_port is not None:
      handle.monitoring_port = metrics.serve(settings.host,
                                             settings.monitoring_port)
  except OSError as e:
    handle.stop(grace=0)
    raise _bind_error(settings, e) from e
  if not settings.tls_cert and not is_loopback(settings.host):
    logging.warning(
        "serving on %s without TLS and without authentication: anyone who "
        "can reach the port can call the models; use --tls-cert/--tls-key "
        "and a proxy that authenticates, or --host 127.0.0.1",
        settings.host)
  logging.info("serving %s: gRPC at %s%s%s%s", model_base,
               grpc_api.host_port(settings.host, handle.port),
               f", REST on port {handle.rest_port}" if handle.rest_port
               else "", " (TLS)" if settings.tls_cert else "",
               f", metrics on port {handle.monitoring_port}"
               if handle.monitoring_port else "")
  return handle


def is_loopback(host: str) -> bool:
  """Whether an address to listen on is this machine's loopback only."""
  if host == "localhost":
    return True
  try:
    return ipaddress.ip_address(host).is_loopback
  except ValueError:  # a host name: it may resolve to anything
    return False


def _bind_error(settings: ServeSettings, error: Exception) -> OSError:
  return OSError(f"cannot serve on {settings.host} (gRPC port "
                 f"{settings.port}, REST port {settings.rest_port}, "
                 f"monitoring port {settings.monitoring_port}): {error}")
