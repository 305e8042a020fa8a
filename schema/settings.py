"""Every setting of the project, each defined once, with its default and help.

* TrainingSettings: what one Trainer does. They cross the TFX boundary as
  the Trainer's custom_config (`trainer_custom_config`) and are rebuilt and
  checked on the other side (`TrainerConfig.from_custom_config`).
* GateSettings: the Evaluator's blessing floors.
* RunSettings: the run's own choices (models, eval split, runner, Beam).
* ServeSettings: `cxr serve`.
* CloudSettings: `cxr compile`, the pipeline on Vertex AI / Kubeflow.

The command line is derived from the fields (`add_arguments`, `from_args`):
a new setting is one field here, with its help. That takes a few lines over
the standard library's argparse rather than a dataclass-to-CLI package,
which the pinned TFX stack does not carry. Nothing here imports the rest of
the project.
"""

import argparse
import dataclasses
import re
import typing
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple

from schema import contract


# pylint: disable-next=redefined-builtin
def setting(default, help: str, flag: Optional[str] = None,
            choices: Optional[Tuple] = None,
            parse: Optional[Callable[[str], Any]] = None,
            show: Optional[Callable[[Any], str]] = None):
  """A dataclass field that is also a command-line option.

  flag: the option (default --name-with-dashes); a bool defaulting to True
  is turned off by its flag (e.g. --no-cache). parse: text -> value, for
  types argparse cannot build (tuples). show: value -> text of the default.
  """
  metadata = {"help": help, "flag": flag, "choices": choices, "parse": parse,
              "show": show}
  return dataclasses.field(default=default, metadata=metadata)


def _check(condition: bool, message: str) -> None:
  if not condition:
    raise ValueError(message)


def _check_choice(name: str, value, choices) -> None:
  _check(value in choices, f"{name} must be one of {choices}, got {value!r}")


def check_model_names(names: Iterable[str]) -> Tuple[str, ...]:
  """`names` as a tuple if they are distinct, known and not empty."""
  names = tuple(names)
  _check(bool(names) and len(set(names)) == len(names)
         and not set(names) - set(contract.MODELS),
         f"expected distinct names from {','.join(contract.MODELS)}, got "
         f"{names}")
  return names


def parse_model_list(text: str) -> Tuple[str, ...]:
  """'cnn, vgg16' -> ('cnn', 'vgg16'), checked."""
  return check_model_names(n.strip() for n in text.split(",") if n.strip())


def check_patient_id_pattern(text: str) -> str:
  """text if it is a regular expression Python can compile."""
  try:
    re.compile(text)
  except re.error as e:
    raise ValueError(f"patient_id_pattern {text!r} is not a valid regular "
                     f"expression: {e}") from e
  return text


def parse_views(text: str) -> Tuple[str, ...]:
  """'pa, ap' -> ('PA', 'AP'): view positions of contract.VIEW_POSITIONS,
  any case; checked."""
  by_name = {v.lower(): v for v in contract.VIEW_POSITIONS}
  names = [n.strip().lower() for n in text.split(",") if n.strip()]
  _check(bool(names) and all(n in by_name for n in names),
         f"views must be a comma list of "
         f"{','.join(by_name)}, got {text!r}")
  return tuple(dict.fromkeys(by_name[n] for n in names))


# "" (and None) in a recipe setting: the model's own, from its recipe
# (components/models.py RECIPES).
FLOAT32, FLOAT16, BFLOAT16 = "float32", "float16", "bfloat16"
MIXED_PRECISION = ("", FLOAT32, FLOAT16, BFLOAT16)
RMSPROP, ADAM = "rmsprop", "adam"
OPTIMIZERS = ("", RMSPROP, ADAM)
CONSTANT, COSINE = "constant", "cosine"
LR_SCHEDULES = ("", CONSTANT, COSINE)
CLASS_WEIGHTS = ("none", "balanced")
CALIBRATIONS = ("temperature", "none")
# How an image becomes the models' square input: stretched to it (the
# thesis's Keras loader) or scaled to fit with black bars, aspect kept.
SQUASH, PAD = "squash", "pad"
RESIZE_MODES = (SQUASH, PAD)
# How the decision threshold is chosen on the eval split: the highest one
# reaching a sensitivity, the lowest one reaching a specificity, or given.
OPERATING_RULES = ("sensitivity", "specificity", "threshold")


