"""`cxr report OUT`: the thesis's results chapter as a static web page.

Writes OUT/report/index.html (open it from disk, no server), OUT/report/
report.md with the same tables, and the pictures both link to under
OUT/report/images/. Everything is read back through the run summary
(pipeline.summary), the Evaluator's TFMA output, the Trainer's history.json
and curves.png, and each model's own `gradcam` serving signature:

  * results on the own test split per model (thesis Table 2),
  * cost: training and evaluation seconds, device (Table 3),
  * results on the --cross-data set, when the run had one (Table 4),
  * per model: confusion matrix, training curves, metrics per slice and a
    Grad-CAM gallery of one correctly classified test image per class.
"""

import argparse
import dataclasses
import datetime
import html
import io
import json
import math
import os
import re
import shutil
import sys
from typing import Dict, List, Optional, Sequence, Tuple, Union

from absl import logging
import matplotlib
from ml_metadata.proto import metadata_store_pb2
import numpy as np
from PIL import Image
import tensorflow as tf
import tensorflow_model_analysis as tfma

from components import image_layouts
from components import training_curves
from pipeline import runner
from pipeline import summary as summary_lib
from serving import gradcam

matplotlib.use("Agg")  # Reports are written on machines without a display.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

REPORT_DIR = "report"
INDEX_FILE = "index.html"
MARKDOWN_FILE = "report.md"
IMAGES_DIR = "images"
# Test images scanned per model for a correctly classified one per class.
GRADCAM_SCAN_LIMIT = 256
_GRADCAM_BATCH = 16
_THUMBNAIL_PX = 320
_CSS_DPI = 80  # confusion matrices: figure inches -> CSS pixels
HISTORY_FILE = "history.json"

_ACCURACY = {"binary": "binary_accuracy",
             "multiclass": "sparse_categorical_accuracy"}
_TASK_TITLES = {"binary": "Binary task: normal vs pneumonia",
                "multiclass": "3-class task: normal vs bacterial vs viral"}
# Metric names as the tables call them, for the blessing column.
_SHORT_NAMES = {"binary_accuracy": "accuracy",
                "sparse_categorical_accuracy": "accuracy",
                "recall": "sensitivity", "auc": "AUC"}
_COUNT_KEYS = ("example_count", "true_positives", "false_positives",
               "true_negatives", "false_negatives")
# Always-first columns of the slice tables; any other key follows, sorted.
_PREFERRED_ORDER = ("example_count", "binary_accuracy",
                    "sparse_categorical_accuracy", "loss", "auc", "auc_pr",
                    "precision", "recall", "specificity")
_MISSING = "–"


# ---------------------------------------------------------------------------
# A tiny document model, rendered both as HTML and as Markdown.


@dataclasses.dataclass
class _Cell:
  text: str
  numeric: bool = False
  css: str = ""  # extra class, e.g. "yes" / "no"
  title: str = ""  # tooltip (HTML only)


