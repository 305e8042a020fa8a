"""A client for TF Serving's gRPC API (tensorflow_model_server, `cxr serve`).

  client = Client("localhost:8500")
  out = client.predict("cnn", [open("xray.jpeg", "rb").read()])
  out["probabilities"], out["class_id"], out["class_name"]
  cam = client.gradcam("cnn", images)  # heatmap, overlay_png, ...
  client.status("cnn")                 # {1: "AVAILABLE"}
  Client("localhost:8500", label="canary")  # the versions labelled canary

Images are JPEG, PNG or DICOM bytes: a DICOM file is sent as the 16-bit
PNG ingestion makes of it (serving/dicom.py), so the model sees the pixels
it was trained on.

Every failed call raises a ClientError whose message is one line naming the
server and the model; the server being down, a call running past its timeout
and an unknown model or version have their own subclasses, and so has a
DICOM file that cannot be used (BadImageError, raised before any call).
"""

from typing import Dict, Mapping, Optional, Sequence, Union

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from schema import contract
from schema.settings import ServeSettings
from serving import dicom


class ClientError(Exception):
  """A failed call; `code` is the gRPC status, `details` the server's text."""

  def __init__(self, message: str, code: Optional[grpc.StatusCode] = None,
               details: str = ""):
    super().__init__(message)
    self.code = code
    self.details = details


class ServerUnavailableError(ClientError):
  """Nothing answers at the address (UNAVAILABLE: refused, down, no route)."""


class DeadlineExceededError(ClientError):
  """The server did not answer within the timeout."""


class ModelNotFoundError(ClientError):
  """The server has no such model, or not that version (NOT_FOUND)."""


class BadImageError(ClientError):
  """An image the client cannot send (a DICOM file it cannot convert);
  `details` says why."""


def _error(e: grpc.RpcError, server: str, model: str,
           version: Optional[Union[int, str]], timeout: float) -> ClientError:
  code = e.code()
  details = " ".join((e.details() or "").split())  # one line
  what = f"model {model!r}"
  if isinstance(version, str):
    what += f" label {version!r}"
  elif version is not None:
    what += f" version {version}"
  if code == grpc.StatusCode.UNAVAILABLE:
    return ServerUnavailableError(
        f"cannot reach the model server at {server} for {what}: {details}",
        code, details)
  if code == grpc.StatusCode.DEADLINE_EXCEEDED:
    return DeadlineExceededError(
        f"the model server at {server} did not answer within {timeout:g} s "
        f"for {what}", code, details)
  if code == grpc.StatusCode.NOT_FOUND:
    return ModelNotFoundError(f"{what} not found on {server}: {details}",
                              code, details)
  return ClientError(f"{server} refused the request for {what}: "
                     f"{code.name}: {details}", code, details)


