"""The models a server answers for, kept in step with the folders they load
from.

A thread polls the base folder (schema.layout's version folders). A new
version is loaded, and warmed up, completely before requests see it; the
version it replaces stays loaded for requests pinned to it; a version that
fails to load is logged and left alone until its files change, while the
old one keeps serving.
"""

import os
import threading
import time
from typing import Dict, Optional, Set, Tuple

from absl import logging
import tensorflow as tf
from tensorflow.python.tools import saved_model_utils
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2
from tfx.dsl.io import fileio

from schema import contract
from schema import layout
from serving.server import batching
from serving.server import tensors
from serving.server import version_labels
from serving.server.errors import Code
from serving.server.errors import from_op_error
from serving.server.errors import ServingError

KEEP_VERSIONS = 2  # the latest, and the one it replaced

_State = get_model_status_pb2.ModelVersionStatus.State


class Servable:
  """One loaded model version: its SignatureDefs and callable signatures."""

  def __init__(self, name: str, version: int, path: str):
    self.name, self.version, self.path = name, version, path
    # The SignatureDefs as saved (dtypes, shapes, defaults), which is what
    # TF Serving checks requests against and returns as metadata.
    meta_graph = saved_model_utils.get_meta_graph_def(path,
                                                      tf.saved_model.SERVING)
    self.signature_defs = dict(meta_graph.signature_def)
    self._functions = dict(
        tf.saved_model.load(path, tags=[tf.saved_model.SERVING]).signatures)
    # Server-side batching (batching.py), when the server has it on.
    self.batcher: Optional[batching.BatchScheduler] = None
    self._batchable = {name for name, signature in self.signature_defs.items()
                       if batching.batchable(signature)}

  def signature(self, name: str):
    """The SignatureDef called `name` (empty: the default one)."""
    name = name or contract.SERVING_DEFAULT
    if name not in self.signature_defs or name not in self._functions:
      raise ServingError(Code.FAILED_PRECONDITION,
                         f'Serving signature key "{name}" not found.')
    return self.signature_defs[name]

  def predict(self, request, limits: tensors.RequestLimits
              ) -> predict_pb2.PredictResponse:
    name = request.model_spec.signature_name or contract.SERVING_DEFAULT
    signature = self.signature(name)
    aliases = tensors.output_aliases(signature, request.output_filter)
    inputs = tensors.input_tensors(signature, request.inputs, limits)
    try:
      if self.batcher is not None and name in self._batchable:
        outputs = self.batcher.run((self.name, self.version, name),
                                   self._functions[name], inputs)
      else:
        outputs = self._functions[name](**inputs)
    except tf.errors.OpError as e:
      raise from_op_error(e) from e
    except UnicodeDecodeError as e:
      # An op failed with a message quoting request bytes that are not
      # UTF-8 (e.g. ParseExample on a malformed tf.Example): TensorFlow
      # cannot turn it into an OpError, and its code is lost with it.
      message = e.object.decode("utf-8", "replace") if isinstance(
          e.object, bytes) else str(e)
      raise ServingError(Code.INVALID_ARGUMENT,
                         "the model failed on this input: "
                         + " ".join(message.split())[:500]) from e
    response = predict_pb2.PredictResponse()
    response.model_spec.name = self.name
    response.model_spec.version.value = self.version
    response.model_spec.signature_name = name
    for alias in aliases:
      response.outputs[alias].CopyFrom(tensors.tensor_proto(outputs[alias]))
    return response

  def warm_up(self, limits: tensors.RequestLimits) -> int:
    """Runs each signature once so the first request does not pay for it.

    Replays TF Serving's warm-up file if the model has one (every export
    has, serving/export/warmup.py), else sends every signature one small
    image (tensors.warm_up_inputs); failures only mean a cold first
    request. Returns how many requests were replayed from the file.
    """
    requests = []
    warmup_file = os.path.join(self.path, layout.WARMUP_FILE)
    from_file = fileio.exists(warmup_file)
    if from_file:
      for record in tf.data.TFRecordDataset(warmup_file):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        if log.HasField("predict_log"):
          requests.append(log.predict_log.request)
    else:
      for name, signature in self.signature_defs.items():
        if name not in self._functions:
          continue
        request = predict_pb2.PredictRequest()
        request.model_spec.signature_name = name
        for alias, proto in tensors.warm_up_inputs(signature).items():
          request.inputs[alias].CopyFrom(proto)
        requests.append(request)
    for request in requests:
      try:
        self.predict(request, limits)
      except Exception as e:  # pylint: disable=broad-except
        # A signature that cannot answer a plain image is worth a look.
        logging.warning("warm-up of %s version %d, signature %r failed: %s",
                        self.name, self.version,
                        request.model_spec.signature_name, e)
    logging.info("warmed up %s version %d with %d requests%s", self.name,
                 self.version, len(requests),
                 f" from {layout.WARMUP_FILE}" if from_file else "")
    return len(requests) if from_file else 0