@dataclasses.dataclass
class _Table:
  headers: List[str]
  rows: List[List[_Cell]]
  table_id: str = ""
  css: str = ""
  row_keys: List[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Heading:
  level: int
  text: str
  anchor: str = ""


@dataclasses.dataclass
class _Para:
  text: str
  css: str = ""  # "note" for a highlighted remark


@dataclasses.dataclass
class _List:
  items: List[str]
  css: str = ""


@dataclasses.dataclass
class _Figure:
  src: str  # relative to the report folder
  alt: str
  caption: str
  kind: str  # CSS class: "confusion" or "curves"
  width: int = 0  # CSS pixels; 0: the style sheet's


@dataclasses.dataclass
class _Figures:
  items: List[_Figure]


@dataclasses.dataclass
class _GradcamCard:
  class_name: str
  original: Optional[str] = None  # image paths relative to the report
  overlay: Optional[str] = None
  file_name: str = ""
  probability: float = float("nan")
  note: str = ""  # why there is no example


@dataclasses.dataclass
class _Gallery:
  model: str
  cards: List[_GradcamCard]


@dataclasses.dataclass
class _Details:
  summary: str
  blocks: list


@dataclasses.dataclass
class _Section:
  anchor: str
  blocks: list


# ---------------------------------------------------------------------------
# Numbers.


def _is_number(value) -> bool:
  return isinstance(value, (int, float)) and not math.isnan(value)


def _format(value, key: str = "") -> str:
  """4 decimals for metrics, whole numbers for counts, '–' for none/NaN."""
  if not _is_number(value):
    return _MISSING
  if key in _COUNT_KEYS:
    return f"{value:.0f}"
  return f"{value:.4f}"


def _seconds(value: Optional[float]) -> str:
  return f"{value:.1f}" if _is_number(value) else _MISSING


def _class_suffix(key: str, class_names: Sequence[str]) -> str:
  """'recall classId:2 topK:1' -> 'recall viral topK:1' (the task's names)."""
  def name(match):
    class_id = int(match.group(1))
    return (class_names[class_id] if class_id < len(class_names)
            else match.group(0))
  return re.sub(r"\bclassId:(\d+)\b", name, key)


def _slice_label(slice_name: str, class_names: Sequence[str]) -> str:
  feature, _, value = slice_name.partition(":")
  if feature == "label" and value.isdigit() and int(value) < len(class_names):
    return f"{slice_name} ({class_names[int(value)]})"
  return slice_name


def _one_class_slice(slice_name: str, values: Dict[str, float]) -> bool:
  """True when a slice holds a single true class, where AUC is undefined."""
  if slice_name.startswith("label:"):
    return True
  counts = [values.get(k) for k in ("true_positives", "false_negatives",
                                    "true_negatives", "false_positives")]
  if all(_is_number(c) for c in counts):
    tp, fn, tn, fp = counts
    return tp + fn == 0 or tn + fp == 0
  return False


def _metric_cell(values: Dict[str, float], key: str, slice_name: str
                 ) -> _Cell:
  if key.startswith("auc") and _one_class_slice(slice_name, values):
    # TFMA reports 0 here; a reader would take it for a terrible model.
    return _Cell("n/a", numeric=True,
                 title="one true class in this slice: AUC is undefined")
  return _Cell(_format(values.get(key), key), numeric=True)


def _ordered_keys(keys) -> List[str]:
  keys = set(keys)
  first = [k for k in _PREFERRED_ORDER if k in keys]
  return first + sorted(keys - set(first))


# ---------------------------------------------------------------------------
# Reading artifacts.


def _read_json(path: str) -> Optional[dict]:
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def _history(result: summary_lib.ModelResult) -> Optional[dict]:
  if not result.model_run_uri:
    return None
  return _read_json(os.path.join(result.model_run_uri, HISTORY_FILE))


def evaluated_examples_uri(metadata_path: str,
                           evaluation_uri: str) -> Optional[str]:
  """URI of the Examples artifact the Evaluator that wrote `evaluation_uri`
  read, i.e. the images its test metrics are about (lineage in MLMD)."""
  store = summary_lib.open_store(metadata_path)
  artifacts = store.get_artifacts_by_uri(evaluation_uri)
  if not artifacts:
    return None
  producers = [e.execution_id for e in store.get_events_by_artifact_ids(
      [a.id for a in artifacts]) if e.type == metadata_store_pb2.Event.OUTPUT]
  inputs = [e.artifact_id for e in store.get_events_by_execution_ids(producers)
            if e.type == metadata_store_pb2.Event.INPUT]
  for artifact in store.get_artifacts_by_id(inputs):
    type_name = store.get_artifact_types_by_id([artifact.type_id])[0].name
    if type_name == "Examples":
      return artifact.uri
  return None


def _overall_plots(evaluation_uri: str) -> dict:
  """Plot name -> plot dict on the Overall slice ({} when none)."""
  result = tfma.load_eval_result(evaluation_uri)
  found = {}
  for slice_key, by_output in result.plots or []:
    if slice_key or not by_output:
      continue
    for by_sub_key in by_output.values():
      for plots in by_sub_key.values():
        found.update(plots)
  return found


def confusion_matrix(task: str, overall: Dict[str, float], plots: dict,
                     slice_counts: Dict[int, float]
                     ) -> Tuple[Optional[np.ndarray], str]:
  """(counts [true, predicted], where they came from) or (None, why not).

  Binary: TFMA's confusion-matrix plot at the threshold nearest 0.5, else
  the true/false positive/negative metrics, else recall and specificity
  times the per-label example counts. 3-class: the multi-class plot.
  """
  if task == "binary":
    plot = plots.get("confusionMatrixAtThresholds")
    if plot and plot.get("matrices"):
      m = min(plot["matrices"],
              key=lambda m: abs(m.get("threshold", 0.0) - 0.5))
      cells = [["trueNegatives", "falsePositives"],
               ["falseNegatives", "truePositives"]]
      return (np.array([[m.get(k, 0.0) for k in row] for row in cells]),
              f"TFMA confusion matrix at threshold "
              f"{m.get('threshold', 0):.3f}")
    keys = ("true_negatives", "false_positives", "false_negatives",
            "true_positives")
    if all(_is_number(overall.get(k)) for k in keys):
      return (np.array([overall[k] for k in keys], dtype=float).reshape(2, 2),
              "TFMA true/false positive/negative counts at 0.5")
    recall, specificity = overall.get("recall"), overall.get("specificity")
    if (_is_number(recall) and _is_number(specificity)
        and 0 in slice_counts and 1 in slice_counts):
      negatives, positives = slice_counts[0], slice_counts[1]
      tn, tp = round(specificity * negatives), round(recall * positives)
      return (np.array([[tn, negatives - tn], [positives - tp, tp]],
                       dtype=float),
              "recall and specificity at 0.5 times the per-label counts")
    return None, ("no confusion matrix: the evaluation has neither the "
                  "confusion-matrix plot nor recall, specificity and "
                  "per-label counts")
  plot = plots.get("multiClassConfusionMatrixAtThresholds")
  if not plot or not plot.get("matrices"):
    return None, ("no confusion matrix: the evaluation has no "
                  "multiClassConfusionMatrixAtThresholds plot")
  # The lowest threshold: every image counts with its arg-max class.
  m = min(plot["matrices"], key=lambda m: m.get("threshold", 0.0))
  n = len(image_layouts.CLASS_NAMES[task])
  counts = np.zeros((n, n))
  for entry in m.get("entries", []):
    # Proto3 JSON leaves zero fields out: class 0 has no key.
    actual = int(entry.get("actualClassId", 0))
    predicted = int(entry.get("predictedClassId", 0))
    if 0 <= actual < n and 0 <= predicted < n:
      counts[actual, predicted] += float(entry.get("numWeightedExamples", 0))
  return counts, (f"TFMA multi-class confusion matrix at threshold "
                  f"{m.get('threshold', 0.0):.2f} (arg-max class)")


def plot_confusion_matrix(counts: np.ndarray, class_names: Sequence[str],
                          title: str) -> bytes:
  """PNG: counts and row-normalised percentages (true class per row)."""
  n = len(class_names)
  totals = counts.sum(axis=1, keepdims=True)
  shares = np.divide(counts, totals, out=np.zeros_like(counts),
                     where=totals > 0)
  # At 2 image pixels per CSS pixel: sharp on high-density screens.
  figure, ax = plt.subplots(figsize=(1.1 * n + 2.2, 0.95 * n + 1.5),
                            dpi=2 * _CSS_DPI)
  image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
  for i in range(n):
    for j in range(n):
      ax.text(j, i, f"{counts[i, j]:.0f}\n{100 * shares[i, j]:.1f}%",
              ha="center", va="center", fontsize=11,
              color="white" if shares[i, j] > 0.6 else "#1f2328")
  ax.set_xticks(range(n), class_names)
  ax.set_yticks(range(n), class_names)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  ax.set_title(title, fontsize=11)
  figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04,
                  label="share of the true class")
  figure.tight_layout()
  buf = io.BytesIO()
  # Tight: the axis labels of a small figure are not cut off.
  figure.savefig(buf, format="png", bbox_inches="tight", pad_inches=0.08)
  plt.close(figure)
  return buf.getvalue()


