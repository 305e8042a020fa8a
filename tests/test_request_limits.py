"""A request is sized before any tensor is built: a few bytes on the wire
may not declare a tensor of gigabytes (the compact TensorProto form)."""

import resource

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2

from schema import contract
from schema.settings import ServeSettings
from serving import server
from serving.server import tensors
from serving.server.errors import ServingError
from tests.test_server import BINARY
from tests.test_server import export_test_model
from tests.test_server import _request
from tests.test_server import _stub
from tests.test_server import png
from tests.test_server import POLL

LIMITS = tensors.RequestLimits(max_batch=8, max_input_bytes=1 << 20)


def _signature():
  """The gradcam signature's inputs: images [-1], class_index [-1],
  method []."""
  signature = meta_graph_pb2.SignatureDef()
  for alias, dtype, dims in ((contract.IMAGES_INPUT, types_pb2.DT_STRING,
                              [-1]),
                             (contract.CLASS_INDEX_INPUT, types_pb2.DT_INT32,
                              [-1]),
                             (contract.METHOD_INPUT, types_pb2.DT_STRING,
                              [])):
    info = signature.inputs[alias]
    info.name, info.dtype = f"{alias}:0", dtype
    for size in dims:
      info.tensor_shape.dim.add(size=size)
  return signature


def _declared(dtype, dims, **values):
  """A TensorProto declaring `dims` and carrying only `values`."""
  proto = tensor_pb2.TensorProto(dtype=dtype)
  for size in dims:
    proto.tensor_shape.dim.add(size=size)
  for field, value in values.items():
    getattr(proto, field).extend(value)
  return proto


def _check(alias, proto):
  tensors.check_declared_size(alias, proto, _signature().inputs[alias],
                              LIMITS)


@pytest.mark.parametrize("alias,proto,message", [
    ("class_index", _declared(types_pb2.DT_INT32, [1_500_000_000],
                              int_val=[1]), "at most 8"),
    ("images", _declared(types_pb2.DT_STRING, [8],
                         string_val=[b"x" * 200_000]), "bytes as a tensor"),
    ("images", _declared(types_pb2.DT_STRING, [9], string_val=[b"x"]),
     "at most 8"),
    ("images", _declared(types_pb2.DT_STRING, [-3], string_val=[b"x"]),
     "negative"),
    ("images", _declared(types_pb2.DT_STRING, [2, 2], string_val=[b"x"]),
     "the signature expects"),
    ("method", _declared(types_pb2.DT_STRING, [4], string_val=[b"hires"]),
     "the signature expects"),
    ("images", _declared(types_pb2.DT_STRING, [1], string_val=[b"a", b"b"]),
     "carries 2 values"),
])
def test_oversized_or_misshapen_declarations_are_refused(alias, proto,
                                                         message):
  with pytest.raises(ServingError, match=message) as raised:
    _check(alias, proto)
  assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_the_compact_form_stays_legal_within_the_limits():
  # TF Serving accepts a repeated last value; so do we, when it is small.
  proto = _declared(types_pb2.DT_INT32, [8], int_val=[1])
  _check("class_index", proto)
  assert tf.make_ndarray(proto).tolist() == [1] * 8
  _check("images", _declared(types_pb2.DT_STRING, [8],
                             string_val=[b"x" * 1000]))
  _check("method", _declared(types_pb2.DT_STRING, [], string_val=[b"hires"]))
  _check("images", tf.make_tensor_proto(np.zeros([8], np.int32)))


def _max_rss_mb() -> float:
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_tiny_request_declaring_a_huge_tensor_does_not_reach_memory(
    tmp_path):
  export_test_model(str(tmp_path), BINARY, 1)
  handle = server.start_server(str(tmp_path), ServeSettings(
      port=0, poll_seconds=POLL))
  try:
    stub = _stub(handle.address)
    before = _max_rss_mb()
    attacks = {
        # 1.5e9 int32 would be 6 GB; the request was 23 KB.
        contract.CLASS_INDEX_INPUT: _declared(
            types_pb2.DT_INT32, [1_500_000_000], int_val=[0]),
        # One 100 KB string repeated 10,000 times: 1 GB.
        contract.IMAGES_INPUT: _declared(
            types_pb2.DT_STRING, [10_000], string_val=[b"x" * 100_000]),
    }
    for alias, proto in attacks.items():
      request = _request(signature=contract.GRADCAM)
      request.inputs[alias].CopyFrom(proto)
      with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(request, timeout=30)
      assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT, alias
    # The server process is this one: its peak grew by far less than the
    # tensors those requests declared.
    assert _max_rss_mb() - before < 200
    request = _request(images=[png(40, 50)])
    assert stub.Predict(request, timeout=30).model_spec.version.value == 1
  finally:
    handle.stop()