def label_error(label: str) -> ServingError:
  """TF Serving's answer to a label no version of the model carries."""
  return ServingError(Code.INVALID_ARGUMENT,
                      f"Unrecognized servable version label: {label}")


class ModelRepository:
  """The loaded versions of every model under `base`, kept in step with it."""

  def __init__(self, base: str, limits: tensors.RequestLimits,
               keep_versions: int = KEEP_VERSIONS, warm_up: bool = True):
    self.base = base
    # Called with (version path, loaded?) after every load attempt, and
    # with (request, response) after every answered Predict.
    self.on_load = lambda path, ok: None
    self.on_predict = lambda request, response: None
    # Joins concurrent requests into batches (batching.py); None: off.
    self.batcher: Optional[batching.BatchScheduler] = None
    self.limits = limits
    self._keep = max(1, keep_versions)
    self._warm_up = warm_up
    # {name: {version: Servable}}, replaced whole and never changed in place,
    # so request threads read it without a lock and never see a half-swap.
    self._models: Dict[str, Dict[int, Servable]] = {}
    # {name: {label: version}} of loaded versions only, replaced whole as
    # _models is (version_labels.py holds what the labels should name).
    self._labels: Dict[str, Dict[str, int]] = {}
    # {(name, version): (fingerprint of the files that failed, reason)}.
    self._failed: Dict[Tuple[str, int], Tuple[str, str]] = {}
    self._waiting = set()  # versions without a SavedModel, logged once
    self._poll_lock = threading.Lock()
    self._stop = threading.Event()
    self._thread = None

  def start(self, poll_seconds: float) -> None:
    """Polls base every poll_seconds on a daemon thread."""
    def loop():
      while not self._stop.wait(poll_seconds):
        try:
          self.poll()
        except Exception:  # pylint: disable=broad-except
          logging.exception("polling %s failed; retrying", self.base)
    self._thread = threading.Thread(target=loop, name="model-poller",
                                    daemon=True)
    self._thread.start()

  def stop(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join()

  def models(self) -> Dict[str, Tuple[int, ...]]:
    return {name: tuple(sorted(v)) for name, v in self._models.items()}

  def labels(self) -> Dict[str, Dict[str, int]]:
    """{model: {label: version}} as requests see them now."""
    return {name: dict(labels) for name, labels in self._labels.items()}

  def poll(self) -> None:
    """Loads new and labelled versions, drops vanished and surplus ones,
    then points each label at its version once that version is loaded."""
    with self._poll_lock:
      on_disk = layout.served_models(self.base)
      wanted = self._wanted_labels()
      for name in sorted(set(on_disk) | set(self._models)):
        # Versions the labels name now stay too: a request may have read a
        # label a moment before _publish_labels moves it, and must find its
        # version loaded; a later poll drops it.
        self._update(name, on_disk.get(name, {}),
                     set(wanted.get(name, {}).values())
                     | set(self._labels.get(name, {}).values()))
      self._publish_labels(wanted)

  def _wanted_labels(self) -> Dict[str, Dict[str, int]]:
    try:
      return version_labels.read_labels(self.base)
    except (OSError, ValueError) as e:
      logging.warning("cannot read the version labels under %s: %s; the "
                      "labels stay as they were", self.base, e)
      return {name: dict(labels) for name, labels in self._labels.items()}

  def _publish_labels(self, wanted: Dict[str, Dict[str, int]]) -> None:
    """A label moves only to a loaded version; until then it keeps naming
    the one it named (if still loaded), so no labelled request fails while
    a promoted version loads."""
    published = {}
    for name, labels in wanted.items():
      loaded = self._models.get(name, {})
      for label, version in labels.items():
        before = self._labels.get(name, {}).get(label)
        if version in loaded:
          published.setdefault(name, {})[label] = version
          if before != version:
            logging.info("model %s label %s -> version %d", name, label,
                         version)
        elif before in loaded:
          published.setdefault(name, {})[label] = before
    self._labels = published

  def _update(self, name: str, on_disk: Dict[int, str],
              pinned: Set[int]) -> None:
    loaded = {v: s for v, s in self._models.get(name, {}).items()
              if v in on_disk}
    for version in sorted(set(self._models.get(name, {})) - set(loaded)):
      logging.info("model %s version %d is gone from disk: unloaded", name,
                   version)
    for version in sorted(on_disk, reverse=True):
      if version <= max(loaded, default=-1):
        break
      servable = self._load(name, version, on_disk[version])
      if servable is not None:
        loaded[version] = servable
        break
    # Labelled versions are served besides the latest, whatever their age.
    for version in sorted((pinned & set(on_disk)) - set(loaded)):
      servable = self._load(name, version, on_disk[version])
      if servable is not None:
        loaded[version] = servable
    for version in [v for v in sorted(loaded)[:-self._keep]
                    if v not in pinned]:
      del loaded[version]
      logging.info("model %s version %d unloaded (newer versions loaded)",
                   name, version)
    latest = max(loaded, default=-1)
    self._failed = {k: v for k, v in self._failed.items()
                    if k[0] != name or (k[1] in on_disk and k[1] > latest)}
    models = dict(self._models)
    if loaded:
      models[name] = loaded
    else:
      models.pop(name, None)
    self._models = models

  def _load(self, name: str, version: int, path: str) -> Optional[Servable]:
    if not layout.is_servable(path):
      if (name, version) not in self._waiting:
        self._waiting.add((name, version))
        logging.info("model %s version %d has no %s yet; waiting for it",
                     name, version, layout.SAVED_MODEL_FILE)
      return None
    fingerprint = layout.fingerprint(path)
    failed = self._failed.get((name, version))
    if fingerprint is None or (failed and failed[0] == fingerprint):
      return None  # still moving, or failed with these very files
    start = time.monotonic()
    try:
      servable = Servable(name, version, path)
      servable.batcher = self.batcher
      if self._warm_up:
        servable.warm_up(self.limits)
    except Exception as e:  # pylint: disable=broad-except
      self.on_load(path, False)
      reason = " ".join(str(e).split()) or type(e).__name__
      self._failed = {**self._failed, (name, version): (fingerprint, reason)}
      serving = sorted(self._models.get(name, {}))
      logging.warning("model %s version %d failed to load from %s: %s; %s",
                      name, version, path, reason,
                      f"still serving version {serving[-1]}" if serving
                      else "the model has no version to serve")
      return None
    self.on_load(path, True)
    logging.info("model %s version %d loaded from %s in %.1f s "
                 "(signatures: %s)", name, version, path,
                 time.monotonic() - start,
                 ", ".join(sorted(s for s in servable.signature_defs
                                  if not s.startswith("__"))))
    return servable

  def get(self, name: str, version: Optional[int]) -> Servable:
    """The version asked for, or the latest; NOT_FOUND if not loaded."""
    versions = self._models.get(name, {})
    if version is None and versions:
      return versions[max(versions)]
    if version in versions:
      return versions[version]
    request = (f"Latest({name})" if version is None
               else f"Specific({name}, {version})")
    raise ServingError(Code.NOT_FOUND,
                       f"Servable not found for request: {request}")

  def requested_version(self, model_spec) -> Optional[int]:
    """The version a ModelSpec names (by number or label), or None for the
    latest."""
    if model_spec.version_label:
      version = self._labels.get(model_spec.name, {}).get(
          model_spec.version_label)
      if version is None:
        raise label_error(model_spec.version_label)
      return version
    return model_spec.version.value if model_spec.HasField("version") \
        else None

  def predict(self, request) -> predict_pb2.PredictResponse:
    if not request.HasField("model_spec"):
      raise ServingError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
    response = self.get(request.model_spec.name,
                        self.requested_version(request.model_spec)).predict(
                            request, self.limits)
    self.on_predict(request, response)
    return response

  def metadata(self, request):
    """GetModelMetadata: the SignatureDefMap, packed as TF Serving packs it."""
    if not request.HasField("model_spec"):
      raise ServingError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
    if not request.metadata_field:
      raise ServingError(Code.INVALID_ARGUMENT, "GetModelMetadataRequest "
                         "must specify at least one metadata_field")
    for field in request.metadata_field:
      if field != contract.SIGNATURE_DEF_METADATA:
        raise ServingError(Code.INVALID_ARGUMENT,
                           f"Metadata field {field} is not supported")
    servable = self.get(request.model_spec.name,
                        self.requested_version(request.model_spec))
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    for key, signature in servable.signature_defs.items():
      signature_defs.signature_def[key].CopyFrom(signature)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    response.metadata[contract.SIGNATURE_DEF_METADATA].Pack(signature_defs)
    return response

  def status(self, request) -> get_model_status_pb2.GetModelStatusResponse:
    """AVAILABLE for loaded versions, END with the reason for failed ones."""
    if not request.HasField("model_spec"):
      raise ServingError(Code.INVALID_ARGUMENT, "Missing ModelSpec")
    name = request.model_spec.name
    version = self.requested_version(request.model_spec)
    states = {v: (_State.AVAILABLE, "") for v in self._models.get(name, {})}
    for (model, v), (_, reason) in list(self._failed.items()):
      if model == name and v not in states:
        states[v] = (_State.END, reason)
    if version is not None:
      if version not in states:
        raise ServingError(Code.NOT_FOUND, f"Could not find version "
                           f"{version} of model {name}")
      states = {version: states[version]}
    if not states:
      raise ServingError(Code.NOT_FOUND,
                         f"Could not find any versions of model {name}")
    response = get_model_status_pb2.GetModelStatusResponse()
    for v, (state, reason) in sorted(states.items()):
      status = response.model_version_status.add(version=v, state=state)
      status.status.SetInParent()  # OK, spelled out as TF Serving does
      if reason:
        status.status.error_code = Code.UNKNOWN.value[0]
        status.status.error_message = reason
    return response