def _thumbnail(encoded: bytes, path: str) -> None:
  with Image.open(io.BytesIO(encoded)) as image:
    image = image.convert("L" if image.mode in ("L", "I;16", "I") else "RGB")
    image.thumbnail((_THUMBNAIL_PX, _THUMBNAIL_PX))
    image.save(path, format="PNG")


def gradcam_gallery(model_dir: str, examples_uri: str, task: str,
                    images_dir: str, prefix: str,
                    scan_limit: int = GRADCAM_SCAN_LIMIT
                    ) -> List[_GradcamCard]:
  """One correctly classified test image per class, with its Grad-CAM.

  Scans Split-test in file order (at most `scan_limit` images) and asks the
  model's own `gradcam` signature to explain its predicted class; writes
  PREFIX_<class>_original.png and PREFIX_<class>_gradcam.png.
  """
  class_names = image_layouts.CLASS_NAMES[task]
  files = sorted(tf.io.gfile.glob(os.path.join(examples_uri, "Split-test",
                                               "*")))
  if not files:
    note = f"no test split under {examples_uri}"
    return [_GradcamCard(name, note=note) for name in class_names]
  loaded = tf.saved_model.load(model_dir)  # kept alive while we call it
  explain = loaded.signatures["gradcam"]
  spec = {"image": tf.io.FixedLenFeature([], tf.string),
          "label": tf.io.FixedLenFeature([], tf.int64),
          "file_name": tf.io.FixedLenFeature([], tf.string, default_value="")}
  dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
  found: Dict[int, _GradcamCard] = {}
  scanned = 0
  for batch in dataset.take(scan_limit).batch(_GRADCAM_BATCH):
    parsed = tf.io.parse_example(batch, spec)
    scanned += int(batch.shape[0])
    labels = parsed["label"].numpy()
    # Only images of classes still missing are worth a forward pass.
    wanted = [i for i, label in enumerate(labels) if int(label) not in found]
    if not wanted:
      continue
    images = tf.gather(parsed["image"], wanted)
    inputs = {"images": images, "class_index": tf.constant([], tf.int32)}
    if "method" in explain.structured_input_signature[1]:
      # Python's loader does not fill SignatureDef defaults; models
      # exported before HiResCAM existed have no method input.
      inputs["method"] = tf.constant(gradcam.DEFAULT_METHOD)
    outputs = explain(**inputs)
    class_ids = outputs["class_id"].numpy()
    probabilities = outputs["probabilities"].numpy()
    for row, i in enumerate(wanted):
      label = int(labels[i])
      if label in found or int(class_ids[row]) != label:
        continue
      name = class_names[label]
      original = f"{prefix}_{name}_original.png"
      overlay = f"{prefix}_{name}_gradcam.png"
      _thumbnail(images[row].numpy(), os.path.join(images_dir, original))
      with open(os.path.join(images_dir, overlay), "wb") as f:
        f.write(outputs["overlay_png"][row].numpy())
      found[label] = _GradcamCard(
          class_name=name,
          original=f"{IMAGES_DIR}/{original}",
          overlay=f"{IMAGES_DIR}/{overlay}",
          file_name=parsed["file_name"][i].numpy().decode("utf-8", "replace"),
          probability=float(probabilities[row, label]))
    if len(found) == len(class_names):
      break
  return [found.get(c, _GradcamCard(
      name, note=f"no correctly classified {name} image among the first "
      f"{scanned} test images"))
          for c, name in enumerate(class_names)]


# ---------------------------------------------------------------------------
# The report's sections.


@dataclasses.dataclass(frozen=True)
class _Column:
  key: str  # metric key
  header: str
  slice_name: str = "Overall"  # where the value is read

  def value(self, metrics: Dict[str, Dict[str, float]]):
    return metrics.get(self.slice_name, {}).get(self.key)


def _class_key(present, name: str, class_id: int) -> Optional[str]:
  """The key of metric `name` for one class ('auc classId:1', also with a
  further sub-key such as 'recall classId:1 topK:1'), if any."""
  exact = f"{name} classId:{class_id}"
  matches = sorted(k for k in present
                   if k == exact or k.startswith(exact + " "))
  return matches[0] if matches else None


