"""The report's pictures of a model: its confusion matrix on the test split
and its training curves."""

import io
import os
from typing import Dict, Optional, Sequence, Tuple, Union

import matplotlib
import numpy as np
from PIL import Image
import tensorflow_model_analysis as tfma
from tfx.dsl.io import fileio

from components import training_curves
from pipeline import eval_config
from pipeline import summary as summary_lib
from pipeline.report import document as doc
from schema import contract
from schema import layout

matplotlib.use("Agg")  # Reports are written on machines without a display.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

_CSS_DPI = 80  # confusion matrices: figure inches -> CSS pixels


def overall_plots(evaluation_uri: str) -> dict:
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

  Binary: the counts at the model's operating point, else TFMA's
  confusion-matrix plot at the threshold nearest 0.5, else
  the true/false positive/negative metrics, else recall and specificity
  times the per-label example counts. 3-class: the multi-class plot.
  """
  # The cells [[TN, FP], [FN, TP]] as TFMA's count metrics name them.
  keys = ("true_negatives", "false_positives", "false_negatives",
          "true_positives")
  if task == contract.BINARY:
    at = [k + eval_config.AT_THRESHOLD for k in keys]
    if all(doc.is_number(overall.get(k)) for k in at):
      return (np.array([overall[k] for k in at], dtype=float).reshape(2, 2),
              "TFMA counts of the served decision, at the operating point")
    plot = plots.get("confusionMatrixAtThresholds")
    if plot and plot.get("matrices"):
      m = min(plot["matrices"],
              key=lambda m: abs(m.get("threshold", 0.0) - 0.5))
      cells = [["trueNegatives", "falsePositives"],
               ["falseNegatives", "truePositives"]]
      return (np.array([[m.get(k, 0.0) for k in row] for row in cells]),
              f"TFMA confusion matrix at threshold "
              f"{m.get('threshold', 0):.3f}")
    if all(doc.is_number(overall.get(k)) for k in keys):
      return (np.array([overall[k] for k in keys], dtype=float).reshape(2, 2),
              "TFMA true/false positive/negative counts at 0.5")
    recall, specificity = overall.get("recall"), overall.get("specificity")
    if (doc.is_number(recall) and doc.is_number(specificity)
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
  n = contract.class_count(task)
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


def confusion_figure(task: str, name: str, result: summary_lib.ModelResult,
                     images_dir: str) -> Union[doc.Figure, doc.Para]:
  """The confusion matrix picture, or a note saying why there is none."""
  slice_counts = {int(s.split(":")[1]): v["example_count"]
                  for s, v in result.metrics.items()
                  if s.startswith(doc.LABEL_SLICE_PREFIX)
                  and s.split(":")[1].isdigit()
                  and doc.is_number(v.get("example_count"))}
  counts, source = confusion_matrix(
      task, result.metrics.get("Overall", {}),
      overall_plots(result.evaluation_uri), slice_counts)
  if counts is None:
    return doc.Para(source, css="note")
  file_name = f"{task}_{name}_confusion.png"
  png = plot_confusion_matrix(counts, contract.CLASS_NAMES[task],
                              f"{name}, test split")
  with open(os.path.join(images_dir, file_name), "wb") as f:
    f.write(png)
  with Image.open(io.BytesIO(png)) as image:
    width = image.width // 2  # drawn at 2 pixels per CSS pixel
  return doc.Figure(f"{doc.IMAGES_DIR}/{file_name}",
                    f"confusion matrix of {name}",
                    f"Confusion matrix, counts and share of each true class "
                    f"({source}).", "confusion", width)


def curves_figure(task: str, name: str, result: summary_lib.ModelResult,
                  images_dir: str) -> Optional[doc.Figure]:
  """The Trainer's curves picture, drawn from its history if it has none."""
  if not result.model_run_uri:
    return None
  file_name = f"{task}_{name}_curves.png"
  path = os.path.join(images_dir, file_name)
  curves = os.path.join(result.model_run_uri, layout.CURVES_FILE)
  history = summary_lib.read_history(result)
  if fileio.exists(curves):
    fileio.copy(curves, path, overwrite=True)
  elif history:
    with open(path, "wb") as f:
      f.write(training_curves.plot_history(history, name))
  else:
    return None
  return doc.Figure(f"{doc.IMAGES_DIR}/{file_name}",
                    f"training curves of {name}",
                    "Training and validation accuracy and loss per epoch; "
                    "the dotted line marks the exported epoch.", "curves")


def plot_reliability(calibration: dict, title: str) -> bytes:
  """PNG: accuracy against confidence per bin, before and after scaling."""
  figure, ax = plt.subplots(figsize=(4.2, 3.6), dpi=2 * _CSS_DPI)
  ax.plot([0, 1], [0, 1], ":", color="#8c959f", label="perfect")
  for key, style in (("before", "o--"), ("after", "s-")):
    bins = [b for b in calibration[key]["reliability"] if b["count"]]
    measures = calibration[key]
    ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins],
            style, label=f"{key}: ECE {measures['ece']:.3f}, Brier "
            f"{measures['brier']:.3f}")
  ax.set_xlabel("confidence (top class)")
  ax.set_ylabel("accuracy")
  ax.set_xlim(0, 1)
  ax.set_ylim(0, 1.02)
  ax.legend(fontsize=8, loc="upper left")
  ax.set_title(title, fontsize=10)
  figure.tight_layout()
  buf = io.BytesIO()
  figure.savefig(buf, format="png", bbox_inches="tight", pad_inches=0.08)
  plt.close(figure)
  return buf.getvalue()


def reliability_figure(task: str, name: str,
                       result: summary_lib.ModelResult,
                       images_dir: str) -> Optional[doc.Figure]:
  """The reliability diagram of the Trainer's temperature scaling."""
  calibration = result.calibration
  if not calibration or "before" not in calibration:
    return None
  file_name = f"{task}_{name}_reliability.png"
  with open(os.path.join(images_dir, file_name), "wb") as f:
    f.write(plot_reliability(
        calibration, f"{name}: temperature {calibration['temperature']:.2f}"))
  return doc.Figure(
      f"{doc.IMAGES_DIR}/{file_name}", f"reliability diagram of {name}",
      "Eval split (where the temperature was fitted): accuracy against "
      "confidence in ten bins, before and after temperature scaling.",
      "curves")
