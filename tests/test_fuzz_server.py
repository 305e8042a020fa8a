"""The server against malformed requests: regressions the fuzzer found,
and a short seeded run of bench/fuzz_server.py's generator."""

import grpc
import pytest
import tensorflow as tf

from schema import contract
from schema.settings import ServeSettings
from serving import server
from tests.test_server import BINARY
from tests.test_server import export_test_model
from tests.test_server import POLL
from tests.test_server import _request
from tests.test_server import _stub


@pytest.fixture(scope="module")
def served(tmp_path_factory):
  base = str(tmp_path_factory.mktemp("serving"))
  export_test_model(base, BINARY, 1)
  handle = server.start_server(base, ServeSettings(
      port=0, rest_port=0, poll_seconds=POLL, rest_timeout_seconds=2))
  yield handle
  handle.stop()


def test_an_example_with_bytes_that_are_not_text_is_invalid_argument(served):
  # ParseExample's error quotes the bytes, which are not UTF-8: TensorFlow
  # raised UnicodeDecodeError instead of an OpError, and the client got
  # INTERNAL.
  request = _request(signature=contract.TF_EXAMPLE)
  del request.inputs[contract.IMAGES_INPUT]
  request.inputs[contract.EXAMPLES_INPUT].CopyFrom(tf.make_tensor_proto(
      [b"\n\x05\xff\xfe"], dtype=tf.string, shape=[1]))
  with pytest.raises(grpc.RpcError) as raised:
    _stub(served.address).Predict(request, timeout=30)
  assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert "the model failed on this input" in raised.value.details()


# Raw bytes that end mid-message: grpcio warns while refusing them.
@pytest.mark.filterwarnings("ignore:Unexpected end-group tag")
def test_a_seeded_fuzz_run_finds_nothing(served):
  """300 malformed gRPC and REST requests (bench/fuzz_server.py's cases,
  seed 0): no INTERNAL or 5xx, no timeout, a normal request answered after
  every batch of 50, and the peak memory grown by far less than the
  requests declared."""
  from bench import fuzz_server  # pylint: disable=g-import-not-at-top
  before = fuzz_server.self_rss_mb()
  target = fuzz_server.Target(served.address, served.rest_port,
                              alive=lambda: True,
                              rss_mb=fuzz_server.self_rss_mb)
  report = fuzz_server.fuzz(target, requests=300, seconds=50, seed=0,
                            batch=50, max_rss_mb=before + 1000,
                            log=lambda _: None)
  assert report.findings == [], report.findings
  assert report.requests == 300 and report.checks == 6
  # The cases reach past the first checks: some are answered, most refused.
  assert report.outcomes["grpc OK"] > 0
  assert report.outcomes["grpc INVALID_ARGUMENT"] > 50
  assert report.outcomes["rest 400"] > 30
  assert report.max_rss_mb - before < 500