def _main_columns(task: str, metrics: Sequence[Dict[str, Dict[str, float]]],
                  per_slice: bool = False) -> List[_Column]:
  """Columns of Table 2 for models with these metrics (slice -> key -> v).

  Optional columns appear only when some model has them. per_slice: only
  columns read on each row's own slice (for the slice tables).
  """
  present = {k for m in metrics for k in m.get("Overall", {})}
  class_names = image_layouts.CLASS_NAMES[task]
  accuracy = _ACCURACY[task]
  columns = [_Column("example_count", "test images"),
             _Column(accuracy, "accuracy"), _Column("loss", "loss")]
  if task == "binary":
    columns.append(_Column("auc", "AUC"))
    columns += [c for c in (_Column("auc_pr", "PR AUC"),
                            _Column("precision", "precision"))
                if c.key in present]
    columns += [_Column("recall", "sensitivity"),
                _Column("specificity", "specificity")]
    return columns
  if not per_slice:
    # A class's recall is the accuracy on its label slice: exact, and there
    # whatever per-class metrics the evaluation config asks for.
    columns += [_Column(accuracy, f"recall {name}", f"label:{c}")
                for c, name in enumerate(class_names)
                if any(f"label:{c}" in m for m in metrics)]
  for c, name in enumerate(class_names):
    key = _class_key(present, "auc", c)
    if key:
      columns.append(_Column(key, f"AUC {name}"))
  return columns


def _blessed_cell(result: summary_lib.ModelResult) -> _Cell:
  if result.blessed is None:
    return _Cell("not evaluated", css="muted")
  if result.blessed:
    return _Cell("yes", css="yes")
  failed = sorted({_SHORT_NAMES.get(name, name) for name in (
      f.split(" on ", 1)[0] for f in result.failed_thresholds)})
  text = "no" + (f": {', '.join(failed)}" if failed else "")
  return _Cell(text, css="no", title="; ".join(result.failed_thresholds))


def _results_table(task: str, run: summary_lib.RunSummary) -> list:
  columns = _main_columns(task, [r.metrics for r in run.models.values()])
  rows, keys = [], []
  for name, result in run.models.items():
    row = [_Cell(name)]
    row += [_Cell(_format(c.value(result.metrics), c.key), numeric=True)
            for c in columns]
    row.append(_blessed_cell(result))
    row.append(_Cell(os.path.basename(result.pushed_model.rstrip("/"))
                     if result.pushed_model else "not pushed",
                     css="" if result.pushed_model else "muted"))
    rows.append(row)
    keys.append(name)
  blocks = [
      _Heading(3, "Results on the test split (thesis Table 2)"),
      _Table(["model"] + [c.header for c in columns]
             + ["blessed", "pushed version"],
             rows, table_id=f"results-{task}", css="main", row_keys=keys)]
  if task == "binary":
    blocks.append(_Para("Sensitivity is recall of pneumonia and specificity "
                        "recall of normal, both at the 0.5 threshold."))
  failures = [f"{name}: {f}" for name, r in run.models.items()
              for f in r.failed_thresholds]
  if failures:
    blocks += [_Para("Blessing floors missed:"), _List(failures, css="no")]
  return blocks


def _cost_table(task: str, run: summary_lib.RunSummary) -> list:
  has_cross = any("CrossEvaluator" in r.seconds for r in run.models.values())
  headers = ["model", "device", "epochs", "exported epoch",
             "training s (epochs)", "s / epoch (min–max)", "Trainer s",
             "evaluation s"] + (["cross-evaluation s"] if has_cross else [])
  rows, keys = [], []
  for name, result in run.models.items():
    history = _history(result) or {}
    epoch_seconds = [s for s in history.get("seconds", []) if _is_number(s)]
    epochs = len(history.get("loss", []))
    row = [
        _Cell(name),
        _Cell(str(history.get("device", "unknown"))),
        _Cell(str(epochs) if history else _MISSING, numeric=True),
        _Cell(str(history.get("exported_epoch") or _MISSING), numeric=True),
        _Cell(_seconds(sum(epoch_seconds)) if epoch_seconds else _MISSING,
              numeric=True),
        _Cell(f"{min(epoch_seconds):.1f}–{max(epoch_seconds):.1f}"
              if epoch_seconds else _MISSING, numeric=True),
        _Cell(_seconds(result.seconds.get("Trainer")), numeric=True),
        _Cell(_seconds(result.seconds.get("Evaluator")), numeric=True),
    ]
    if has_cross:
      row.append(_Cell(_seconds(result.seconds.get("CrossEvaluator")),
                       numeric=True))
    rows.append(row)
    keys.append(name)
  return [
      _Heading(3, "Cost (thesis Table 3)"),
      _Table(headers, rows, table_id=f"cost-{task}", row_keys=keys),
      _Para("Training seconds add up the epochs' own times from "
            "history.json; Trainer and evaluation seconds are the "
            "components' wall times in this run ('–': taken from the cache "
            "or not completed)."),
  ]


def _cross_table(task: str, run: summary_lib.RunSummary) -> list:
  blocks = [_Heading(3, "On another data set (thesis Table 4)")]
  crossed = {n: r for n, r in run.models.items() if r.cross_metrics}
  if not crossed:
    blocks.append(_Para(
        "No cross-data-set evaluation in this run: run the pipeline with "
        "--cross-data DIR to score every model on a second data set.",
        css="note"))
    return blocks
  accuracy = _ACCURACY[task]
  columns = _main_columns(task, [r.cross_metrics for r in crossed.values()])
  if task == "binary":  # the thesis's Table 4
    columns = [c for c in columns if c.key in (
        "example_count", accuracy, "auc", "recall", "specificity")]
  rows, keys = [], []
  for name, result in crossed.items():
    own = result.metrics.get("Overall", {}).get(accuracy)
    other = result.cross_metrics.get("Overall", {}).get(accuracy)
    change = (f"{other - own:+.4f}" if _is_number(own) and _is_number(other)
              else _MISSING)
    rows.append([_Cell(name)]
                + [_Cell(_format(c.value(result.cross_metrics), c.key),
                         numeric=True) for c in columns]
                + [_Cell(_format(own), numeric=True),
                   _Cell(change, numeric=True)])
    keys.append(name)
  blocks.append(_Table(["model"] + [c.header for c in columns]
                       + ["accuracy, own test", "change"],
                       rows, table_id=f"cross-{task}", row_keys=keys))
  return blocks


