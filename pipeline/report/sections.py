"""The report's tables and sections, built from a run summary.

Per task: the run's facts, results on the test split (thesis Table 2),
cost (Table 3), results on the --cross-data set (Table 4), and per model
its pictures, metrics per slice and Grad-CAM gallery.
"""

import dataclasses
import os
from typing import Dict, List, Optional, Sequence

from pipeline import eval_config
from pipeline import summary as summary_lib
from pipeline.report import document as doc
from pipeline.report import figures
from pipeline.report import gallery
from schema import contract
from schema import layout

TASK_TITLES = {contract.BINARY: "Binary task: normal vs pneumonia",
               contract.MULTICLASS: "3-class task: normal vs bacterial vs "
                                    "viral"}
_ACCURACY = {contract.BINARY: "binary_accuracy",
             contract.MULTICLASS: "sparse_categorical_accuracy"}
# Metric names as the tables call them, for the blessing column.
_SHORT_NAMES = {"binary_accuracy": "accuracy",
                "sparse_categorical_accuracy": "accuracy",
                "recall": "sensitivity", "auc": "AUC",
                eval_config.ACCURACY_AT_THRESHOLD: "accuracy",
                eval_config.RECALL_AT_THRESHOLD: "sensitivity",
                eval_config.SPECIFICITY_AT_THRESHOLD: "specificity"}
# Always-first columns of the slice tables; any other key follows, sorted.
_PREFERRED_ORDER = ("example_count", "binary_accuracy",
                    "sparse_categorical_accuracy", "loss", "auc", "auc_pr",
                    "precision", "recall", "specificity")


# ---------------------------------------------------------------------------
# Columns and cells.


@dataclasses.dataclass(frozen=True)
class Column:
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


def main_columns(task: str, metrics: Sequence[Dict[str, Dict[str, float]]],
                 per_slice: bool = False) -> List[Column]:
  """Columns of Table 2 for models with these metrics (slice -> key -> v).

  Optional columns appear only when some model has them. per_slice: only
  columns read on each row's own slice (for the slice tables).
  """
  present = {k for m in metrics for k in m.get("Overall", {})}
  class_names = contract.CLASS_NAMES[task]
  accuracy = _ACCURACY[task]
  columns = [Column("example_count", "test images"),
             Column(accuracy, "accuracy"), Column("loss", "loss")]
  if task == contract.BINARY:
    # At the models' operating points where evaluated there, else at 0.5.
    def decided(key):
      at = key + eval_config.AT_THRESHOLD
      return at if at in present else key
    columns[1] = Column(decided(accuracy), "accuracy")
    columns.append(Column("auc", "AUC"))
    columns += [c for c in (Column("auc_pr", "PR AUC"),
                            Column(decided("precision"), "precision"))
                if c.key in present]
    columns += [Column(decided("recall"), "sensitivity"),
                Column(decided("specificity"), "specificity")]
    return columns
  if not per_slice:
    # A class's recall is the accuracy on its label slice: exact, and there
    # whatever per-class metrics the evaluation config asks for.
    columns += [Column(accuracy, f"recall {name}", doc.label_slice(c))
                for c, name in enumerate(class_names)
                if any(doc.label_slice(c) in m for m in metrics)]
  for c, name in enumerate(class_names):
    key = _class_key(present, "auc", c)
    if key:
      columns.append(Column(key, f"AUC {name}"))
  # The served pneumonia decision (1 - P(normal) at the model's threshold).
  columns += [c for c in (
      Column(eval_config.RECALL_AT_THRESHOLD, "pneumonia sensitivity"),
      Column(eval_config.SPECIFICITY_AT_THRESHOLD, "pneumonia specificity"))
              if c.key in present]
  return columns


def _one_class_slice(slice_name: str, values: Dict[str, float]) -> bool:
  """True when a slice holds a single true class, where AUC is undefined."""
  if slice_name.startswith(doc.LABEL_SLICE_PREFIX):
    return True
  counts = [values.get(k) for k in ("true_positives", "false_negatives",
                                    "true_negatives", "false_positives")]
  if all(doc.is_number(c) for c in counts):
    tp, fn, tn, fp = counts
    return tp + fn == 0 or tn + fp == 0
  return False