def parse_operating_point(text: str) -> Tuple[str, float]:
  """'sensitivity=0.95' -> ('sensitivity', 0.95); checked."""
  rule, _, value = text.partition("=")
  rule = rule.strip()
  try:
    number = float(value)
  except ValueError:
    number = None
  _check(rule in OPERATING_RULES and number is not None,
         f"operating point must be RULE=VALUE with RULE one of "
         f"{OPERATING_RULES}, e.g. sensitivity=0.95; got {text!r}")
  _check(0.0 < number < 1.0, f"the operating point's {rule} must lie "
         f"strictly between 0 and 1, got {number:g}")
  return rule, number


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
  """What the Trainer does with one model (Table 1 of the thesis)."""
  image_size: int = setting(224, "input side of the models, px")
  resize: str = setting(
      SQUASH, "how an image becomes the models' square input: squash "
      "(stretched, as the thesis's loader did) or pad (scaled to fit, "
      "aspect ratio kept, black bars); every signature does the same",
      choices=RESIZE_MODES)
  epochs: int = setting(30, "training epochs")
  batch_size: int = setting(32, "images per training step")
  optimizer: str = setting(
      "", "rmsprop or adam (default: the model's recipe)",
      choices=OPTIMIZERS)
  learning_rate: Optional[float] = setting(
      None, "initial learning rate (default: the model's recipe; README: "
      "the rate for 224-px images)")
  lr_schedule: str = setting(
      "", "constant, or cosine: a linear warm-up over --warmup-epochs, then "
      "a cosine decay towards 0 at the end of the run, set per epoch "
      "(default: the model's recipe)", choices=LR_SCHEDULES)
  warmup_epochs: Optional[int] = setting(
      None, "epochs of linear warm-up before the cosine decay (default: the "
      "model's recipe)")
  label_smoothing: Optional[float] = setting(
      None, "label smoothing of the cross-entropy loss, in [0, 1) (default: "
      "the model's recipe)")
  seed: int = setting(42, "seed of initialisation, shuffling and "
                      "augmentation")
  weights: str = setting(
      "none", "transfer models' base weights: imagenet (Keras's download "
      "and cache under KERAS_HOME), none, or a path to a weights file "
      "(local or gs://)")
  class_weight: str = setting(
      "none", "balanced: weight classes by n / (classes * n_c) of the train "
      "split", choices=CLASS_WEIGHTS)
  fine_tune_layers: int = setting(
      0, "transfer models: after the frozen phase, train the top N base "
      "layers at a tenth of the learning rate")
  fine_tune_epochs: int = setting(10, "epochs of the fine-tuning phase")
  mixed_precision: str = setting(
      "", "compute dtype: float32, float16 or bfloat16; the output layer "
      "stays float32 (default: the model's recipe)", choices=MIXED_PRECISION)
  xla: bool = setting(False, "compile with XLA")
  pixel_cache_mb: int = setting(
      2048, "memory for keeping the train and eval splits' decoded pixels "
      "after the first epoch, MB (the train split first): a split that "
      "fits is read from memory and shuffled whole every epoch, one that "
      "does not is read from its files every epoch, as is the train split "
      "of a one-epoch run; 0: never")
  restore_best_epoch: bool = setting(
      True, "export the last epoch's weights instead of the epoch with the "
      "lowest validation loss", flag="--keep-last-epoch")
  gradcam_layer: str = setting(
      "", "layer the gradcam signature explains (default: each model's "
      "last convolutional feature map)")
  operating_point: str = setting(
      "sensitivity=0.95", "the served decision's threshold on P(pneumonia), "
      "chosen on the eval split (never test): sensitivity=S (the highest "
      "threshold reaching S), specificity=S (the lowest reaching S) or "
      "threshold=T")
  calibration: str = setting(
      "temperature", "temperature scaling of the model's logits, fitted on "
      "the eval split and saved in the model; none: the raw outputs",
      choices=CALIBRATIONS)

  def __post_init__(self):
    _check(self.image_size >= 32, f"image_size must be at least 32 px, got "
           f"{self.image_size}")
    for name in ("epochs", "batch_size"):
      _check(getattr(self, name) >= 1, f"{name} must be at least 1, got "
             f"{getattr(self, name)}")
    for name in ("fine_tune_layers", "fine_tune_epochs", "pixel_cache_mb"):
      _check(getattr(self, name) >= 0, f"{name} must be at least 0, got "
             f"{getattr(self, name)}")
    _check(self.learning_rate is None or self.learning_rate > 0,
           f"learning_rate must be positive, got {self.learning_rate}")
    _check(self.warmup_epochs is None or self.warmup_epochs >= 0,
           f"warmup_epochs must be at least 0, got {self.warmup_epochs}")
    _check(self.label_smoothing is None or 0 <= self.label_smoothing < 1,
           f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
    _check_choice("class_weight", self.class_weight, CLASS_WEIGHTS)
    _check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)
    _check_choice("optimizer", self.optimizer, OPTIMIZERS)
    _check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
    _check_choice("calibration", self.calibration, CALIBRATIONS)
    _check_choice("resize", self.resize, RESIZE_MODES)
    parse_operating_point(self.operating_point)

  @property
  def operating_rule(self) -> Tuple[str, float]:
    """The operating point as (rule, value)."""
    return parse_operating_point(self.operating_point)