class Client:
  """Calls one model server; `timeout` (seconds) bounds every call."""

  def __init__(self, server: str = ServeSettings().local_address,
               timeout: float = 10.0,
               tls_ca: Optional[Union[str, bytes]] = None,
               label: Optional[str] = None):
    """tls_ca: PEM root certificate(s), or a path to them, for a TLS server.
    label: call the version carrying this label (contract.VERSION_LABELS)
    unless a call names a version; default: the latest version."""
    self.server = server
    self.timeout = timeout
    self.label = label
    # Outputs such as heat maps outgrow gRPC's 4 MB default; the server
    # keeps its own limit.
    options = [("grpc.max_send_message_length", -1),
               ("grpc.max_receive_message_length", -1)]
    if tls_ca is None:
      self._channel = grpc.insecure_channel(server, options=options)
    else:
      if isinstance(tls_ca, str):
        with open(tls_ca, "rb") as f:
          tls_ca = f.read()
      self._channel = grpc.secure_channel(
          server, grpc.ssl_channel_credentials(root_certificates=tls_ca),
          options=options)
    self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(
        self._channel)
    self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)

  def close(self) -> None:
    self._channel.close()

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.close()

  def _call(self, method, request, model: str, version: Optional[int]):
    """Sends a request for `model` at `version`, or at the client's label."""
    request.model_spec.name = model
    if version is not None:
      request.model_spec.version.value = version
    elif self.label:
      request.model_spec.version_label = self.label
    try:
      return method(request, timeout=self.timeout)
    except grpc.RpcError as e:
      raise _error(e, self.server, model,
                   version if version is not None else self.label,
                   self.timeout) from e

  def predict_tensors(self, model: str, inputs: Mapping[str, object],
                      signature: str = contract.SERVING_DEFAULT,
                      version: Optional[int] = None,
                      output_filter: Sequence[str] = ()
                      ) -> Dict[str, np.ndarray]:
    """Any signature: {input: array-like or TensorProto} -> {output: array}."""
    request = predict_pb2.PredictRequest(output_filter=list(output_filter))
    request.model_spec.signature_name = signature
    for name, value in inputs.items():
      request.inputs[name].CopyFrom(
          value if isinstance(value, tensor_pb2.TensorProto)
          else tf.make_tensor_proto(value))
    response = self._call(self._predictions.Predict, request, model, version)
    return {name: tf.make_ndarray(tensor)
            for name, tensor in response.outputs.items()}

  def predict(self, model: str, images: Sequence[bytes],
              signature: str = contract.SERVING_DEFAULT,
              version: Optional[int] = None) -> Dict[str, np.ndarray]:
    """Encoded images (JPEG/PNG/DICOM bytes) -> the signature's outputs.

    serving_default answers `probabilities` [N, C] float32, `class_id` [N]
    int64 and `class_name` [N] bytes.
    """
    return self.predict_tensors(
        model, {contract.IMAGES_INPUT: _images(images)}, signature, version)

  def gradcam(self, model: str, images: Sequence[bytes],
              class_index: Optional[Union[int, Sequence[int]]] = None,
              version: Optional[int] = None,
              method: Optional[str] = None) -> Dict[str, np.ndarray]:
    """Grad-CAM of each image for class_index (default: its predicted class).

    method: "hirescam" or "gradcam" (default: the signature's, hirescam).

    Returns `probabilities` [N, C], `class_id` [N] (the class explained),
    `heatmap` [N, H, W] float32 in [0, 1] and `overlay_png` [N] PNG bytes.
    """
    inputs = {contract.IMAGES_INPUT: _images(images)}
    if class_index is not None:
      inputs[contract.CLASS_INDEX_INPUT] = np.broadcast_to(
          np.asarray(class_index, np.int32), [len(images)])
    if method is not None:
      inputs[contract.METHOD_INPUT] = tf.make_tensor_proto(method,
                                                           dtype=tf.string)
    return self.predict_tensors(model, inputs, contract.GRADCAM, version)

  def status(self, model: str, version: Optional[int] = None
             ) -> Dict[int, str]:
    """{version: state name}, e.g. {2: "AVAILABLE"}."""
    request = get_model_status_pb2.GetModelStatusRequest()
    response = self._call(self._models.GetModelStatus, request, model,
                          version)
    return {s.version: get_model_status_pb2.ModelVersionStatus.State.Name(
        s.state) for s in response.model_version_status}

  def signatures(self, model: str, version: Optional[int] = None) -> Dict:
    """{signature name: SignatureDef} of the version served."""
    request = get_model_metadata_pb2.GetModelMetadataRequest(
        metadata_field=[contract.SIGNATURE_DEF_METADATA])
    response = self._call(self._predictions.GetModelMetadata, request, model,
                          version)
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    response.metadata[contract.SIGNATURE_DEF_METADATA].Unpack(
        signature_defs)
    return dict(signature_defs.signature_def)


def _images(images: Sequence[bytes]) -> tensor_pb2.TensorProto:
  """The images input: DICOM files converted as ingestion converts them."""
  converted = []
  for i, data in enumerate(images):
    try:
      converted.append(dicom.as_image(data))
    except dicom.DicomError as e:
      raise BadImageError(f"image {i} is a DICOM file that cannot be used: "
                          f"{e}", grpc.StatusCode.INVALID_ARGUMENT,
                          str(e)) from e
  return _strings(converted)


def _strings(values: Sequence[bytes]) -> tensor_pb2.TensorProto:
  return tf.make_tensor_proto(list(values), dtype=tf.string,
                              shape=[len(values)])
