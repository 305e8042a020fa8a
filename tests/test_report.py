"""`cxr report`: the results page of a real (tiny) pipeline run, its tables,
pictures and Grad-CAM gallery, and how it looks in a headless browser."""

import html.parser
import os
import shutil
import subprocess

import numpy as np
from PIL import Image
import pytest

from components import trainer
from cxr import cli
from pipeline import eval_config
from pipeline import report
from pipeline import summary
from pipeline.report import document
from pipeline.report import sections
from schema import contract
from schema import layout

# A rendered page, not a blank or error page: share of pixels that are not
# (near) white, and distinct colours (text, tables, pictures).
MIN_INK_SHARE = 0.05
MIN_COLOURS = 500


class _Page(html.parser.HTMLParser):
  """Images, tables (by id: headers and rows of cell texts), gallery cards
  and notes of the report page."""

  def __init__(self):
    super().__init__()
    self.images = []  # attribute dicts of every <img>
    self.tables = {}  # id -> {"headers": [...], "rows": [[...], ...]}
    self.cards = {}  # (gallery id, class) -> {"images": [...], "text": str}
    self.notes = []
    self._table = self._row = self._cell = None
    self._gallery = self._card = None
    self._card_depth = 0  # open <div>s inside the current card
    self._note = None

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    css = attrs.get("class", "").split()
    if tag == "img":
      self.images.append(attrs)
      if self._card is not None:
        self._card["images"].append(attrs)
    elif tag == "table":
      self._table = self.tables.setdefault(attrs.get("id", ""),
                                           {"headers": [], "rows": []})
    elif tag == "tr" and self._table is not None:
      self._row = []
    elif tag in ("td", "th") and self._row is not None:
      self._cell = []
    elif tag == "div" and self._card is not None:
      self._card_depth += 1
    elif tag == "div" and "gallery" in css:
      self._gallery = attrs.get("id")
    elif tag == "div" and "card" in css:
      self._card = self.cards.setdefault(
          (self._gallery, attrs.get("data-class")), {"images": [], "text": ""})
      self._card_depth = 1
    elif tag == "p" and "note" in css:
      self._note = []

  def handle_endtag(self, tag):
    if tag in ("td", "th") and self._cell is not None:
      self._row.append("".join(self._cell).strip())
      self._cell = None
    elif tag == "tr" and self._row is not None:
      if self._table["headers"]:
        self._table["rows"].append(self._row)
      else:
        self._table["headers"] = self._row
      self._row = None
    elif tag == "table":
      self._table = None
    elif tag == "div" and self._card is not None:
      self._card_depth -= 1
      if not self._card_depth:
        self._card = None
    elif tag == "p" and self._note is not None:
      self.notes.append("".join(self._note))
      self._note = None

  def handle_data(self, data):
    if self._cell is not None:
      self._cell.append(data)
    if self._card is not None:
      self._card["text"] += data
    if self._note is not None:
      self._note.append(data)


def _row(table, first_cell):
  rows = [r for r in table["rows"] if r and r[0] == first_cell]
  assert len(rows) == 1, f"no single row {first_cell!r} in {table}"
  return dict(zip(table["headers"], rows[0]))


@pytest.fixture(scope="module")
def built(synthetic_pipeline):
  """The report of the fixture's run (binary only), through the CLI."""
  out = synthetic_pipeline["output"]
  assert cli.main(["report", out]) == 0  # default --task both
  index = os.path.join(out, report.REPORT_DIR, report.INDEX_FILE)
  with open(index, encoding="utf-8") as f:
    page = _Page()
    page.feed(f.read())
  run = summary.summarize(layout.output_paths(out).metadata,
                          layout.pipeline_name("binary"))
  (model,) = run.models  # the fixture trains one model
  return {"out": out, "index": index, "page": page, "summary": run,
          "model": model}


def test_index_and_markdown_are_written(built):
  report_dir = os.path.dirname(built["index"])
  assert os.path.getsize(built["index"]) > 0
  assert os.path.getsize(os.path.join(report_dir, report.MARKDOWN_FILE)) > 0


def test_main_table_holds_the_summary_test_accuracy(built):
  result = built["summary"].models[built["model"]]
  metrics = result.metrics["Overall"]
  # The fixture's run skips intervals; tests/test_confidence_intervals.py
  # checks this table with them.
  assert not result.intervals["Overall"], result.intervals["Overall"]
  row = _row(built["page"].tables["results-binary"], built["model"])

  def shown(key):  # the value at the operating point
    return f"{metrics[key]:.4f}"

  assert row["accuracy"] == shown(eval_config.ACCURACY_AT_THRESHOLD)
  assert row["test images"] == f"{metrics['example_count']:.0f}"
  assert row["AUC"] == shown("auc")
  assert row["sensitivity"] == shown(eval_config.RECALL_AT_THRESHOLD)
  assert row["specificity"] == shown(eval_config.SPECIFICITY_AT_THRESHOLD)
  assert any(f"threshold {result.operating_point['threshold']:.4f}" in n
             for n in built["page"].notes), built["page"].notes
  assert row["blessed"].startswith("yes" if result.blessed else "no")
  assert row["pushed version"] == (os.path.basename(result.pushed_model)
                                   if result.pushed_model else "not pushed")
  # report.md holds the same table.
  with open(os.path.join(os.path.dirname(built["index"]),
                         report.MARKDOWN_FILE), encoding="utf-8") as f:
    markdown = f.read()
  assert any(line.startswith(f"| {built['model']} |")
             and f"| {shown(eval_config.ACCURACY_AT_THRESHOLD)} |" in line
             for line in markdown.splitlines())