def _metric_cell(values: Dict[str, float], key: str, slice_name: str
                 ) -> doc.Cell:
  if key.startswith("auc") and _one_class_slice(slice_name, values):
    # TFMA reports 0 here; a reader would take it for a terrible model.
    return doc.Cell("n/a", numeric=True,
                    title="one true class in this slice: AUC is undefined")
  return doc.Cell(doc.format_value(values.get(key), key), numeric=True)


def _ordered_keys(keys) -> List[str]:
  keys = set(keys)
  first = [k for k in _PREFERRED_ORDER if k in keys]
  return first + sorted(keys - set(first))


def blessed_cell(result: summary_lib.ModelResult) -> doc.Cell:
  if result.blessed is None:
    return doc.Cell("not evaluated", css="muted")
  if result.blessed:
    return doc.Cell("yes", css="yes")
  failed = sorted({_SHORT_NAMES.get(name, name) for name in (
      f.split(" on ", 1)[0] for f in result.failed_thresholds)})
  text = "no" + (f": {', '.join(failed)}" if failed else "")
  return doc.Cell(text, css="no", title="; ".join(result.failed_thresholds))


# ---------------------------------------------------------------------------
# The task's tables.


def results_table(task: str, run: summary_lib.RunSummary) -> list:
  """Results on the test split per model (thesis Table 2)."""
  columns = main_columns(task, [r.metrics for r in run.models.values()])
  rows, keys = [], []
  for name, result in run.models.items():
    row = [doc.Cell(name)]
    row += [doc.Cell(doc.format_interval(c.value(result.metrics),
                                         c.value(result.intervals), c.key),
                     numeric=True) for c in columns]
    row.append(blessed_cell(result))
    row.append(doc.Cell(os.path.basename(result.pushed_model.rstrip("/"))
                        if result.pushed_model else "not pushed",
                        css="" if result.pushed_model else "muted"))
    rows.append(row)
    keys.append(name)
  blocks = [
      doc.Heading(3, "Results on the test split (thesis Table 2)"),
      doc.Table(["model"] + [c.header for c in columns]
                + ["blessed", "pushed version"],
                rows, table_id=f"results-{task}", css="main", row_keys=keys)]
  if task == contract.BINARY:
    blocks.append(doc.Para(_decision_note(run), css="note"))
  if any(r.intervals for r in run.models.values()):
    blocks.append(doc.Para("In brackets: 95% confidence intervals (TFMA's "
                           "Poisson bootstrap over the test split). "
                           "Blessing goes by the point estimate."))
  uncertain = [f"{name}: {u}" for name, r in run.models.items()
               for u in r.uncertain_floors()]
  if uncertain:
    blocks += [doc.Para("Floors this test split cannot decide:"),
               doc.BulletList(uncertain, css="note")]
  failures = [f"{name}: {f}" for name, r in run.models.items()
              for f in r.failed_thresholds]
  if failures:
    blocks += [doc.Para("Blessing floors missed:"),
               doc.BulletList(failures, css="no")]
  return blocks


def _decision_note(run: summary_lib.RunSummary) -> str:
  """Where accuracy, sensitivity and specificity are taken, per model."""
  points = [f"{name}: {r.operating_point['rule']} on the eval split -> "
            f"threshold {summary_lib.threshold_text(r.operating_point)}"
            for name, r in run.models.items() if r.operating_point]
  if not points:
    return ("Sensitivity is recall of pneumonia and specificity recall of "
            "normal, both at the 0.5 threshold.")
  return ("Sensitivity is recall of pneumonia and specificity recall of "
          "normal; accuracy, precision, sensitivity and specificity are "
          "those of the served decision, at each model's operating point ("
          + "; ".join(points) + "). The same at 0.5 are in each model's "
          "table of every metric.")


