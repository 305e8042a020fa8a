"""Where everything lives: output folders, pipeline, node and serving names,
artifact file names, and the two walks over folders that several packages
need (model versions, a folder's fingerprint).

Paths go through TFX's `fileio`, so every function here works on local
folders and on gs:// alike.
"""

import dataclasses
import hashlib
import os
from typing import Dict, List, Optional, Sequence, Tuple, Union

from tfx.dsl.io import fileio

# Under a run's output folder OUT.
PIPELINE_ROOT_DIR = "pipeline_root"  # artifacts of every component
METADATA_FILE = "metadata.sqlite"  # ML Metadata (lineage, caching)
SERVING_DIR = "serving"  # pushed models, <model name>/<version>/
REPORT_DIR = "report"


@dataclasses.dataclass(frozen=True)
class OutputPaths:
  """The folders and files of one output folder (absolute paths)."""
  output: str
  pipeline_root: str
  metadata: str
  serving: str
  report: str


def output_paths(output: str) -> OutputPaths:
  output = os.path.abspath(output)
  return OutputPaths(
      output=output,
      pipeline_root=os.path.join(output, PIPELINE_ROOT_DIR),
      metadata=os.path.join(output, METADATA_FILE),
      serving=os.path.join(output, SERVING_DIR),
      report=os.path.join(output, REPORT_DIR))


def pipeline_name(task: str) -> str:
  return f"cxr-{task}"


def serving_model_name(task: str, model: str) -> str:
  """The name a model is served under, e.g. cxr_binary_cnn_aug."""
  return f"cxr_{task}_{model}"


# Node ids. The shared part of the pipeline has one node per component; each
# model has its own branch, `<Component>_<model>`.
EXAMPLE_GEN = "ImageExampleGen"
CROSS_EXAMPLE_GEN = "CrossImageExampleGen"  # the --cross-data set
IMAGE_STATISTICS_GEN = "ImageStatisticsGen"  # summaries of the pixels
TRAINER = "Trainer"
RESOLVER = "latest_blessed_model_resolver"
EVALUATOR = "Evaluator"
CROSS_EVALUATOR = "CrossEvaluator"  # the trained model on the cross data
PUSHER = "Pusher"
# The components of a model's branch whose time a report shows.
BRANCH_COMPONENTS = (TRAINER, EVALUATOR, CROSS_EVALUATOR, PUSHER)


def node_id(component: str, model: str) -> str:
  """Id of a per-model node, e.g. Trainer_cnn_aug."""
  return f"{component}_{model}"


def model_of_node(component: str, node: str) -> Optional[str]:
  """The model of a per-model node id of `component`, else None."""
  prefix = node_id(component, "")
  return node[len(prefix):] if node.startswith(prefix) else None


# Files inside artifacts.
HISTORY_FILE = "history.json"  # Trainer's ModelRun: Keras history
CURVES_FILE = "curves.png"  # Trainer's ModelRun: training curves
QUARANTINE_FILE = "quarantine.csv"  # ImageExampleGen's ImageQuarantine
COUNTS_PROPERTY = "image_counts"  # JSON custom property of the Examples
# In those counts: 16-bit PNGs holding fewer bits (e.g. 12), which
# Transform scales by the bits they use.
RESCALED_COUNT = "rescaled_16bit"
# In those counts: ingested train-pool images whose patient no rule could
# name, each carved as a patient of its own (a leakage risk).
SPLIT_BY_IMAGE_COUNT = "split_by_image"
# In those counts: images read from DICOM files.
DICOM_COUNT = "dicom"
# JSON custom property of the Examples: {source: {folder, layout, counts}}.
SOURCES_PROPERTY = "sources"
ANOMALIES_FILE = "SchemaDiff.pb"  # ExampleValidator's, per split
# Inside a model version folder, as TF Serving reads it.
SAVED_MODEL_FILE = "saved_model.pb"
SAVED_MODEL_TEXT_FILE = "saved_model.pbtxt"  # TF Serving loads it too
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
# The version labels and their history, in the serving folder
# (serving/server/version_labels.py).
VERSION_LABELS_FILE = "version_labels.json"
# TF Serving's --model_config_file, in the serving folder.
MODELS_CONFIG_FILE = "models.config"


# --- Several data sets in one run: one string, a comma list of folders,
# so that it fits an execution property and a runtime parameter alike.
DATA_SEPARATOR = ","
DataFolders = Union[str, Sequence[str]]


def _same_folder(path: str) -> str:
  return path.rstrip("/") or path


def data_folders(data: DataFolders) -> List[str]:
  """The folders of a comma list (or of a list of comma lists), checked.

  Empty entries, a folder given twice and a folder inside another are
  errors: the same images would be ingested twice, as different patients.
  """
  parts = [data] if isinstance(data, str) else list(data)
  folders = []
  for part in parts:
    for entry in part.split(DATA_SEPARATOR):
      entry = entry.strip()
      if not entry:
        raise ValueError(f"empty data folder in {part!r}: give folders "
                         f"separated by '{DATA_SEPARATOR}'")
      folders.append(entry)
  if not folders:
    raise ValueError("no data folder given")
  for i, folder in enumerate(folders):
    for other in folders[:i]:
      a, b = _same_folder(folder), _same_folder(other)
      if a == b:
        raise ValueError(f"data folder {folder} is given twice")
      if a.startswith(b + "/") or b.startswith(a + "/"):
        raise ValueError(f"data folders {other} and {folder} overlap: one "
                         "is inside the other")
  return folders