def test_cost_and_slice_tables(built):
  page = built["page"]
  cost = _row(page.tables["cost-binary"], built["model"])
  # The device the Trainer had ("CPU", or "1 x GPU (name)" on a GPU).
  assert cost["device"] == trainer.device_name()
  assert int(cost["epochs"]) > 0
  assert float(cost["training s (epochs)"]) > 0
  slices = page.tables[f"slices-binary-{built['model']}"]
  names = [r[0] for r in slices["rows"]]
  assert names[0] == "Overall"
  assert "label:0 (normal)" in names and "label:1 (pneumonia)" in names
  # One true class: AUC is undefined there, not TFMA's 0.
  assert _row(slices, "label:0 (normal)")["AUC"] == "n/a"
  assert any("--cross-data" in n for n in page.notes)  # no cross data here


def test_every_image_exists_and_decodes(built):
  report_dir = os.path.dirname(built["index"])
  sources = [img["src"] for img in built["page"].images]
  metrics = built["summary"].models[built["model"]].metrics
  # The gallery's classes are the served decision's.
  correct = sum(metrics[f"label:{c}"][eval_config.ACCURACY_AT_THRESHOLD] > 0
                for c in (0, 1))
  # Confusion matrix, curves, reliability diagram, and original + overlay
  # per class with a correctly classified image.
  assert len(sources) == 3 + 2 * correct, sources
  for src in sources:
    assert not os.path.isabs(src) and "://" not in src, src
    path = os.path.join(report_dir, src)
    assert os.path.isfile(path), src
    with Image.open(path) as image:
      image.load()  # decodes every pixel
      assert image.width > 16 and image.height > 16, src


def test_gradcam_gallery_has_an_overlay_per_correct_class(built):
  metrics = built["summary"].models[built["model"]].metrics
  report_dir = os.path.dirname(built["index"])
  for class_id, name in enumerate(contract.CLASS_NAMES["binary"]):
    card = built["page"].cards[(f"gradcam-{built['model']}", name)]
    per_class = metrics[f"label:{class_id}"]
    assert per_class["example_count"] <= report.GRADCAM_SCAN_LIMIT
    if per_class["binary_accuracy"] == 0:  # no correct example exists
      assert "no correctly classified" in card["text"]
      continue
    overlays = [i for i in card["images"] if i.get("class") == "overlay"]
    assert len(overlays) == 1, card
    assert f"true {name}" in card["text"]
    probability = float(card["text"].rsplit("=", 1)[1])
    assert probability >= 0.5  # it was classified as this class
    with Image.open(os.path.join(report_dir, overlays[0]["src"])) as image:
      pixels = np.asarray(image.convert("RGB"), dtype=int)
    # The X-rays are grey; the jet heat map makes the overlay coloured.
    assert np.abs(pixels[..., 0] - pixels[..., 2]).max() > 30


def test_a_task_that_never_ran_is_noted_not_fatal(built, capsys):
  assert any("multiclass task has not run" in n for n in built["page"].notes)
  with pytest.raises(ValueError, match="no pipeline run of multiclass"):
    report.build_report(built["out"], "multiclass")
  assert cli.main(["report", built["out"], "--task", "multiclass"]) == 1
  assert "no pipeline run" in capsys.readouterr().err


def test_an_output_folder_without_metadata_is_an_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="metadata.sqlite"):
    report.build_report(str(tmp_path))


def test_page_renders_in_headless_chromium(built, tmp_path):
  chromium = shutil.which("chromium")
  if chromium is None:
    pytest.fail("chromium is not installed: apt-get install chromium")
  png = tmp_path / "page.png"
  subprocess.run(
      [chromium, "--headless", "--no-sandbox", "--disable-gpu",
       "--disable-quic", "--no-first-run", "--disable-background-networking",
       "--disable-component-update", "--disable-sync",
       f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={png}",
       "--window-size=1280,2000", f"file://{built['index']}"],
      check=True, capture_output=True, timeout=180)
  with Image.open(png) as image:
    pixels = np.asarray(image.convert("RGB"))
  assert pixels.shape[:2] == (2000, 1280)
  ink = (pixels.min(axis=2) < 235).mean()
  colours = len(np.unique(pixels.reshape(-1, 3), axis=0))
  assert ink > MIN_INK_SHARE and colours > MIN_COLOURS, (ink, colours)
  # The style sheet applied: the page header is dark blue.
  r, g, b = pixels[20, 20].astype(int)
  assert b > r + 60 and b > g + 30, (r, g, b)


