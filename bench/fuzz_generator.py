"""Malformed requests for `cxr serve`, built from TF Serving's protos and
its REST API with a seeded RNG: the generator of bench/fuzz_server.py and
tests/test_fuzz_server.py.

A gRPC case is (method, request message or raw bytes); a REST case is the
raw bytes of one HTTP request. Most cases are near misses of a valid call
(right model, right input names, wrong shapes or values), so they get past
the first checks and reach the deeper ones.
"""

import base64
import io
import json
import random
import struct
import zlib

import numpy as np
from PIL import Image
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import predict_pb2

PREDICT = "/tensorflow.serving.PredictionService/Predict"
METADATA = "/tensorflow.serving.PredictionService/GetModelMetadata"
STATUS = "/tensorflow.serving.ModelService/GetModelStatus"
RAW = "raw"  # a method called with bytes that are no valid message
CONCAT = "concat"  # Predict called with two valid messages back to back

# Every DataType the proto knows, plus numbers it does not.
_DTYPES = [v for v in types_pb2.DataType.values() if v < 100] + [
    0, 99, 1000, 2**31 - 1]
_DIMS = [-(2**62), -5, -1, 0, 1, 1, 2, 3, 8, 255, 256, 257, 10_000,
         2**31, 2**62]
_VALUE_FIELDS = ("float_val", "double_val", "int_val", "int64_val",
                 "uint32_val", "uint64_val", "bool_val", "half_val",
                 "scomplex_val", "dcomplex_val")
_INT_LIMITS = {"int_val": (-(2**31), 2**31 - 1),
               "int64_val": (-(2**63), 2**63 - 1),
               "uint32_val": (0, 2**32 - 1), "uint64_val": (0, 2**64 - 1),
               "half_val": (-(2**31), 2**31 - 1)}