@dataclasses.dataclass(frozen=True)
class GateSettings:
  """Blessing floors on the test split's point estimates; a model under one
  is not pushed. Sensitivity and specificity are those of the served
  pneumonia decision at the model's operating point, for either task's
  model; binary accuracy is taken there too."""
  min_accuracy: float = setting(0.75, "blessing floor on test accuracy")
  min_auc: float = setting(0.95, "blessing floor on test AUC (binary task)")
  min_recall: float = setting(
      0.90, "blessing floor on test sensitivity of the pneumonia decision "
      "(0: no floor)")
  min_specificity: float = setting(
      0.0, "blessing floor on test specificity of the pneumonia decision "
      "(0: no floor)")

  def __post_init__(self):
    # A floor above 1 blesses nothing, which tests use; below 0 is a typo.
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      _check(value >= 0.0, f"{field.name} must be at least 0, got {value}")


RUNNERS = ("beam", "local")
BEAM_MODES = ("in_memory", "multi_processing")


@dataclasses.dataclass(frozen=True)
class RunSettings:
  """The run's own choices: what to train, how to split, how to run."""
  models: Tuple[str, ...] = setting(
      contract.THESIS_MODELS, "comma list of models to train, each in its "
      f"own Trainer/Evaluator/Pusher branch, from {','.join(contract.MODELS)}"
      " (the default is the thesis's five)", parse=parse_model_list,
      show=",".join)
  eval_percent: int = setting(
      10, "percent of train patients held out for validation")
  patient_id_pattern: str = setting(
      "", "regular expression naming the patient in file names that "
      "neither a labels CSV's patient_id column nor the Kermany names "
      "(personN, IM-NNNN) identify: its first group, or its whole match, "
      "in re.search on the file name; images still without one are split "
      "by image, a leakage risk the summary counts",
      parse=check_patient_id_pattern)
  views: Tuple[str, ...] = setting(
      contract.FRONTAL_VIEWS, "view positions taken, a comma list of "
      f"{','.join(contract.VIEW_POSITIONS).lower()} (a DICOM file's "
      "ViewPosition; JPEG/PNG files are unknown); images in other views "
      "are quarantined, since the models are frontal",
      parse=parse_views, show=lambda views: ",".join(views).lower())
  patient_salt: str = setting(
      "", "salt of the hashed DICOM PatientIDs, the patients of the split "
      "(default: each data set's folder path; a secret salt keeps anyone "
      "from testing a guessed PatientID against the hashes)")
  runner: str = setting("beam", "orchestrator on this machine",
                        choices=RUNNERS)
  beam_mode: str = setting(
      "in_memory", "Beam DirectRunner mode; multi_processing pays off on "
      "large data sets only", choices=BEAM_MODES)
  enable_cache: bool = setting(
      True, "re-run every component even if its inputs are unchanged",
      flag="--no-cache")
  confidence_intervals: bool = setting(
      True, "skip the Evaluator's bootstrap confidence intervals (95%, "
      "TFMA's Poisson bootstrap) on every metric", flag="--no-intervals")

  def __post_init__(self):
    object.__setattr__(self, "models", check_model_names(self.models))
    _check(1 <= self.eval_percent <= 50, f"eval_percent must be 1..50, got "
           f"{self.eval_percent}")
    check_patient_id_pattern(self.patient_id_pattern)
    object.__setattr__(self, "views", parse_views(",".join(self.views)))
    _check_choice("runner", self.runner, RUNNERS)
    _check_choice("beam_mode", self.beam_mode, BEAM_MODES)