# Without a pipeline run: how the confusion matrix is found.


def test_binary_confusion_matrix_prefers_the_plot_at_0_5():
  plots = {"confusionMatrixAtThresholds": {"matrices": [
      {"threshold": 0.25, "truePositives": 9.0, "trueNegatives": 1.0},
      {"threshold": 0.5, "truePositives": 7.0, "falseNegatives": 2.0,
       "trueNegatives": 4.0, "falsePositives": 1.0}]}}
  counts, source = report.confusion_matrix("binary", {}, plots, {})
  assert counts.tolist() == [[4, 1], [2, 7]]  # rows: true normal, pneumonia
  assert "0.500" in source


def test_binary_confusion_matrix_from_metrics():
  metrics = {"true_negatives": 5.0, "false_positives": 1.0,
             "false_negatives": 2.0, "true_positives": 8.0}
  counts, _ = report.confusion_matrix("binary", metrics, {}, {})
  assert counts.tolist() == [[5, 1], [2, 8]]
  # Only recall, specificity and the per-label counts.
  counts, _ = report.confusion_matrix(
      "binary", {"recall": 0.75, "specificity": 0.5}, {}, {0: 10, 1: 20})
  assert counts.tolist() == [[5, 5], [5, 15]]
  counts, why = report.confusion_matrix("binary", {"recall": 0.75}, {}, {})
  assert counts is None and "no confusion matrix" in why


def test_multiclass_confusion_matrix_reads_proto_json():
  # Proto3 JSON leaves out zero fields: class 0 has no id key; predicted
  # -1 means "no prediction" and is not a class.
  plots = {"multiClassConfusionMatrixAtThresholds": {"matrices": [{
      "entries": [
          {"numWeightedExamples": 6.0},
          {"predictedClassId": 2, "numWeightedExamples": 1.0},
          {"actualClassId": 1, "predictedClassId": 1,
           "numWeightedExamples": 4.0},
          {"actualClassId": 2, "numWeightedExamples": 3.0},
          {"actualClassId": 2, "predictedClassId": -1,
           "numWeightedExamples": 5.0}]}]}}
  counts, _ = report.confusion_matrix("multiclass", {}, plots, {})
  assert counts.tolist() == [[6, 0, 1], [0, 4, 0], [3, 0, 0]]
  counts, why = report.confusion_matrix("multiclass", {}, {}, {})
  assert counts is None and "multiClassConfusionMatrixAtThresholds" in why


def test_multiclass_and_cross_data_tables_from_a_summary():
  # Per-class recall is the accuracy on the class's label slice; the cross
  # table appears once a model has cross-data metrics.
  overall = {"example_count": 30.0, "sparse_categorical_accuracy": 0.7,
             "loss": 0.8, "auc classId:2": 0.91,
             eval_config.RECALL_AT_THRESHOLD: 0.95,
             eval_config.SPECIFICITY_AT_THRESHOLD: 0.875}
  metrics = {"Overall": overall,
             "label:0": {"sparse_categorical_accuracy": 0.9},
             "label:1": {"sparse_categorical_accuracy": 0.6},
             "label:2": {"sparse_categorical_accuracy": 0.25}}
  result = summary.ModelResult(
      model="cnn", metrics=metrics, blessed=False,
      failed_thresholds=["sparse_categorical_accuracy on Overall is 0.7000; "
                         "threshold value_threshold { lower_bound { value: "
                         "0.75 } }"],
      pushed_model=None,
      cross_metrics={"Overall": dict(overall, sparse_categorical_accuracy=0.5)})
  run = summary.RunSummary(
      pipeline_name="cxr-multiclass", run_id="r", states={}, image_counts={},
      quarantine_csv=None, models={"cnn": result})
  table = [b for b in sections.results_table("multiclass", run)
           if isinstance(b, document.Table)][0]
  row = dict(zip(table.headers, (c.text for c in table.rows[0])))
  assert (row["recall normal"], row["recall bacterial"],
          row["recall viral"]) == ("0.9000", "0.6000", "0.2500")
  assert row["AUC viral"] == "0.9100" and "AUC normal" not in row
  # The served pneumonia decision, at the model's threshold.
  assert (row["pneumonia sensitivity"], row["pneumonia specificity"]) == (
      "0.9500", "0.8750")
  assert row["blessed"] == "no: accuracy"
  assert row["pushed version"] == "not pushed"
  cross = [b for b in sections.cross_table("multiclass", run)
           if isinstance(b, document.Table)][0]
  row = dict(zip(cross.headers, (c.text for c in cross.rows[0])))
  assert row["accuracy"] == "0.5000"
  assert row["change"] == "-0.2000"
  result.cross_metrics = {}
  assert not [b for b in sections.cross_table("multiclass", run)
              if isinstance(b, document.Table)]
