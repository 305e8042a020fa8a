"""The data contract: every name that ingestion, training, evaluation, the
exported model and its clients agree on.

The schema files beside this module (schema/<task>/schema.pbtxt) are the
same contract as data; this is its code face. Nothing here imports anything,
so every package of the project, the serving runtime included, may import it.
"""

from typing import Dict, Tuple

# Tasks and their classes. A diagnosis is independent of the task;
# `pneumonia` means "pneumonia of unknown kind".
BINARY, MULTICLASS = "binary", "multiclass"
TASKS: Tuple[str, ...] = (BINARY, MULTICLASS)
BOTH_TASKS = "both"  # what `cxr run` and `cxr report` take for every task
NORMAL, BACTERIAL, VIRAL, PNEUMONIA = ("normal", "bacterial", "viral",
                                       "pneumonia")
# What an image shows, as the synthetic generator draws it and the 3-class
# task names its classes.
KINDS: Tuple[str, ...] = (NORMAL, BACTERIAL, VIRAL)
CLASS_NAMES: Dict[str, Tuple[str, ...]] = {
    BINARY: (NORMAL, PNEUMONIA),
    MULTICLASS: KINDS,
}
# The class a binary model's sigmoid output is the probability of.
POSITIVE_CLASS = CLASS_NAMES[BINARY].index(PNEUMONIA)
# Every task's class of healthy lungs; any other class is pneumonia.
NORMAL_CLASS = 0
assert all(names[NORMAL_CLASS] == NORMAL for names in CLASS_NAMES.values())


def check_task(task: str) -> str:
  """task, if it is one of TASKS; else ValueError."""
  if task not in TASKS:
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")
  return task


def class_count(task: str) -> int:
  return len(CLASS_NAMES[check_task(task)])


# Splits of the ingested Examples: train for fitting, eval for model
# selection during training, test for the Evaluator's verdict only.
TRAIN, EVAL, TEST = "train", "eval", "test"
SPLITS: Tuple[str, ...] = (TRAIN, EVAL, TEST)

# The image formats taken, by the magic bytes their files start with:
# ingestion quarantines anything else, and the exported models refuse it.
IMAGE_FORMATS: Dict[str, bytes] = {"JPEG": b"\xff\xd8\xff",
                                   "PNG": b"\x89PNG\r\n\x1a\n"}
# The largest image taken, by its header, in ingestion and in the exported
# graph: 2.5 times a 43 cm detector at 0.1 mm (4,300 px square); beyond it a
# file is more likely a decompression bomb than an X-ray.
MAX_IMAGE_PIXELS = 50_000_000

# Features of an ingested tf.Example (schema/<task>/schema.pbtxt).
IMAGE_KEY = "image"  # the file bytes as read; a DICOM file as 16-bit PNG
LABEL_KEY = "label"  # class index in the task's CLASS_NAMES
LABEL_NAME_KEY = "label_name"
DIAGNOSIS_KEY = "diagnosis"
SOURCE_KEY = "source"  # data set name
FILE_NAME_KEY = "file_name"
PATIENT_ID_KEY = "patient_id"
HEIGHT_KEY = "height"
WIDTH_KEY = "width"
CHANNELS_KEY = "channels"  # of the file as stored
SIZE_BUCKET_KEY = "size_bucket"
# From a DICOM file's header (serving/dicom.py); UNKNOWN for JPEG/PNG files
# and for a header without the attribute. bits_stored of a JPEG/PNG is the
# bits its samples use.
MODALITY_KEY = "modality"  # CR, DX...
VIEW_POSITION_KEY = "view_position"  # one of VIEW_POSITIONS
BITS_STORED_KEY = "bits_stored"
PHOTOMETRIC_KEY = "photometric"  # MONOCHROME1 or MONOCHROME2
MANUFACTURER_KEY = "manufacturer"
UNKNOWN = "unknown"
# The views a chest X-ray is taken in: posteroanterior, anteroposterior
# (frontal both) and lateral. The models are frontal.
VIEW_PA, VIEW_AP, VIEW_LATERAL = "PA", "AP", "LL"
VIEW_POSITIONS: Tuple[str, ...] = (VIEW_PA, VIEW_AP, VIEW_LATERAL, UNKNOWN)
FRONTAL_VIEWS: Tuple[str, ...] = (VIEW_PA, VIEW_AP, UNKNOWN)
# Feature of a transformed example: serialized uint8 [S, S, 3].
PIXELS_KEY = "pixels"