def _slice_tables(task: str, name: str, result: summary_lib.ModelResult
                  ) -> list:
  class_names = image_layouts.CLASS_NAMES[task]
  slices = sorted(result.metrics, key=lambda s: (s != "Overall", s))
  main = _main_columns(task, [result.metrics], per_slice=True)
  every = _ordered_keys(k for v in result.metrics.values() for k in v)

  def table(columns, table_id):
    rows = [[_Cell(_slice_label(s, class_names))]
            + [_metric_cell(result.metrics[s], c.key, s) for c in columns]
            for s in slices]
    return _Table(["slice"] + [c.header for c in columns], rows,
                  table_id=table_id, row_keys=slices)

  return [
      _Heading(4, "Metrics per slice"),
      table(main, f"slices-{task}-{name}"),
      _Details("Every metric of every slice", [table(
          [_Column(k, _class_suffix(k, class_names)) for k in every],
          f"all-metrics-{task}-{name}")]),
  ]


def _confusion_figure(task: str, name: str, result: summary_lib.ModelResult,
                      images_dir: str):
  """The confusion matrix picture, or a note saying why there is none."""
  slice_counts = {int(s.split(":")[1]): v["example_count"]
                  for s, v in result.metrics.items()
                  if s.startswith("label:") and s.split(":")[1].isdigit()
                  and _is_number(v.get("example_count"))}
  counts, source = confusion_matrix(
      task, result.metrics.get("Overall", {}),
      _overall_plots(result.evaluation_uri), slice_counts)
  if counts is None:
    return _Para(source, css="note")
  file_name = f"{task}_{name}_confusion.png"
  png = plot_confusion_matrix(counts, image_layouts.CLASS_NAMES[task],
                              f"{name}, test split")
  with open(os.path.join(images_dir, file_name), "wb") as f:
    f.write(png)
  with Image.open(io.BytesIO(png)) as image:
    width = image.width // 2  # drawn at 2 pixels per CSS pixel
  return _Figure(f"{IMAGES_DIR}/{file_name}", f"confusion matrix of {name}",
                 f"Confusion matrix, counts and share of each true class "
                 f"({source}).", "confusion", width)


def _curves_figure(task: str, name: str, result: summary_lib.ModelResult,
                   images_dir: str) -> Optional[_Figure]:
  """The Trainer's curves.png, drawn from history.json if it has none."""
  if not result.model_run_uri:
    return None
  file_name = f"{task}_{name}_curves.png"
  path = os.path.join(images_dir, file_name)
  curves = os.path.join(result.model_run_uri, training_curves.CURVES_FILE)
  history = _history(result)
  if tf.io.gfile.exists(curves):
    tf.io.gfile.copy(curves, path, overwrite=True)
  elif history:
    with open(path, "wb") as f:
      f.write(training_curves.plot_history(history, name))
  else:
    return None
  return _Figure(f"{IMAGES_DIR}/{file_name}", f"training curves of {name}",
                 "Training and validation accuracy and loss per epoch; the "
                 "dotted line marks the exported epoch.", "curves")


def _model_section(task: str, name: str, result: summary_lib.ModelResult,
                   metadata_path: str, images_dir: str) -> list:
  blessed = _blessed_cell(result)
  badge = {"yes": "blessed", "no": "not blessed"}.get(blessed.css,
                                                       "not evaluated")
  pushed = (f"pushed as version {os.path.basename(result.pushed_model)}"
            if result.pushed_model else "not pushed")
  blocks = [_Heading(3, name, anchor=f"{task}_{name}"),
            _Para(f"{badge} · {pushed}", css=f"badge {blessed.css}")]
  figures = []
  if result.evaluation_uri:
    confusion = _confusion_figure(task, name, result, images_dir)
    if isinstance(confusion, _Para):
      blocks.append(confusion)
    else:
      figures.append(confusion)
  curves = _curves_figure(task, name, result, images_dir)
  if curves:
    figures.append(curves)
  if figures:
    blocks.append(_Figures(figures))
  if result.metrics:
    blocks += _slice_tables(task, name, result)
  blocks.append(_Heading(4, "Grad-CAM: one correct test image per class"))
  blocks += _gradcam_blocks(task, name, result, metadata_path, images_dir)
  return blocks


def _gradcam_blocks(task: str, name: str, result: summary_lib.ModelResult,
                    metadata_path: str, images_dir: str) -> list:
  if not result.model_uri or not result.evaluation_uri:
    return [_Para("No Grad-CAM: the model was not trained and evaluated in "
                  "this run.", css="note")]
  examples = evaluated_examples_uri(metadata_path, result.evaluation_uri)
  if examples is None:
    return [_Para("No Grad-CAM: the Evaluator's test examples are not in "
                  "ML Metadata.", css="note")]
  model_dir = os.path.join(result.model_uri, "Format-Serving")
  logging.info("Grad-CAM gallery of %s (%s)", name, task)
  try:
    cards = gradcam_gallery(model_dir, examples, task, images_dir,
                            f"{task}_{name}")
  except KeyError:
    return [_Para(f"No Grad-CAM: {name} was exported without the gradcam "
                  "signature (re-run the pipeline to export it).",
                  css="note")]
  except (tf.errors.OpError, OSError) as e:
    # One model's failure should not cost the whole report.
    logging.exception("Grad-CAM of %s failed", name)
    return [_Para(f"No Grad-CAM: it failed for {name}: {e}", css="note")]
  return [_Gallery(name, cards),
          _Para("Each overlay is the model's own gradcam signature "
                f"({gradcam.DEFAULT_METHOD}): the jet heat map of the "
                "evidence for the predicted (here: true) class, blended "
                "over the model's input.")]