@dataclasses.dataclass(frozen=True)
class ServeSettings:
  """`cxr serve`: where it listens and how much it takes on."""
  host: str = setting("127.0.0.1", "address to listen on (0.0.0.0: every "
                      "interface)")
  port: int = setting(8500, "gRPC port (0: any free port)")
  rest_port: Optional[int] = setting(
      None, "REST port, e.g. 8501 (default: no REST; 0: any free port)")
  monitoring_port: Optional[int] = setting(
      None, "Prometheus metrics on this port, any path (TF Serving's "
      "/monitoring/prometheus/metrics too; default: none; 0: any free "
      "port); plain HTTP on --host")
  log_requests: str = setting(
      "", "folder for a sampled log of answered Predict calls, as TF "
      "Serving's PredictionLog TFRecords (default: no log)")
  log_sample: float = setting(0.1, "share of Predict calls logged, 0..1")
  log_images: bool = setting(
      False, "keep the image bytes in the request log (patient data: off "
      "by default, the images are replaced by empty strings)")
  log_file_bytes: int = setting(64 * 2**20, "request log: bytes per file "
                                "before the next one is started")
  batching_parameters_file: str = setting(
      "", "TF Serving's batching parameters file (a BatchingParameters "
      "text proto, e.g. serving/batching_cpu.config): join concurrent "
      "requests into batches (default: no batching)")
  tls_cert: str = setting("", "PEM certificate: serve over TLS")
  tls_key: str = setting("", "PEM private key of --tls-cert")
  poll_seconds: float = setting(1.0, "how often to look for new model "
                                "versions")
  max_workers: int = setting(8, "requests handled at once")
  # TF Serving's gRPC limit: ServerBuilder::SetMaxMessageSize(kint32max).
  max_message_bytes: int = setting(
      2**31 - 1, "largest request accepted, as TF Serving's 2 GiB by "
      "default; larger ones get RESOURCE_EXHAUSTED")

  rest_timeout_seconds: float = setting(
      30.0, "REST: seconds a connection may take for its TLS handshake or "
      "stay silent while sending a request")
  max_connections: int = setting(
      64, "REST: connections open at once; more are closed at once")
  max_batch: int = setting(
      256, "most images (or values along any open dimension) in one "
      "request; more get INVALID_ARGUMENT")
  max_input_bytes: int = setting(
      128 * 2**20, "largest request input once built as a tensor: a "
      "request may declare more values than it sends (the last one "
      "repeats), and this bounds what that expands to")

  def __post_init__(self):
    _check(self.max_batch >= 1, "max_batch must be at least 1")
    _check(self.rest_timeout_seconds > 0, "rest_timeout_seconds must be "
           "positive")
    _check(self.max_connections >= 1, "max_connections must be at least 1")
    _check(self.max_input_bytes >= 1, "max_input_bytes must be positive")
    _check(0 <= self.log_sample <= 1, "log_sample must be 0..1")
    _check(self.log_file_bytes >= 1, "log_file_bytes must be positive")
    for name in ("port", "rest_port", "monitoring_port"):
      value = getattr(self, name)
      _check(value is None and name != "port" or 0 <= value <= 65535,
             f"{name} must be 0..65535, got {value}")
    _check(bool(self.tls_cert) == bool(self.tls_key),
           "TLS needs both a certificate and its key")
    _check(self.poll_seconds > 0, "poll_seconds must be positive")
    _check(self.max_workers >= 1, "max_workers must be at least 1")
    _check(self.max_message_bytes >= 1, "max_message_bytes must be positive")

  @property
  def local_address(self) -> str:
    return f"localhost:{self.port}"


