"""cxr serve's Prometheus metrics, scraped and parsed with prometheus-client."""

import base64
import json
import os
import urllib.error
import urllib.request

import grpc
from prometheus_client.parser import text_string_to_metric_families
import pytest
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc

from schema.settings import ServeSettings
from serving import server
from tests.test_server import BINARY, POLL, _push_copy, _request, _stub
from tests.test_server import _wait_for, png
# model_base: the test models, exported once per session (conftest.py).
from tests.test_server import model_base  # noqa: F401  pylint: disable=unused-import

REQUESTS = ":tensorflow:serving:request_count"
LATENCY = ":tensorflow:serving:request_latency"
LOADS = ":tensorflow:cc:saved_model:load_attempt_count"


def _scrape(port, path="/monitoring/prometheus/metrics"):
  """{(sample name, sorted labels): value} of one scrape."""
  with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}",
                              timeout=30) as answer:
    text = answer.read().decode()
  return {(s.name, tuple(sorted(s.labels.items()))): s.value
          for family in text_string_to_metric_families(text)
          for s in family.samples}


def _value(samples, name, **labels):
  return samples.get((name, tuple(sorted(labels.items()))), 0)


def _rest_predict(port, model):
  body = json.dumps({"instances": [
      {"b64": base64.b64encode(png(40, 50)).decode()}]}).encode()
  try:
    with urllib.request.urlopen(
        f"http://127.0.0.1:{port}/v1/models/{model}:predict", data=body,
        timeout=60) as answer:
      return answer.status
  except urllib.error.HTTPError as e:
    return e.code


def test_metrics_count_every_request_by_model_version_signature_status(
    tmp_path, model_base):
  base = tmp_path / "serving"
  _push_copy(os.path.join(model_base, BINARY, "1"), str(base / BINARY), 1)
  handle = server.start_server(str(base), ServeSettings(
      port=0, rest_port=0, monitoring_port=0, poll_seconds=POLL))
  try:
    stub = _stub(handle.address)
    for _ in range(3):
      stub.Predict(_request(), timeout=60)
    stub.Predict(_request(signature="gradcam", images=[png(40, 50)]),
                 timeout=60)
    failing = [(_request(images=[b"not an image"]),
                grpc.StatusCode.INVALID_ARGUMENT)] * 2 + [
        (_request(model="nope"), grpc.StatusCode.NOT_FOUND),
        (_request(signature="made-up"), grpc.StatusCode.FAILED_PRECONDITION)]
    for request, code in failing:
      with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(request, timeout=60)
      assert raised.value.code() == code
    assert _rest_predict(handle.rest_port, BINARY) == 200
    assert _rest_predict(handle.rest_port, "nope") == 404
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = BINARY
    model_service_pb2_grpc.ModelServiceStub(
        grpc.insecure_channel(handle.address)).GetModelStatus(status,
                                                              timeout=60)
    samples = _scrape(handle.monitoring_port)
    count = REQUESTS + "_total"
    def requests(version, signature, status):
      return _value(samples, count, model_name=BINARY, version=version,
                    signature=signature, status=status)
    assert requests("1", "serving_default", "OK") == 4  # 3 gRPC, 1 REST
    assert requests("1", "gradcam", "OK") == 1
    assert requests("1", "serving_default", "INVALID_ARGUMENT") == 2
    # Names nothing serves are recorded as "", so they add no series.
    assert requests("", "", "FAILED_PRECONDITION") == 0
    assert _value(samples, count, model_name=BINARY, version="1",
                  signature="", status="FAILED_PRECONDITION") == 1
    assert _value(samples, count, model_name="", version="", signature="",
                  status="NOT_FOUND") == 2  # gRPC and REST
    assert requests("1", "", "OK") == 1  # the status call
    assert not [k for k in samples if ("model_name", "nope") in k[1]
                or ("signature", "made-up") in k[1]]
    # Latency: every request once, by API and entrypoint.
    def latency_count(model, api, entrypoint):
      return _value(samples, LATENCY + "_count", model_name=model, API=api,
                    entrypoint=entrypoint)
    assert latency_count(BINARY, "predict", "GRPC") == 7
    assert latency_count(BINARY, "predict", "REST") == 1
    assert latency_count(BINARY, "get_model_status", "GRPC") == 1
    assert latency_count("", "predict", "GRPC") == 1
    assert latency_count("", "predict", "REST") == 1
    assert _value(samples, "cxr_serving_loaded_version", model_name=BINARY,
                  version="1") == 1
    version_1 = os.path.join(str(base), BINARY, "1")
    assert _value(samples, LOADS + "_total", model_path=version_1,
                  status="success") == 1
    # A broken version: a failed load, and version 1 still serving.
    (base / BINARY / "2").mkdir()
    (base / BINARY / "2" / "saved_model.pb").write_bytes(b"not a SavedModel")
    version_2 = os.path.join(str(base), BINARY, "2")
    _wait_for(lambda: _value(_scrape(handle.monitoring_port), LOADS + "_total",
                             model_path=version_2, status="fail") == 1,
              30, "the failed load to be counted")
    # Any path answers, as prometheus-client's server does.
    assert _value(_scrape(handle.monitoring_port, "/metrics"),
                  "cxr_serving_loaded_version", model_name=BINARY,
                  version="1") == 1
  finally:
    handle.stop()
