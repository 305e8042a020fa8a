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