def join_data_folders(folders: Sequence[str]) -> str:
  """data_folders's inverse: the comma list a component's property holds."""
  folders = data_folders(folders)
  return DATA_SEPARATOR.join(folders)


def source_names(folders: Sequence[str], given: str = ""
                 ) -> Tuple[List[str], List[str]]:
  """(source name of each folder, notes for a person) for data_folders.

  A source is its folder's name, unless `given` names them (a comma list,
  one per folder). Two folders of the same name get distinct sources, the
  later ones a suffix (-2, -3...), and a note says so: a source names the
  data set in every example, in the evaluation's slices and in the
  patient ids, which it keeps apart.
  """
  if given:
    names = [n.strip() for n in given.split(DATA_SEPARATOR)]
    if len(names) != len(folders) or not all(names):
      raise ValueError(f"source names {given!r} must name each of the "
                       f"{len(folders)} data folders {list(folders)}")
  else:
    names = [os.path.basename(_same_folder(f)) or f for f in folders]
  sources, notes = [], []
  for i, (folder, name) in enumerate(zip(folders, names)):
    source, n = name, 1
    # A suffix takes neither an earlier source nor a later folder's name.
    while source in sources or (source != name and source in names[i + 1:]):
      n += 1
      source = f"{name}-{n}"
    if source != name:
      first = folders[names.index(name)]
      notes.append(f"data folders {first} and {folder} share the name "
                   f"{name}: {folder} is source {source}")
    sources.append(source)
  return sources, notes


def _names(folder: str):
  """Entry names of a folder; GCS marks subfolders with a trailing '/'."""
  return [name.rstrip("/") for name in fileio.listdir(folder)]


def model_versions(model_dir: str) -> Dict[int, str]:
  """{version: path} of a model folder's version folders.

  Like TF Serving, only all-digit names are versions, so a push written
  under a temporary name is invisible until renamed into place. Whether a
  version holds a SavedModel yet is the caller's question (is_servable).
  """
  try:
    names = _names(model_dir)
  except fileio.NotFoundError:
    return {}
  return {int(name): os.path.join(model_dir, name) for name in names
          if name.isdigit() and fileio.isdir(os.path.join(model_dir, name))}


def served_models(serving_base: str) -> Dict[str, Dict[int, str]]:
  """{model name: {version: path}} of every model folder under the base."""
  try:
    names = _names(serving_base)
  except fileio.NotFoundError:
    return {}
  return {name: model_versions(os.path.join(serving_base, name))
          for name in names if not name.startswith(".")
          and fileio.isdir(os.path.join(serving_base, name))}


def is_servable(version_dir: str) -> bool:
  """Whether a version folder holds a SavedModel TF Serving can load."""
  return any(fileio.exists(os.path.join(version_dir, name))
             for name in (SAVED_MODEL_FILE, SAVED_MODEL_TEXT_FILE))


def is_local(path: str) -> bool:
  """Whether a path is on this machine's disk (no URL scheme like gs://):
  links, atomic renames and os.walk exist only there."""
  return "://" not in path


def fingerprint(root: str) -> Optional[str]:
  """Hash of every file's relative path, size and modification time.

  Equal fingerprints mean an unchanged folder, as far as a listing can
  tell. None when the folder is gone or its files move during the walk.
  """
  digest = hashlib.sha256()
  if is_local(root):
    # On a local disk a link is hashed as what it names, not followed:
    # TensorFlow's walk follows folder links (a loop repeats files dozens
    # of times) and a dangling link cannot be stat'ed. Ingestion quarantines
    # links the same way.
    try:
      for dirpath, dirs, files in sorted(os.walk(root, followlinks=False)):
        for name in sorted(dirs + files):
          path = os.path.join(dirpath, name)
          relative = os.path.relpath(path, root)
          if os.path.islink(path):
            digest.update(f"{relative}\0->{os.readlink(path)}\n".encode())
          elif name in files:
            stat = os.stat(path)
            digest.update(f"{relative}\0{stat.st_size}\0"
                          f"{stat.st_mtime_ns}\n".encode())
    except FileNotFoundError:
      return None
    return digest.hexdigest() if os.path.isdir(root) else None
  try:
    for dirpath, _, names in sorted(fileio.walk(root)):
      for name in sorted(names):
        path = os.path.join(dirpath, name)
        stat = fileio.stat(path)
        digest.update(f"{os.path.relpath(path, root)}\0{stat.length}\0"
                      f"{stat.mtime_nsec}\n".encode())
  except fileio.NotFoundError:
    return None
  return digest.hexdigest()
