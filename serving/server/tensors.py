"""Request TensorProtos -> checked tensors; tensors -> response TensorProtos.

Requests are checked against the SignatureDef as saved (dtypes, shapes,
defaults), which is what TF Serving checks them against, with its messages.
"""

import dataclasses
from typing import Dict, List

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2

from schema import contract
from serving.server.errors import Code
from serving.server.errors import ServingError


def dtype_name(enum: int) -> str:
  try:
    return tf.dtypes.as_dtype(enum).name
  except TypeError:
    return f"dtype enum {enum}"


def _names(names) -> str:
  return ",".join(sorted(names))


@dataclasses.dataclass(frozen=True)
class RequestLimits:
  """How large one request input may become once it is a tensor."""
  max_batch: int  # any dimension the signature leaves open (-1)
  max_input_bytes: int  # the tensor's size in memory, strings included


def _value_sizes(proto: tensor_pb2.TensorProto, itemsize: int) -> List[int]:
  """Bytes of each value the proto carries (tensor_content or typed field)."""
  if proto.dtype == tf.string.as_datatype_enum:
    return [len(v) for v in proto.string_val]
  if proto.tensor_content:
    return [itemsize] * (len(proto.tensor_content) // itemsize)
  for field in _VALUE_FIELDS:
    values = getattr(proto, field)
    if values:
      # half_val and the complex fields pack several numbers per element
      # differently; counting raw entries bounds them from above.
      return [itemsize] * len(values)
  return []


def check_declared_size(alias: str, proto: tensor_pb2.TensorProto, info,
                        limits: RequestLimits) -> None:
  """Refuses an input whose declared shape would build too large a tensor,
  before any tensor is built.

  A TensorProto may declare more elements than it carries; like TF Serving
  we accept that compact form, where the last value repeats, but
  tf.make_ndarray would expand it to the declared size, so a few bytes on
  the wire could ask for gigabytes. The declared shape is checked against
  the signature's (rank, fixed sizes, open sizes up to max_batch) and the
  expanded size against max_input_bytes.
  """
  dims = [d.size for d in proto.tensor_shape.dim]
  if any(d < 0 for d in dims):
    raise ServingError(Code.INVALID_ARGUMENT,
                       f"input {alias} declares a negative size: {dims}")
  if not info.tensor_shape.unknown_rank:
    want = [d.size for d in info.tensor_shape.dim]
    if len(want) != len(dims) or any(
        w >= 0 and w != d for w, d in zip(want, dims)):
      raise ServingError(
          Code.INVALID_ARGUMENT,
          f"input {alias} has shape {dims}, the signature expects {want} "
          "(-1: any size)")
    open_dims = [d for w, d in zip(want, dims) if w < 0]
  else:
    open_dims = dims
  if any(d > limits.max_batch for d in open_dims):
    raise ServingError(
        Code.INVALID_ARGUMENT,
        f"input {alias} has shape {dims}; this server takes at most "
        f"{limits.max_batch} along open dimensions (--max-batch)")
  declared = int(np.prod(dims, dtype=np.int64)) if dims else 1
  try:
    itemsize = tf.dtypes.as_dtype(proto.dtype).size
  except TypeError:
    itemsize = 1
  sizes = _value_sizes(proto, itemsize)
  if len(sizes) > declared:
    raise ServingError(
        Code.INVALID_ARGUMENT,
        f"input {alias} carries {len(sizes)} values for shape {dims}")
  # The compact form repeats the last value up to the declared count.
  expanded = sum(sizes) + (declared - len(sizes)) * (
      sizes[-1] if sizes else itemsize)
  if expanded > limits.max_input_bytes:
    raise ServingError(
        Code.INVALID_ARGUMENT,
        f"input {alias} would be {expanded} bytes as a tensor (shape {dims}); "
        f"this server takes at most {limits.max_input_bytes} per input")


def input_tensors(signature, request_inputs,
                  limits: RequestLimits) -> Dict[str, tf.Tensor]:
  """Request TensorProtos -> tensors, checked against the SignatureDef.

  Follows TF Serving's predict_util.cc: an input missing from the request
  takes its SignatureDef default; missing without one, or unknown, is
  INVALID_ARGUMENT. Sizes are checked first (check_declared_size).
  """
  sent, expected = set(request_inputs), set(signature.inputs)
  if len(sent) > len(expected) or (
      len(sent) < len(expected) and not signature.defaults):
    raise ServingError(
        Code.INVALID_ARGUMENT,
        f"input size does not match signature: {len(sent)}!={len(expected)} "
        f"len({{{_names(sent)}}}) != len({{{_names(expected)}}}). Sent extra: "
        f"{{{_names(sent - expected)}}}. Missing but required: "
        f"{{{_names(expected - sent)}}}.")
  if sent - expected:
    raise ServingError(
        Code.INVALID_ARGUMENT,
        f"Inputs contains invalid name. Used request inputs: "
        f"{_names(sent & expected)}, request input: {_names(sent)}")
  tensors = {}
  for alias, info in signature.inputs.items():
    if alias in request_inputs:
      proto = request_inputs[alias]
    elif alias in signature.defaults:
      proto = signature.defaults[alias]
    else:
      raise ServingError(
          Code.INVALID_ARGUMENT,
          f"Signature input alias: {alias}(feed name: {info.name}) not found "
          f"in request and no default value provided. Inputs expected to be "
          f"in the request {{{_names(sent)}}}, or default input alias set: "
          f"{_names(signature.defaults)}")
    if proto.dtype != info.dtype:
      raise ServingError(
          Code.INVALID_ARGUMENT,
          f"Expects arg[{alias}] to be {dtype_name(info.dtype)} but "
          f"{dtype_name(proto.dtype)} is provided")
    check_declared_size(alias, proto, info, limits)
    try:
      value = tf.make_ndarray(proto)
    except (TypeError, ValueError) as e:
      raise ServingError(Code.INVALID_ARGUMENT,
                         f"tensor parsing error: {alias}") from e
    tensors[alias] = tf.constant(value, dtype=tf.dtypes.as_dtype(info.dtype))
  return tensors


def output_aliases(signature, output_filter) -> List[str]:
  """The outputs a request asks for: its filter, checked, or all of them."""
  aliases = []
  for alias in output_filter:
    if alias not in signature.outputs:
      raise ServingError(
          Code.INVALID_ARGUMENT,
          f"output tensor alias not found in signature: {alias} Outputs "
          f"expected to be in the set {{{_names(signature.outputs)}}}.")
    if alias in aliases:
      raise ServingError(Code.INVALID_ARGUMENT,
                         f"duplicate output tensor alias: {alias}")
    aliases.append(alias)
  return aliases or sorted(signature.outputs)


def _warm_up_image() -> bytes:
  """A small grey PNG: decodable by every signature that takes images."""
  return tf.io.encode_png(tf.fill([32, 32, 1], tf.constant(128, tf.uint8))
                          ).numpy()


def _warm_up_example(image: bytes) -> bytes:
  feature = tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))
  return tf.train.Example(features=tf.train.Features(
      feature={contract.IMAGE_KEY: feature})).SerializeToString()