def _header_blocks(task: str, run: summary_lib.RunSummary) -> list:
  c = run.image_counts
  blocks = [_Heading(2, _TASK_TITLES.get(task, task), anchor=task)]
  rows = [[_Cell("pipeline"), _Cell(run.pipeline_name)],
          [_Cell("run"), _Cell(run.run_id)]]
  if c:
    rows.append([_Cell("images"), _Cell(
        f"{c.get('ingested', 0)} ingested: train {c.get('train', 0)}, "
        f"eval {c.get('eval', 0)}, test {c.get('test', 0)}; "
        f"{c.get('quarantined', 0)} quarantined")])
  cross = run.cross_image_counts
  if cross:
    rows.append([_Cell("cross-data set"), _Cell(
        f"{cross.get('ingested', 0)} ingested, test {cross.get('test', 0)}, "
        f"{cross.get('quarantined', 0)} quarantined")])
  rows.append([_Cell("models"), _Cell(", ".join(run.models) or "none")])
  blocks.append(_Table(["", ""], rows, table_id=f"run-{task}", css="facts"))
  done = ("COMPLETE", "CACHED")
  not_done = {n: s for n, s in run.states.items() if s not in done}
  if not_done:
    blocks.append(_Para("Not completed in this run: " + ", ".join(
        f"{n} ({s})" for n, s in sorted(not_done.items())), css="note"))
  return blocks


def _task_section(task: str, run: summary_lib.RunSummary,
                  metadata_path: str, images_dir: str) -> _Section:
  blocks = _header_blocks(task, run)
  blocks += _results_table(task, run)
  blocks += _cost_table(task, run)
  blocks += _cross_table(task, run)
  for name, result in run.models.items():
    blocks += _model_section(task, name, result, metadata_path, images_dir)
  return _Section(task, blocks)


# ---------------------------------------------------------------------------
# Rendering.

_CSS = """
:root { --ok: #1a7f37; --ok-bg: #dafbe1; --bad: #cf222e; --bad-bg: #ffebe9;
  --muted: #59636e; --line: #d1d9e0; --head: #f0f3f6; --ink: #1f2328; }
* { box-sizing: border-box; }
body { margin: 0; background: #f6f8fa; color: var(--ink);
  font: 15px/1.5 -apple-system, "Segoe UI", Roboto, "Helvetica Neue",
  Arial, sans-serif; }
header.page { background: linear-gradient(135deg, #0a3069, #0969da);
  color: #fff; padding: 28px 32px 22px; }
header.page h1 { margin: 0 0 6px; font-size: 26px; }
header.page p { margin: 2px 0; opacity: .9; }
header.page nav a { color: #fff; margin-right: 16px; font-weight: 600; }
main { max-width: 1200px; margin: 0 auto; padding: 8px 24px 24px; }
section.task { background: #fff; border: 1px solid var(--line);
  border-radius: 10px; padding: 8px 28px 24px; margin: 24px 0;
  box-shadow: 0 1px 3px rgba(31, 35, 40, .06); }
h2 { font-size: 22px; border-bottom: 2px solid var(--line);
  padding-bottom: 6px; }
h3 { font-size: 18px; margin-top: 28px; }
h4 { font-size: 15px; margin: 18px 0 6px; color: var(--muted); }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 6px 0 14px; font-size: 14px; }
th, td { padding: 5px 11px; border-bottom: 1px solid var(--line);
  text-align: left; white-space: nowrap; }
th { background: var(--head); font-weight: 600; }
tbody tr:nth-child(even) td { background: #fafbfc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.main td:first-child, table.main th:first-child { font-weight: 600; }
table.facts th { display: none; }
table.facts td:first-child { color: var(--muted); }
.yes { color: var(--ok); font-weight: 600; }
.no { color: var(--bad); font-weight: 600; }
.muted { color: var(--muted); }
ul.no { font-weight: normal; font-size: 14px; }
p.badge { display: inline-block; border-radius: 999px; padding: 2px 12px;
  font-size: 13px; margin: 0; background: var(--head); }
p.badge.yes { background: var(--ok-bg); }
p.badge.no { background: var(--bad-bg); }
p.note { background: #fff8c5; border-left: 4px solid #d4a72c;
  padding: 8px 12px; border-radius: 4px; color: #3b2e00; }
.figures { display: flex; flex-wrap: wrap; gap: 20px; align-items: flex-start;
  margin: 12px 0; }
figure { margin: 0; max-width: 100%; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line);
  border-radius: 6px; background: #fff; }
figure.confusion figcaption { max-width: 400px; }
figure.curves img { width: 600px; }
figcaption { font-size: 13px; color: var(--muted); max-width: 600px; }
.gallery { display: grid; gap: 16px;
  grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px;
  background: #fbfcfd; }
.card h5 { margin: 0 0 8px; font-size: 15px; text-transform: capitalize; }
.pair { display: flex; gap: 8px; }
.pair img { width: 160px; height: 160px; object-fit: contain;
  background: #000; border-radius: 4px; }
.card p { margin: 6px 0 0; font-size: 13px; color: var(--muted);
  word-break: break-all; }
details { margin: 4px 0 12px; }
summary { cursor: pointer; color: #0969da; }
footer { color: var(--muted); font-size: 13px; text-align: center;
  padding: 12px 24px 32px; }
"""