ENGINES = ("vertex", "kubeflow")
BEAM_RUNNERS = ("dataflow", "direct")
# The accelerator asked for when --gpu is not given, per engine: Vertex AI
# names machine accelerators, Kubeflow a Kubernetes resource.
DEFAULT_GPUS = {"vertex": "NVIDIA_TESLA_T4:1", "kubeflow": "nvidia.com/gpu:1"}
NO_GPU = "none"


def parse_gpu(text: str) -> Optional[Tuple[str, int]]:
  """'NVIDIA_TESLA_T4:1' -> ('NVIDIA_TESLA_T4', 1); 'none' -> None."""
  if text == NO_GPU:
    return None
  kind, _, count = text.rpartition(":")
  _check(bool(kind) and count.isdigit() and int(count) >= 1,
         f"gpu must be TYPE:COUNT (e.g. NVIDIA_TESLA_T4:1) or {NO_GPU}, got "
         f"{text!r}")
  return kind, int(count)


@dataclasses.dataclass(frozen=True)
class CloudSettings:
  """`cxr compile`: where the compiled pipeline runs and on what."""
  engine: str = setting("vertex", "the orchestrator the spec is for",
                        choices=ENGINES)
  image: str = setting(
      "", "container image of every component, with this project installed "
      "(Dockerfile; Dockerfile.gpu when the Trainer has a GPU)")
  gpu: str = setting(
      "", "the Trainer's accelerator TYPE:COUNT, or none: train on the CPU "
      f"(default: {DEFAULT_GPUS['vertex']} on Vertex AI, as a Vertex custom "
      f"training job; {DEFAULT_GPUS['kubeflow']} on Kubeflow)")
  trainer_machine_type: str = setting(
      "n1-standard-8", "Vertex AI: machine of the training job")
  beam_runner: str = setting(
      "dataflow", "Beam runner of ingestion, statistics, Transform and "
      "evaluation; direct: in the component's own container",
      choices=BEAM_RUNNERS)
  project: str = setting("", "Google Cloud project (Vertex AI training, "
                         "Dataflow)")
  region: str = setting("us-central1", "Google Cloud region")
  temp_location: str = setting(
      "", "Dataflow's temporary files (default: PIPELINE_ROOT/tmp)")
  machine_type: str = setting("n1-standard-4", "Dataflow worker machine")
  max_workers: int = setting(4, "most Dataflow workers per Beam job")

  def __post_init__(self):
    _check_choice("engine", self.engine, ENGINES)
    _check_choice("beam_runner", self.beam_runner, BEAM_RUNNERS)
    _check(bool(self.image), "image is required: the container image with "
           "this project installed")
    parse_gpu(self.gpu or DEFAULT_GPUS[self.engine])
    _check(self.max_workers >= 1, f"max_workers must be at least 1, got "
           f"{self.max_workers}")
    needs_project = (self.beam_runner == "dataflow"
                     or self.engine == "vertex" and self.accelerator)
    _check(bool(self.project) or not needs_project,
           "project is required for Dataflow and for Vertex AI training jobs")

  @property
  def accelerator(self) -> Optional[Tuple[str, int]]:
    """The Trainer's (type, count), or None for the CPU."""
    return parse_gpu(self.gpu or DEFAULT_GPUS[self.engine])


# --- the Trainer's custom_config ---------------------------------------

# custom_config keys of TFX's google_cloud_ai_platform Trainer extension.
CLOUD_TRAINER_PREFIX = "ai_platform_"