def warm_up_inputs(signature) -> Dict[str, tensor_pb2.TensorProto]:
  """Inputs for one warm-up call, for every input without a default.

  The contract's image and example inputs get one real image, so the call
  runs the model as a request will (an empty batch would skip it); any
  other input, of a model from elsewhere, gets a zero-size batch.
  """
  inputs = {}
  for alias, info in signature.inputs.items():
    if alias in signature.defaults:
      continue
    if info.dtype == tf.string.as_datatype_enum and alias in (
        contract.IMAGES_INPUT, contract.EXAMPLES_INPUT):
      image = _warm_up_image()
      value = (image if alias == contract.IMAGES_INPUT
               else _warm_up_example(image))
      inputs[alias] = tf.make_tensor_proto([value], dtype=tf.string,
                                           shape=[1])
      continue
    shape = ([0] if info.tensor_shape.unknown_rank else
             [max(d.size, 0) for d in info.tensor_shape.dim])
    dtype = tf.dtypes.as_dtype(info.dtype)
    inputs[alias] = tf.make_tensor_proto(
        np.zeros(shape, dtype.as_numpy_dtype), dtype=dtype, shape=shape)
  return inputs


# The typed value fields of a TensorProto (strings apart).
_VALUE_FIELDS = ("float_val", "double_val", "int_val", "int64_val",
                 "uint32_val", "uint64_val", "bool_val", "half_val",
                 "scomplex_val", "dcomplex_val")

# TF Serving answers Predict with typed fields (Tensor::AsProtoField), which
# clients may read directly (`outputs["x"].float_val`), not tensor_content.
_PROTO_FIELDS = {tf.float32: "float_val", tf.float64: "double_val",
                 tf.int8: "int_val", tf.int16: "int_val", tf.int32: "int_val",
                 tf.uint8: "int_val", tf.uint16: "int_val",
                 tf.int64: "int64_val", tf.uint32: "uint32_val",
                 tf.uint64: "uint64_val", tf.bool: "bool_val",
                 tf.string: "string_val"}


def tensor_proto(tensor: tf.Tensor) -> tensor_pb2.TensorProto:
  """A response tensor in the typed field TF Serving would fill."""
  field = _PROTO_FIELDS.get(tensor.dtype)
  if field is None:  # e.g. half, complex: tensor_content will do
    return tf.make_tensor_proto(tensor.numpy(), dtype=tensor.dtype,
                                shape=tensor.shape)
  proto = tensor_pb2.TensorProto(dtype=tensor.dtype.as_datatype_enum,
                                 tensor_shape=tensor.shape.as_proto())
  getattr(proto, field).extend(tensor.numpy().ravel().tolist())
  return proto