def _e(text) -> str:
  return html.escape(str(text), quote=True)


def _html_table(table: _Table) -> str:
  attrs = ""
  if table.table_id:
    attrs += f' id="{_e(table.table_id)}"'
  if table.css:
    attrs += f' class="{_e(table.css)}"'
  head = "".join(f"<th>{_e(h)}</th>" for h in table.headers)
  body = []
  for i, row in enumerate(table.rows):
    key = table.row_keys[i] if i < len(table.row_keys) else ""
    cells = []
    for cell in row:
      css = " ".join(c for c in ("num" if cell.numeric else "", cell.css) if c)
      cell_attrs = (f' class="{_e(css)}"' if css else "") + (
          f' title="{_e(cell.title)}"' if cell.title else "")
      cells.append(f"<td{cell_attrs}>{_e(cell.text)}</td>")
    row_attr = f' data-key="{_e(key)}"' if key else ""
    body.append(f"<tr{row_attr}>{''.join(cells)}</tr>")
  return (f'<div class="scroll"><table{attrs}><thead><tr>{head}</tr></thead>'
          f"<tbody>{''.join(body)}</tbody></table></div>")


def _html_block(block) -> str:
  if isinstance(block, _Heading):
    anchor = f' id="{_e(block.anchor)}"' if block.anchor else ""
    return f"<h{block.level}{anchor}>{_e(block.text)}</h{block.level}>"
  if isinstance(block, _Para):
    css = f' class="{_e(block.css)}"' if block.css else ""
    return f"<p{css}>{_e(block.text)}</p>"
  if isinstance(block, _List):
    css = f' class="{_e(block.css)}"' if block.css else ""
    return f"<ul{css}>" + "".join(
        f"<li>{_e(i)}</li>" for i in block.items) + "</ul>"
  if isinstance(block, _Table):
    return _html_table(block)
  if isinstance(block, _Figures):
    parts = []
    for fig in block.items:
      width = f' width="{fig.width}"' if fig.width else ""
      parts.append(f'<figure class="{_e(fig.kind)}"><img src="{_e(fig.src)}" '
                   f'alt="{_e(fig.alt)}"{width}><figcaption>'
                   f"{_e(fig.caption)}</figcaption></figure>")
    return '<div class="figures">' + "".join(parts) + "</div>"
  if isinstance(block, _Gallery):
    cards = []
    for card in block.cards:
      if card.overlay:
        inner = (
            '<div class="pair">'
            f'<img class="original" src="{_e(card.original)}" '
            f'alt="{_e(card.file_name)}, original">'
            f'<img class="overlay" src="{_e(card.overlay)}" '
            f'alt="{_e(card.file_name)}, Grad-CAM">'
            "</div>"
            f"<p>{_e(card.file_name)} · true {_e(card.class_name)} · "
            f"p({_e(card.class_name)}) = {card.probability:.3f}</p>")
      else:
        inner = f'<p class="missing">{_e(card.note)}</p>'
      cards.append(f'<div class="card" data-class="{_e(card.class_name)}">'
                   f"<h5>{_e(card.class_name)}</h5>{inner}</div>")
    return (f'<div class="gallery" id="gradcam-{_e(block.model)}">'
            + "".join(cards) + "</div>")
  if isinstance(block, _Details):
    return (f"<details><summary>{_e(block.summary)}</summary>"
            + "".join(_html_block(b) for b in block.blocks) + "</details>")
  if isinstance(block, _Section):
    return (f'<section class="task" id="section-{_e(block.anchor)}">'
            + "\n".join(_html_block(b) for b in block.blocks) + "</section>")
  raise TypeError(f"unknown block {type(block).__name__}")


def _md_text(text) -> str:
  return str(text).replace("|", "\\|").replace("\n", " ")


def _md_block(block) -> str:
  if isinstance(block, _Heading):
    return f"{'#' * block.level} {block.text}"
  if isinstance(block, _Para):
    return f"> {block.text}" if block.css == "note" else (
        f"**{block.text}**" if block.css.startswith("badge") else block.text)
  if isinstance(block, _List):
    return "\n".join(f"* {i}" for i in block.items)
  if isinstance(block, _Table):
    if not any(block.headers):  # key-value facts
      return "\n".join(f"* {_md_text(r[0].text)}: {_md_text(r[1].text)}"
                       for r in block.rows)
    lines = ["| " + " | ".join(_md_text(h) for h in block.headers) + " |",
             "|" + "|".join("---:" if any(
                 len(r) > i and r[i].numeric for r in block.rows) else "---"
                            for i in range(len(block.headers))) + "|"]
    lines += ["| " + " | ".join(_md_text(c.text) for c in row) + " |"
              for row in block.rows]
    return "\n".join(lines)
  if isinstance(block, _Figures):
    return "\n\n".join(f"![{f.alt}]({f.src})\n\n{f.caption}"
                       for f in block.items)
  if isinstance(block, _Gallery):
    lines = ["| class | original | Grad-CAM | file | p(class) |",
             "|---|---|---|---|---:|"]
    for card in block.cards:
      if card.overlay:
        lines.append(
            f"| {card.class_name} | ![original]({card.original}) | "
            f"![Grad-CAM]({card.overlay}) | {_md_text(card.file_name)} | "
            f"{card.probability:.3f} |")
      else:
        lines.append(f"| {card.class_name} | {_md_text(card.note)} | | | |")
    return "\n".join(lines)
  if isinstance(block, _Details):
    return f"*{block.summary}:*\n\n" + "\n\n".join(
        _md_block(b) for b in block.blocks)
  if isinstance(block, _Section):
    return "\n\n".join(_md_block(b) for b in block.blocks)
  raise TypeError(f"unknown block {type(block).__name__}")