def cost_table(task: str, run: summary_lib.RunSummary) -> list:
  """Training and evaluation seconds and the device per model (Table 3)."""
  has_cross = any(layout.CROSS_EVALUATOR in r.seconds
                  for r in run.models.values())
  headers = ["model", "device", "epochs", "exported epoch",
             "training s (epochs)", "s / epoch (min–max)", "Trainer s",
             "evaluation s"] + (["cross-evaluation s"] if has_cross else [])
  rows, keys = [], []
  for name, result in run.models.items():
    history = summary_lib.read_history(result) or {}
    epoch_seconds = [s for s in history.get("seconds", [])
                     if doc.is_number(s)]
    epochs = len(history.get("loss", []))
    row = [
        doc.Cell(name),
        doc.Cell(str(history.get("device", "unknown"))),
        doc.Cell(str(epochs) if history else doc.MISSING, numeric=True),
        doc.Cell(str(history.get("exported_epoch") or doc.MISSING),
                 numeric=True),
        doc.Cell(doc.format_seconds(sum(epoch_seconds)) if epoch_seconds
                 else doc.MISSING, numeric=True),
        doc.Cell(f"{min(epoch_seconds):.1f}–{max(epoch_seconds):.1f}"
                 if epoch_seconds else doc.MISSING, numeric=True),
        doc.Cell(doc.format_seconds(result.seconds.get(layout.TRAINER)),
                 numeric=True),
        doc.Cell(doc.format_seconds(result.seconds.get(layout.EVALUATOR)),
                 numeric=True),
    ]
    if has_cross:
      row.append(doc.Cell(doc.format_seconds(
          result.seconds.get(layout.CROSS_EVALUATOR)), numeric=True))
    rows.append(row)
    keys.append(name)
  return [
      doc.Heading(3, "Cost (thesis Table 3)"),
      doc.Table(headers, rows, table_id=f"cost-{task}", row_keys=keys),
      doc.Para("Training seconds add up the epochs' own times from "
               f"{layout.HISTORY_FILE}; Trainer and evaluation seconds are "
               "the components' wall times in this run ('–': taken from the "
               "cache or not completed)."),
  ]


def cross_table(task: str, run: summary_lib.RunSummary) -> list:
  """Results on the --cross-data set, or a note (thesis Table 4)."""
  blocks = [doc.Heading(3, "On another data set (thesis Table 4)")]
  crossed = {n: r for n, r in run.models.items() if r.cross_metrics}
  if not crossed:
    blocks.append(doc.Para(
        "No cross-data-set evaluation in this run: run the pipeline with "
        "--cross-data DIR to score every model on a second data set.",
        css="note"))
    return blocks
  accuracy = _ACCURACY[task]
  columns = main_columns(task, [r.cross_metrics for r in crossed.values()])
  if task == contract.BINARY:  # the thesis's Table 4
    columns = [c for c in columns if c.key in (
        "example_count", accuracy, "auc", "recall", "specificity")]
  rows, keys = [], []
  for name, result in crossed.items():
    own = result.metrics.get("Overall", {}).get(accuracy)
    other = result.cross_metrics.get("Overall", {}).get(accuracy)
    change = (f"{other - own:+.4f}"
              if doc.is_number(own) and doc.is_number(other) else doc.MISSING)
    rows.append([doc.Cell(name)]
                + [doc.Cell(doc.format_value(c.value(result.cross_metrics),
                                             c.key), numeric=True)
                   for c in columns]
                + [doc.Cell(doc.format_value(own), numeric=True),
                   doc.Cell(change, numeric=True)])
    keys.append(name)
  blocks.append(doc.Table(["model"] + [c.header for c in columns]
                          + ["accuracy, own test", "change"],
                          rows, table_id=f"cross-{task}", row_keys=keys))
  return blocks


# ---------------------------------------------------------------------------
# Per model.


