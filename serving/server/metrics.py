"""Prometheus metrics of `cxr serve` (`--monitoring-port`), by prometheus-client.

Named as TF Serving names its own where it has one (its monitoring
exports `/tensorflow/serving/request_count` as
`:tensorflow:serving:request_count`):

* `:tensorflow:serving:request_count` (counter; prometheus-client writes
  its samples with the `_total` suffix OpenMetrics asks of counters, TF
  Serving without): requests by `model_name`, `version`, `signature` and
  `status` (the gRPC code's name, OK included). TF Serving labels
  model_name and status only; the other two are this server's.
* `:tensorflow:serving:request_latency` (histogram, microseconds, TF
  Serving's buckets: 10 x 1.8^k for k < 33) by `model_name`, `API`
  (predict, get_model_metadata, get_model_status) and `entrypoint` (GRPC,
  REST).
* `:tensorflow:cc:saved_model:load_attempt_count` (counter): version loads
  by `model_path` and `status` (success, fail).
* `cxr_serving_loaded_version` (gauge, 1 per loaded version, by
  `model_name` and `version`) and `cxr_serving_version_label` (gauge: the
  version a `label` names now): TF Serving has no such metric.

Label values come from the server's own models, never from the request
alone, so a client sending random model or signature names cannot grow the
number of series: an unknown model is recorded as "", an unknown
signature as "".
"""

import time
from absl import logging
from prometheus_client import CollectorRegistry
from prometheus_client import Counter
from prometheus_client import Histogram
from prometheus_client import start_http_server
from prometheus_client.core import GaugeMetricFamily

from schema import contract
from serving.server.errors import Code
from serving.server.errors import ServingError

GRPC, REST = "GRPC", "REST"
PREDICT, METADATA, STATUS = ("predict", "get_model_metadata",
                             "get_model_status")
# TF Serving's request_latency buckets (util.cc): Exponential(10, 1.8, 33).
LATENCY_BUCKETS_US = tuple(10 * 1.8**k for k in range(33))


class _Loaded:
  """Collects the loaded versions and the labels when scraped."""

  def __init__(self, repository):
    self._repository = repository

  def collect(self):
    loaded = GaugeMetricFamily(
        "cxr_serving_loaded_version", "1 for each model version loaded",
        labels=["model_name", "version"])
    for name, versions in sorted(self._repository.models().items()):
      for version in versions:
        loaded.add_metric([name, str(version)], 1)
    yield loaded
    labels = GaugeMetricFamily(
        "cxr_serving_version_label", "the version a label names",
        labels=["model_name", "label"])
    for name, named in sorted(self._repository.labels().items()):
      for label, version in sorted(named.items()):
        labels.add_metric([name, label], version)
    yield labels


class ServerMetrics:
  """One server's metrics, in a registry of its own."""

  def __init__(self, repository):
    self.registry = CollectorRegistry()
    self._repository = repository
    self.requests = Counter(
        ":tensorflow:serving:request_count", "The total number of requests.",
        ["model_name", "version", "signature", "status"],
        registry=self.registry)
    self.latency = Histogram(
        ":tensorflow:serving:request_latency",
        "Distribution of wall time (in microseconds) for a request.",
        ["model_name", "API", "entrypoint"], buckets=LATENCY_BUCKETS_US,
        registry=self.registry)
    self.loads = Counter(
        ":tensorflow:cc:saved_model:load_attempt_count",
        "The number of times a SavedModel load was attempted.",
        ["model_path", "status"], registry=self.registry)
    self.registry.register(_Loaded(repository))
    self._http = None

  def serve(self, host: str, port: int) -> int:
    """Exposes the metrics over HTTP (any path, TF Serving's
    /monitoring/prometheus/metrics included); returns the port bound."""
    self._http, _ = start_http_server(port, addr=host,
                                      registry=self.registry)
    return self._http.server_address[1]

  def stop(self) -> None:
    if self._http is not None:
      self._http.shutdown()
      self._http.server_close()

  def load_attempt(self, path: str, ok: bool) -> None:
    self.loads.labels(path, "success" if ok else "fail").inc()

  def observe(self, api: str, entrypoint: str, request, call):
    """call()'s answer, its outcome and time recorded under the model spec
    of request() (the request once call() has parsed it; None if it could
    not); errors pass through."""
    start = time.perf_counter()
    status, response = Code.OK, None
    try:
      response = call()
      return response
    except ServingError as e:
      status = e.code
      raise
    except Exception:
      status = Code.INTERNAL
      raise
    finally:
      try:
        model, version, signature = self._labels(api, request(), response)
        self.requests.labels(model, version, signature, status.name).inc()
        self.latency.labels(model, api, entrypoint).observe(
            (time.perf_counter() - start) * 1e6)
      except Exception:  # pylint: disable=broad-except
        # Counting must never fail the request it counts.
        logging.exception("recording the metrics of a %s call failed", api)

  def _labels(self, api: str, request, response):
    """(model, version, signature) label values, bounded by what is
    loaded."""
    spec = request.model_spec if request is not None else None
    loaded = self._repository.models()
    if spec is None or spec.name not in loaded:
      return "", "", ""
    servable = self._servable(spec)
    # Predict and GetModelMetadata answer the version that served them.
    if (response is not None
        and "model_spec" in response.DESCRIPTOR.fields_by_name
        and response.model_spec.HasField("version")):
      version = str(response.model_spec.version.value)
    else:
      version = str(servable.version) if servable else ""
    signature = ""
    if api == PREDICT and servable is not None:
      wanted = spec.signature_name or contract.SERVING_DEFAULT
      if wanted in servable.signature_defs:
        signature = wanted
    return spec.name, version, signature

  def _servable(self, spec):
    """The loaded version a model spec names (by number, label or as the
    latest), or None."""
    try:
      return self._repository.get(
          spec.name, self._repository.requested_version(spec))
    except ServingError:
      return None