def trainer_custom_config(task: str, model: str,
                          training: TrainingSettings) -> Dict[str, Any]:
  """The Trainer's custom_config: task, model and every training setting."""
  return {"task": task, "model": model, **dataclasses.asdict(training)}


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
  """One Trainer's task, model and settings, rebuilt from custom_config."""
  task: str
  model: str
  training: TrainingSettings

  @classmethod
  def from_custom_config(cls, config: Optional[Mapping[str, Any]]
                         ) -> "TrainerConfig":
    """Checks names and types: a misspelt key or a wrong value fails here,
    before any training, with the key named."""
    # TFX's Vertex AI Trainer hands its own `ai_platform_*` entries on to
    # the training job with ours; they are not training settings.
    config = {k: v for k, v in (config or {}).items()
              if not k.startswith(CLOUD_TRAINER_PREFIX)}
    missing = {"task", "model"} - set(config)
    _check(not missing, f"custom_config lacks {sorted(missing)}")
    task = contract.check_task(config.pop("task"))
    model = check_model_names([config.pop("model")])[0]
    return cls(task, model, build(TrainingSettings, config))


# --- building settings from plain values and from the command line -------


def _plain(hint):
  """Optional[X] -> X; other hints as they are."""
  if typing.get_origin(hint) is typing.Union:
    return next(a for a in typing.get_args(hint) if a is not type(None))
  return hint


def _coerce(field: dataclasses.Field, hint, value):
  """value as the field's type; bools and numbers are not mixed up."""
  if value is None and typing.get_origin(hint) is typing.Union:
    return None
  hint = _plain(hint)
  if hint is bool:
    _check(isinstance(value, bool), f"{field.name} must be true or false, "
           f"got {value!r}")
    return value
  if hint is int:
    _check(isinstance(value, int) and not isinstance(value, bool),
           f"{field.name} must be an integer, got {value!r}")
    return value
  if hint is float:
    _check(isinstance(value, (int, float)) and not isinstance(value, bool),
           f"{field.name} must be a number, got {value!r}")
    return float(value)
  if hint is str:
    _check(isinstance(value, str), f"{field.name} must be a string, got "
           f"{value!r}")
    return value
  if typing.get_origin(hint) is tuple:
    _check(isinstance(value, (list, tuple)), f"{field.name} must be a "
           f"list, got {value!r}")
    return tuple(value)
  raise TypeError(f"no rule for {field.name}: {hint}")


def build(cls, values: Mapping[str, Any]):
  """cls(**values) with unknown names refused and types checked.

  For values that crossed a serialization boundary (JSON, protos):
  JSON's lists become tuples, and 1 is not taken for True.
  """
  hints = typing.get_type_hints(cls)
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = set(values) - set(fields)
  _check(not unknown, f"unknown {cls.__name__} {sorted(unknown)}; known: "
         f"{sorted(fields)}")
  return cls(**{name: _coerce(fields[name], hints[name], value)
                for name, value in values.items()})


def _flag(field: dataclasses.Field) -> str:
  return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def _argument_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
  """parse, its ValueError shown by argparse with the message."""
  def convert(text: str):
    try:
      return parse(text)
    except ValueError as e:
      raise argparse.ArgumentTypeError(str(e)) from e
  convert.__name__ = parse.__name__
  return convert


def add_arguments(parser: argparse.ArgumentParser, cls,
                  only: Optional[Iterable[str]] = None) -> None:
  """One option per field of cls (or of the fields named in `only`)."""
  hints = typing.get_type_hints(cls)
  wanted = None if only is None else set(only)
  for field in dataclasses.fields(cls):
    if wanted is not None and field.name not in wanted:
      continue
    meta, hint = field.metadata, _plain(hints[field.name])
    # argparse formats help with %: a literal one ("95%") must be doubled.
    help_text = meta["help"].replace("%", "%%")
    if hint is bool:
      parser.add_argument(_flag(field), dest=field.name,
                          action="store_false" if field.default
                          else "store_true", help=help_text)
      continue
    if field.default not in (None, ""):
      shown = (meta['show'] or str)(field.default).replace("%", "%%")
      help_text += f" (default: {shown})"
    parser.add_argument(_flag(field), dest=field.name,
                        type=(_argument_type(meta["parse"]) if meta["parse"]
                              else hint), choices=meta["choices"],
                        default=field.default, help=help_text)


def from_args(cls, args: argparse.Namespace):
  """cls built from the options add_arguments added (others: defaults)."""
  return cls(**{f.name: getattr(args, f.name)
                for f in dataclasses.fields(cls) if hasattr(args, f.name)})