def _slice_tables(task: str, name: str, result: summary_lib.ModelResult
                  ) -> list:
  class_names = contract.CLASS_NAMES[task]
  slices = sorted(result.metrics, key=lambda s: (s != "Overall", s))
  main = main_columns(task, [result.metrics], per_slice=True)
  every = _ordered_keys(k for v in result.metrics.values() for k in v)

  def table(columns, table_id):
    rows = [[doc.Cell(doc.slice_label(s, class_names))]
            + [_metric_cell(result.metrics[s], c.key, s) for c in columns]
            for s in slices]
    return doc.Table(["slice"] + [c.header for c in columns], rows,
                     table_id=table_id, row_keys=slices)

  return [
      doc.Heading(4, "Metrics per slice"),
      table(main, f"slices-{task}-{name}"),
      doc.Details("Every metric of every slice", [table(
          [Column(k, doc.class_suffix(k, class_names)) for k in every],
          f"all-metrics-{task}-{name}")]),
  ]


def _model_section(task: str, name: str, result: summary_lib.ModelResult,
                   metadata_path: str, images_dir: str) -> list:
  blessed = blessed_cell(result)
  badge = {"yes": "blessed", "no": "not blessed"}.get(blessed.css,
                                                       "not evaluated")
  pushed = (f"pushed as version {os.path.basename(result.pushed_model)}"
            if result.pushed_model else "not pushed")
  blocks = [doc.Heading(3, name, anchor=f"{task}_{name}"),
            doc.Para(f"{badge} · {pushed}", css=f"badge {blessed.css}")]
  pictures = []
  if result.evaluation_uri:
    confusion = figures.confusion_figure(task, name, result, images_dir)
    if isinstance(confusion, doc.Para):
      blocks.append(confusion)
    else:
      pictures.append(confusion)
  curves = figures.curves_figure(task, name, result, images_dir)
  if curves:
    pictures.append(curves)
  reliability = figures.reliability_figure(task, name, result, images_dir)
  if reliability:
    pictures.append(reliability)
  if pictures:
    blocks.append(doc.Figures(pictures))
  if result.metrics:
    blocks += _slice_tables(task, name, result)
  blocks.append(doc.Heading(4, "Grad-CAM: one correct test image per class"))
  blocks += gallery.gradcam_blocks(task, name, result, metadata_path,
                                   images_dir)
  return blocks


def _header_blocks(task: str, run: summary_lib.RunSummary) -> list:
  c = run.image_counts
  blocks = [doc.Heading(2, TASK_TITLES.get(task, task), anchor=task)]
  rows = [[doc.Cell("pipeline"), doc.Cell(run.pipeline_name)],
          [doc.Cell("run"), doc.Cell(run.run_id)]]
  if c:
    rows.append([doc.Cell("images"), doc.Cell(
        f"{c.get('ingested', 0)} ingested: train {c.get('train', 0)}, "
        f"eval {c.get('eval', 0)}, test {c.get('test', 0)}; "
        f"{c.get('quarantined', 0)} quarantined")])
  cross = run.cross_image_counts
  if cross:
    rows.append([doc.Cell("cross-data set"), doc.Cell(
        f"{cross.get('ingested', 0)} ingested, test {cross.get('test', 0)}, "
        f"{cross.get('quarantined', 0)} quarantined")])
  rows.append([doc.Cell("models"), doc.Cell(", ".join(run.models) or "none")])
  blocks.append(doc.Table(["", ""], rows, table_id=f"run-{task}",
                          css="facts"))
  not_done = {n: s for n, s in run.states.items()
              if s not in summary_lib.DONE_STATES}
  if not_done:
    blocks.append(doc.Para("Not completed in this run: " + ", ".join(
        f"{n} ({s})" for n, s in sorted(not_done.items())), css="note"))
  return blocks


def task_section(task: str, run: summary_lib.RunSummary,
                 metadata_path: str, images_dir: str) -> doc.Section:
  """One task's section; writes its pictures into images_dir."""
  blocks = _header_blocks(task, run)
  blocks += results_table(task, run)
  blocks += cost_table(task, run)
  blocks += cross_table(task, run)
  for name, result in run.models.items():
    blocks += _model_section(task, name, result, metadata_path, images_dir)
  return doc.Section(task, blocks)