def image(kind: str, rng: random.Random) -> bytes:
  """An encoded image or a near miss of one."""
  size = (rng.randint(1, 64), rng.randint(1, 64))
  if kind in ("png", "jpeg", "gif", "bmp"):
    buf = io.BytesIO()
    mode = rng.choice(["L", "RGB"])
    Image.new(mode, size, rng.randint(0, 255)).save(buf, format=kind.upper())
    return buf.getvalue()
  if kind == "truncated":
    data = image("png", rng)
    return data[:rng.randint(0, len(data) - 1)]
  if kind == "bomb":  # a small PNG whose header declares 400 M pixels
    data = bytearray(image("png", rng))
    data[16:24] = struct.pack(">II", 20_000, 20_000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)
  if kind == "magic":  # a JPEG or PNG signature, then noise
    return rng.choice([b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"]) + rng.randbytes(
        rng.randint(0, 200))
  return rng.randbytes(rng.choice([0, 1, 7, 100, 5000]))


_IMAGE_KINDS = ("png", "jpeg", "gif", "bmp", "truncated", "bomb", "magic",
                "noise")


def _string(rng: random.Random) -> bytes:
  roll = rng.random()
  if roll < 0.4:
    return image(rng.choice(_IMAGE_KINDS), rng)
  if roll < 0.6:
    return rng.choice([b"", b"gradcam", b"hirescam", b"HIRESCAM",
                       "héllo".encode(), b"\xff\xfe\x00"])
  if roll < 0.97:
    return rng.randbytes(rng.choice([0, 1, 10, 1000, 30_000]))
  return b"x" * rng.choice([300_000, 1_000_000])


def _shape(rng: random.Random, proto: tensor_pb2.TensorProto) -> None:
  if rng.random() < 0.05:
    proto.tensor_shape.unknown_rank = True
  for _ in range(rng.choice([0, 1, 1, 1, 2, 3, 5])):
    proto.tensor_shape.dim.add(size=rng.choice(_DIMS),
                               name=rng.choice(["", "batch", "\u2603"]))


def tensor(rng: random.Random, dtype=None) -> tensor_pb2.TensorProto:
  """A TensorProto: random or given dtype, declared shape vs carried values
  (compact form, more values than the shape, several fields at once,
  tensor_content of any length)."""
  proto = tensor_pb2.TensorProto()
  proto.dtype = dtype if dtype is not None else rng.choice(_DTYPES)
  if rng.random() < 0.85:
    _shape(rng, proto)
  proto.version_number = rng.choice([0, 0, 0, 1, -1])
  for _ in range(rng.choice([0, 1, 1, 1, 2])):
    roll = rng.random()
    count = rng.choice([0, 1, 2, 3, 8, 100, 257])
    if roll < 0.35 or proto.dtype == types_pb2.DT_STRING and roll < 0.7:
      proto.string_val.extend(_string(rng) for _ in range(min(count, 16)))
    elif roll < 0.55:
      proto.tensor_content = rng.randbytes(rng.choice(
          [0, 1, 3, 4, 7, 8, 12, 1000, 4 * 257]))
    else:
      field = rng.choice(_VALUE_FIELDS)
      values = getattr(proto, field)
      for _ in range(count):
        if field in _INT_LIMITS:
          low, high = _INT_LIMITS[field]
          values.append(rng.choice([low, high, 0, 1, -1 if low else 2,
                                    rng.randint(low, high)]))
        elif field == "bool_val":
          values.append(rng.random() < 0.5)
        else:
          values.append(rng.choice([0.0, -1.5, 1e38, float("nan"),
                                    float("inf"), -float("inf"), 3.0]))
  return proto


def _spec(rng, model_spec, names, versions) -> None:
  roll = rng.random()
  model_spec.name = (rng.choice(names) if roll < 0.8 else rng.choice(
      ["", "nope", "../x", "\u00e9\u2603", "a" * 5000, "cxr_binary_cnn\x00"]))
  roll = rng.random()
  if roll < 0.2:
    model_spec.version.value = rng.choice(versions)
  elif roll < 0.35:
    model_spec.version.value = rng.choice([0, -1, 2**63 - 1, -(2**63), 7])
  elif roll < 0.4:
    model_spec.version_label = rng.choice(["stable", "", "\u2603"])


def predict_request(rng: random.Random, metadata) -> predict_pb2.PredictRequest:
  """A PredictRequest near a valid one of metadata's signatures."""
  signatures = metadata["signatures"]
  request = predict_pb2.PredictRequest()
  if rng.random() < 0.97:
    _spec(rng, request.model_spec, metadata["names"], metadata["versions"])
  name = rng.choice(sorted(signatures))
  request.model_spec.signature_name = (
      name if rng.random() < 0.85 else rng.choice(["nope", "\u2603", "a" * 300,
                                                   "__saved_model_init_op"]))
  inputs = dict(signatures[name])  # {alias: dtype}
  for alias, dtype in inputs.items():
    if rng.random() < 0.85:
      right = rng.random() < 0.7
      request.inputs[alias].CopyFrom(tensor(rng, dtype if right else None))
  for _ in range(rng.choice([0, 0, 0, 1, 2])):
    request.inputs[rng.choice(["", "x", "images ", "IMAGES", "\u2603"])
                   ].CopyFrom(tensor(rng))
  for _ in range(rng.choice([0, 0, 0, 1, 2])):
    request.output_filter.append(rng.choice(
        ["probabilities", "probabilities", "class_id", "heatmap", "", "x",
         "\u2603"]))
  return request


def metadata_request(rng, metadata):
  request = get_model_metadata_pb2.GetModelMetadataRequest()
  if rng.random() < 0.9:
    _spec(rng, request.model_spec, metadata["names"], metadata["versions"])
  for _ in range(rng.choice([0, 1, 1, 2])):
    request.metadata_field.append(rng.choice(
        ["signature_def", "signature_def", "", "x", "\u2603"]))
  return request


def status_request(rng, metadata):
  request = get_model_status_pb2.GetModelStatusRequest()
  if rng.random() < 0.9:
    _spec(rng, request.model_spec, metadata["names"], metadata["versions"])
  return request


def grpc_case(rng: random.Random, metadata):
  """(method, message); RAW and CONCAT cases carry (method, bytes)."""
  roll = rng.random()
  if roll < 0.7:
    return PREDICT, predict_request(rng, metadata)
  if roll < 0.8:
    return METADATA, metadata_request(rng, metadata)
  if roll < 0.9:
    return STATUS, status_request(rng, metadata)
  method = rng.choice([PREDICT, METADATA, STATUS,
                       "/tensorflow.serving.PredictionService/Classify",
                       "/tensorflow.serving.Nope/Predict"])
  data = predict_request(rng, metadata).SerializeToString()
  roll = rng.random()
  if roll < 0.2:
    # Two messages back to back parse as one: duplicate input names (map
    # keys) and repeated model specs on the wire, the last one winning.
    return CONCAT, (PREDICT, data + predict_request(
        rng, metadata).SerializeToString())
  if data and roll < 0.75:  # flip bytes or cut the message
    data = bytearray(data)
    for _ in range(rng.randint(1, 8)):
      data[rng.randrange(len(data))] = rng.randrange(256)
    data = bytes(data[:rng.randint(0, len(data))])
  else:
    data = rng.randbytes(rng.choice([1, 10, 1000]))
  return RAW, (method, data)


# --- REST


def _json_value(rng: random.Random, depth: int = 0):
  roll = rng.random()
  if depth > 4 or roll < 0.3:
    return rng.choice([None, True, 0, -1, 2**31, 10**30, -(10**400 // 10**390),
                       1.5, 1e308, "", "abc", "\u2603", "\ud800"])
  if roll < 0.55:
    return {"b64": rng.choice([
        base64.b64encode(image(rng.choice(_IMAGE_KINDS), rng)).decode(),
        "not base64!", "\u00e9\u00e9==", "", "QQ", 5, None, [1], {"b64": "x"}])}
  if roll < 0.8:
    return [_json_value(rng, depth + 1) for _ in range(rng.choice([0, 1, 2, 3]))]
  return {rng.choice(["images", "class_index", "method", "x", "b64", ""]):
          _json_value(rng, depth + 1) for _ in range(rng.choice([1, 2]))}


def _near_valid_instance(rng: random.Random):
  """A gradcam or default instance with one odd value."""
  instance = {"images": {"b64": base64.b64encode(
      image(rng.choice(_IMAGE_KINDS), rng)).decode()}}
  if rng.random() < 0.7:
    instance["class_index"] = rng.choice(
        [0, 1, 5, -1, 2**31, -(2**63) - 1, 10**30, 1.5, "1", None, [1], [],
         float("nan"), float("inf")])
  if rng.random() < 0.4:
    instance["method"] = rng.choice(["gradcam", "hirescam", "nope", "", 3,
                                     {"b64": "/w=="}, ["gradcam"]])
  return instance


def rest_body(rng: random.Random) -> bytes:
  roll = rng.random()
  if roll < 0.25:
    document = {"instances": [_near_valid_instance(rng)
                              for _ in range(rng.choice([1, 1, 2, 3]))]}
    if rng.random() < 0.8:
      document["signature_name"] = rng.choice(["gradcam", "serving_default"])
    return json.dumps(document, allow_nan=True).encode()
  if roll < 0.6:
    document = {}
    if rng.random() < 0.9:
      document["instances"] = (
          [_json_value(rng) for _ in range(rng.choice([0, 1, 2, 5]))]
          if rng.random() < 0.85 else _json_value(rng))
    if rng.random() < 0.3:
      document["signature_name"] = rng.choice(
          ["gradcam", "serving_default", "nope", 5, None, ["gradcam"]])
    if rng.random() < 0.1:
      document["inputs"] = _json_value(rng)
    text = json.dumps(document, allow_nan=True)
    return text.encode("utf-8", "surrogatepass")
  if roll < 0.7:
    depth = rng.choice([50, 500, 990, 5000, 100_000])
    return b'{"instances": ' + b"[" * depth + b"1" + b"]" * depth + b"}"
  if roll < 0.8:
    return rng.choice([b"", b"{", b"null", b"[]", b"\"instances\"", b"1e999",
                       b'{"instances": [1e999, -1e999, NaN]}',
                       b'{"instances": [' + b"9" * 5000 + b"]}",
                       b"\xff\xfe{\x00}\x00", b"\xc3\x28\xa0\xa1"])
  return rng.randbytes(rng.choice([1, 100, 10_000]))


def _rest_path(rng: random.Random, model: str) -> str:
  roll = rng.random()
  if roll < 0.75:
    return f"/v1/models/{model}:predict"
  if roll < 0.85:
    return f"/v1/models/{model}"
  return rng.choice([
      f"/v1/models/{model}/versions/{rng.choice([0, 1, 2**63, 10**30])}"
      ":predict", f"/v1/models/{model}/versions/-1:predict",
      f"/v1/models/{model}:classify", "/v1/models/%ff%fe:predict",
      "/v1/models/%00:predict", "/v1/models/../../etc/passwd",
      "/v1/models/" + "a" * 70_000, "/", "*", "//", "/v1/models/x?y=%zz",
      f"/v1/models/{model}:predict#frag", "/\u2603", "http://evil/v1/models/x",
      "/v1/models/%E2%98%83:predict"])


def rest_case(rng: random.Random, model: str) -> bytes:
  """One raw HTTP request: odd methods, paths, headers and bodies."""
  body = rest_body(rng)
  odd = rng.random() < 0.15  # an odd method or protocol version
  method = "POST" if not odd else rng.choice(
      ["GET", "GET", "PUT", "HEAD", "DELETE", "OPTIONS", "BREW", "P\x00ST", ""])
  version = "HTTP/1.1" if not odd or rng.random() < 0.5 else rng.choice(
      ["HTTP/1.0", "HTTP/2.0", "HTTP/9", "", "HTTP/1.1 extra"])
  headers = []
  if rng.random() < 0.85:
    headers.append("Host: 127.0.0.1")
  roll = rng.random()
  if roll < 0.6:
    headers.append(f"Content-Length: {len(body)}")
  elif roll < 0.85:
    headers.append("Content-Length: " + rng.choice([
        "-1", "abc", "1e3", " 12 ", "+5", "0x10", str(10**30), "",
        "\u0663", str(len(body) + rng.choice([-1, 1, 100])), "0",
        f"{len(body)}, {len(body)}"]))
    if rng.random() < 0.2:
      headers.append(f"Content-Length: {len(body)}")  # a second one
  elif roll < 0.95:
    headers.append("Transfer-Encoding: chunked")
    body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
  for _ in range(rng.choice([0, 0, 0, 0, 1, 2])):
    headers.append(rng.choice([
        "Content-Type: application/json; charset=\u2603",
        "Expect: 100-continue", "Connection: keep-alive", "X-Junk: " + "a" * 70_000,
        "No colon here", ": empty name", "X-Bytes: \udcff",
        "Content-Encoding: gzip"]))
  if rng.random() < 0.02:
    headers.extend(f"X-{i}: {i}" for i in range(150))  # too many headers
  head = (f"{method} {_rest_path(rng, model)} {version}\r\n"
          + "".join(h + "\r\n" for h in headers) + "\r\n")
  return head.encode("utf-8", "surrogateescape") + body


def normal_images(count: int = 2):
  """Images for the check after each batch: real PNGs, answered with
  probabilities."""
  rng = np.random.default_rng(0)
  out = []
  for i in range(count):
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (40 + i, 50), dtype=np.uint8)).save(
        buf, format="PNG")
    out.append(buf.getvalue())
  return out