def _footer_text(metadata_path: str) -> str:
  import tfx  # pylint: disable=g-import-not-at-top
  return (f"Produced by `cxr report` (pipeline/report.py) from the ML "
          f"Metadata in {metadata_path}, the Evaluators' TFMA output, the "
          f"Trainers' history.json and curves.png, and each model's gradcam "
          f"signature. TFX {tfx.__version__}, TensorFlow {tf.__version__}, "
          f"TFMA {tfma.__version__}.")


def _write(report_dir: str, output_dir: str, sections: List[_Section],
           notes: List[str], metadata_path: str) -> str:
  generated = datetime.datetime.now().astimezone().strftime(
      "%Y-%m-%d %H:%M:%S %Z")
  title = "Chest X-ray pneumonia models: results"
  nav = " ".join(f'<a href="#{_e(s.anchor)}">'
                 f"{_e(_TASK_TITLES.get(s.anchor, s.anchor))}</a>"
                 for s in sections)
  note_html = "".join(f'<p class="note skipped">{_e(n)}</p>' for n in notes)
  footer = _footer_text(metadata_path)
  page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<header class="page">
<h1>{_e(title)}</h1>
<p>Output folder {_e(output_dir)} · generated {_e(generated)}</p>
<nav>{nav}</nav>
</header>
<main>
{note_html}
{"".join(_html_block(s) for s in sections)}
</main>
<footer>{_e(footer)}</footer>
</body>
</html>
"""
  index = os.path.join(report_dir, INDEX_FILE)
  with open(index, "w", encoding="utf-8") as f:
    f.write(page)
  markdown = [f"# {title}", "",
              f"Output folder {output_dir}, generated {generated}.", ""]
  markdown += [f"> {n}\n" for n in notes]
  markdown += [_md_block(s) + "\n" for s in sections]
  markdown += ["---", "", footer, ""]
  with open(os.path.join(report_dir, MARKDOWN_FILE), "w",
            encoding="utf-8") as f:
    f.write("\n".join(markdown))
  return index


def _task_list(tasks: Union[None, str, Sequence[str]]) -> Tuple[str, ...]:
  if tasks is None or tasks == "both":
    return image_layouts.TASKS
  if isinstance(tasks, str):
    tasks = (tasks,)
  unknown = [t for t in tasks if t not in image_layouts.TASKS]
  if unknown:
    raise ValueError(f"unknown task {unknown[0]!r}; one of "
                     f"{image_layouts.TASKS} or 'both'")
  return tuple(tasks)


def build_report(output_dir: str,
                 tasks: Union[None, str, Sequence[str]] = None) -> str:
  """Writes OUT/report/{index.html, report.md, images/}; returns index.html.

  tasks: "binary", "multiclass", "both", a list of tasks, or None (both).
  A task whose pipeline never ran in `output_dir` gets a note; when none
  ran, ValueError.
  """
  tasks = _task_list(tasks)
  paths = runner.output_paths(output_dir)
  metadata_path = paths["metadata"]
  if not os.path.exists(metadata_path):
    raise FileNotFoundError(
        f"no ML Metadata at {metadata_path}: is {output_dir} the --output "
        "folder of a `cxr run`?")
  runs, notes = {}, []
  for task in tasks:
    name = runner.pipeline_name_for(task)
    try:
      runs[task] = summary_lib.summarize(metadata_path, name)
    except ValueError as e:
      notes.append(f"The {task} task has not run in this output folder "
                   f"({e}); `cxr run --task {task}` adds it.")
  if not runs:
    raise ValueError(f"no pipeline run of {' or '.join(tasks)} in "
                     f"{output_dir}: " + " ".join(notes))
  report_dir = os.path.join(os.path.abspath(output_dir), REPORT_DIR)
  images_dir = os.path.join(report_dir, IMAGES_DIR)
  # Our own folder: pictures of models no longer in the run must not linger.
  shutil.rmtree(images_dir, ignore_errors=True)
  os.makedirs(images_dir)
  sections = [_task_section(task, run, metadata_path, images_dir)
              for task, run in runs.items()]
  return _write(report_dir, output_dir, sections, notes, metadata_path)


# ---------------------------------------------------------------------------
# Command line.


def _report(args) -> int:
  try:
    index = build_report(args.output, args.task)
  except (FileNotFoundError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  print(f"report: {index}")
  print(f"        {os.path.join(os.path.dirname(index), MARKDOWN_FILE)}")
  return 0


def register(subparsers) -> None:
  """Adds `report OUT [--task binary|multiclass|both]` to a `cxr` parser."""
  parser = subparsers.add_parser(
      "report", help="write OUT/report/index.html and report.md: results, "
      "cost, confusion matrices, curves, slices and Grad-CAM per model")
  parser.add_argument("output", metavar="OUT",
                      help="the --output folder of `cxr run`")
  parser.add_argument("--task", choices=image_layouts.TASKS + ("both",),
                      default="both",
                      help="which task's latest run to report (default: "
                      "both; a task that never ran gets a note)")
  parser.set_defaults(func=_report)


def main(argv: Optional[List[str]] = None) -> int:
  """`cxr report` on its own: main(["OUT", "--task", "binary"])."""
  parser = argparse.ArgumentParser(prog="cxr")
  register(parser.add_subparsers(dest="command", required=True))
  args = parser.parse_args(
      ["report"] + list(sys.argv[1:] if argv is None else argv))
  return args.func(args)


if __name__ == "__main__":
  sys.exit(main())