# Signatures of every exported model, with their input and output names.
SERVING_DEFAULT = "serving_default"
TF_EXAMPLE = "serving_tf_example"
GRADCAM = "gradcam"
IMAGES_INPUT = "images"  # encoded image bytes [batch]
EXAMPLES_INPUT = "examples"  # serialized tf.Examples [batch]
CLASS_INDEX_INPUT = "class_index"  # gradcam: class to explain [batch] or []
METHOD_INPUT = "method"  # gradcam: one of GRADCAM_METHODS
PROBABILITIES = "probabilities"  # [batch, classes]
CLASS_ID = "class_id"  # [batch]
CLASS_NAME = "class_name"  # [batch]
OUTPUTS = "outputs"  # serving_tf_example: the model's own output
# The screening decision at the model's operating point, in every task:
# pneumonia of any kind (1 - P(normal)) against the threshold chosen on the
# eval split. Binary models name the decided class in class_id too.
PNEUMONIA_PROBABILITY = "pneumonia_probability"  # [batch] float32
THRESHOLD = "threshold"  # [batch] float32, the same value in every row
PNEUMONIA_DECISION = "pneumonia_decision"  # [batch] 0/1 (float32 in
# serving_tf_example, where TFMA scores it as a prediction; int64 elsewhere)
# A tf.Example's label in the decision's terms: 1.0 for pneumonia of any
# kind, 0.0 for normal ([batch, 1] float32). TFMA reads it as the label of
# PNEUMONIA_DECISION, which a 3-class label (0/1/2) cannot be; the Trainer
# exports the signature, TFMA calls it as a preprocessing function.
PNEUMONIA_LABEL_SIGNATURE = "pneumonia_label"
PNEUMONIA_LABEL = "pneumonia_label"
HEATMAP = "heatmap"  # gradcam: [batch, S, S] in [0, 1]
OVERLAY_PNG = "overlay_png"  # gradcam: [batch] PNG bytes
# serving_default's batch sizes in the warm-up file of every export
# (serving/export/warmup.py): a lone image, and a full batch of the CPU
# batching config (serving/batching_cpu.config's max_batch_size).
WARMUP_BATCH_SIZES: Tuple[int, ...] = (1, 32)
# An image in six numbers (serving/server/image_summary.py), compared
# between training and serving by `cxr skew` (schema/image_summary.pbtxt).
SUMMARY_FEATURES: Tuple[str, ...] = ("height", "width", "channels",
                                     "brightness", "contrast",
                                     "border_brightness")
# Floats among them; the others are integers.
SUMMARY_FLOATS: Tuple[str, ...] = ("brightness", "contrast",
                                   "border_brightness")
# Version labels a model's versions may carry (TF Serving's version_labels;
# serving/server/version_labels.py): the version most clients get, and the
# one a few try first.
STABLE, CANARY = "stable", "canary"
VERSION_LABELS: Tuple[str, ...] = (STABLE, CANARY)
# TF Serving's GetModelMetadata: the one metadata field there is.
SIGNATURE_DEF_METADATA = "signature_def"
GRADCAM_METHODS: Tuple[str, ...] = ("gradcam", "hirescam")
# HiResCAM keeps the gradient per location, which the thesis models' Flatten
# + Dense heads give each location its own weights for.
DEFAULT_GRADCAM_METHOD = "hirescam"

# The model zoo. The thesis's five: its CNN without and with augmentation,
# and its three transfer models. Beyond them, a small residual network
# trained from scratch with its own recipe (components/models.py). Node ids
# and served model names carry these.
CNN, CNN_AUG = "cnn", "cnn_aug"
VGG16, MOBILENET_V2, RESNET50_V2 = "vgg16", "mobilenet_v2", "resnet50_v2"
RESNET_SMALL = "resnet_small"
THESIS_MODELS: Tuple[str, ...] = (CNN, CNN_AUG, VGG16, MOBILENET_V2,
                                  RESNET50_V2)
MODELS: Tuple[str, ...] = THESIS_MODELS + (RESNET_SMALL,)
