"""Several data sets in one run: each its own source, patients kept apart by
source, splits patient-disjoint; patient ids from a CSV column or a
--patient-id-pattern, and a count of the images split by image."""

import collections
import csv
import glob
import os

import pytest
from tfx import v1 as tfx

from components import image_example_gen
from components import image_layouts
from cxr import cli
from pipeline import pipeline as pipeline_lib
from pipeline import summary
from pipeline import synthetic
from schema import contract
from schema import layout
from schema import settings
from tests.test_image_example_gen import _jpeg, all_examples, run_executor


def _by_split(examples):
  """{split: [example]} with each example's source and patient decoded."""
  out = {}
  for split, found in all_examples(examples).items():
    out[split] = [dict(e, source=e["source"].decode(),
                       patient_id=e["patient_id"].decode(),
                       file_name=e["file_name"].decode()) for e in found]
  return out


def _assert_patient_disjoint(by_split):
  splits_of = collections.defaultdict(set)
  for split, found in by_split.items():
    for e in found:
      splits_of[e["patient_id"]].add(split)
  assert {p: s for p, s in splits_of.items() if len(s) > 1} == {}


def _files(root, pattern):
  return {os.path.basename(p) for p in glob.glob(os.path.join(root, pattern))}


def test_same_patient_ids_in_two_data_sets_are_two_patients(tmp_path):
  # Two data sets with one folder name and the same Kermany file names
  # (synthetic numbers patients from 1): `a` has a test folder, `b` none.
  a, b = str(tmp_path / "a" / "xray"), str(tmp_path / "b" / "xray")
  synthetic.generate(a, n=40, size=48, seed=1, test_fraction=0.3)
  synthetic.generate(b, n=40, size=48, seed=2, test_fraction=0.0)
  assert not os.path.exists(os.path.join(b, "test"))
  examples, counts, quarantined = run_executor(f"{a},{b}",
                                               str(tmp_path / "out"), "binary")
  assert quarantined == [] and counts["ingested"] == 80
  by_split = _by_split(examples)
  sources = {p: e["source"] for s in by_split.values() for e in s
             for p in [e["patient_id"]]}
  assert set(sources.values()) == {"xray", "xray-2"}
  for found in by_split.values():
    for e in found:
      raw = image_layouts.patient_id(e["file_name"])
      assert e["patient_id"] == f"{e['source']}/{raw}"

  # The data: a raw id in a's test folder is in b's train pool, so a split
  # keyed on raw ids would put one "patient" on both sides.
  raw_splits = collections.defaultdict(set)
  for split, found in by_split.items():
    for e in found:
      raw_splits[e["patient_id"].split("/", 1)[1]].add(split)
  assert any(len(s) > 1 for s in raw_splits.values())
  _assert_patient_disjoint(by_split)

  # a's own test folder is its test split, all of it and only it; b, which
  # has none, gets a test split carved from its train folder.
  test_of = collections.defaultdict(set)
  for e in by_split["test"]:
    test_of[e["source"]].add(e["file_name"])
  assert test_of["xray"] == _files(a, "test/*/*")
  assert test_of["xray-2"] and test_of["xray-2"] <= _files(b, "train/*/*")
  assert counts[layout.SPLIT_BY_IMAGE_COUNT] == 0
  per_source = examples.get_string_custom_property(layout.SOURCES_PROPERTY)
  assert '"test_carved": true' in per_source  # b's


def test_real_data_sets_together_for_the_binary_task(
    real_binary_subset, real_multiclass_subset, tmp_path):
  examples, counts, quarantined = run_executor(
      f"{real_binary_subset},{real_multiclass_subset}", str(tmp_path),
      "binary")
  binary_files = _files(real_binary_subset, "*/*/*.jpeg")
  with open(os.path.join(real_multiclass_subset, "labels_train.csv")) as f:
    train_rows = {r["file_name"]: int(r["class_id"])
                  for r in csv.DictReader(f)}
  with open(os.path.join(real_multiclass_subset, "labels_test.csv")) as f:
    test_rows = {r["file_name"]: int(r["class_id"])
                 for r in csv.DictReader(f)}
  assert quarantined == []
  assert counts["ingested"] == (len(binary_files) + len(train_rows)
                                + len(test_rows))
  by_split = _by_split(examples)
  binary_source = os.path.basename(real_binary_subset)
  multiclass_source = os.path.basename(real_multiclass_subset)
  test = {(e["source"], e["file_name"]) for e in by_split["test"]}
  assert test == ({(binary_source, n) for n in _files(
      real_binary_subset, "test/*/*.jpeg")}
                  | {(multiclass_source, n) for n in test_rows})
  # 3-class ids 1 and 2 are the binary task's pneumonia.
  for found in by_split.values():
    for e in found:
      if e["source"] == multiclass_source:
        class_id = {**train_rows, **test_rows}[e["file_name"]]
        assert e["label"] == int(class_id > 0), e["file_name"]
  _assert_patient_disjoint(by_split)
  assert counts[layout.SPLIT_BY_IMAGE_COUNT] == 0


def _write_3class(root, train_rows, test_rows, with_patient_column=True):
  """A 3-class data set of small JPEGs; rows: (file_name, class_id,
  patient_id)."""
  for split, rows, column in (("train", train_rows, with_patient_column),
                              ("test", test_rows, False)):
    os.makedirs(os.path.join(root, f"{split}_images"))
    for name, _, _ in rows:
      with open(os.path.join(root, f"{split}_images", name), "wb") as f:
        f.write(_jpeg())
    with open(os.path.join(root, f"labels_{split}.csv"), "w",
              newline="") as f:
      writer = csv.writer(f)
      writer.writerow(["file_name", "class_id"]
                      + (["patient_id"] if column else []))
      for name, class_id, patient in rows:
        writer.writerow([name, class_id] + ([patient] if column else []))


def test_the_csv_patient_id_column_names_patients(tmp_path):
  root = str(tmp_path / "hospital")
  # 12 patients of 3 images each, under names that say nothing of them,
  # and two rows with an empty patient_id: each its own patient.
  train = [(f"scan{i * 3 + k:03d}.jpeg", i % 3, f"P{i}")
           for i in range(12) for k in range(3)]
  train += [("lone1.jpeg", 0, ""), ("lone2.jpeg", 1, " ")]
  _write_3class(root, train, [(f"t{i}.jpeg", i % 3, "") for i in range(3)])
  examples, counts, quarantined = run_executor(root, str(tmp_path / "o"),
                                               "multiclass")
  assert quarantined == [] and counts["ingested"] == len(train) + 3
  by_split = _by_split(examples)
  _assert_patient_disjoint(by_split)
  patients = collections.Counter(
      e["patient_id"] for s in (contract.TRAIN, contract.EVAL)
      for e in by_split[s])
  assert patients == {**{f"hospital/P{i}": 3 for i in range(12)},
                      "hospital/lone1": 1, "hospital/lone2": 1}
  assert by_split[contract.EVAL]
  # The two rows without a patient are the images split by image.
  assert counts[layout.SPLIT_BY_IMAGE_COUNT] == 2


def _write_binary(root, names_by_split):
  for split, names in names_by_split.items():
    for name in names:
      path = os.path.join(root, split, "NORMAL", name)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path, "wb") as f:
        f.write(_jpeg())


def test_the_patient_id_pattern_names_patients(tmp_path):
  root = str(tmp_path / "clinic")
  train = [f"H{i:03d}_scan_{k}.jpeg" for i in range(12) for k in range(3)]
  _write_binary(root, {"train": train, "test": ["H900_scan_1.jpeg"]})

  # Without a pattern nothing names these patients: every train image is a
  # patient of its own, and the count says so.
  _, counts, _ = run_executor(root, str(tmp_path / "plain"), "binary")
  assert counts[layout.SPLIT_BY_IMAGE_COUNT] == len(train)

  examples, counts, _ = run_executor(root, str(tmp_path / "pattern"),
                                     "binary",
                                     patient_id_pattern=r"^(H\d+)_")
  assert counts[layout.SPLIT_BY_IMAGE_COUNT] == 0
  by_split = _by_split(examples)
  _assert_patient_disjoint(by_split)
  patients = collections.Counter(
      e["patient_id"] for s in by_split.values() for e in s)
  assert patients == {**{f"clinic/H{i:03d}": 3 for i in range(12)},
                      "clinic/H900": 1}


@pytest.mark.parametrize("name, pattern, expected", [
    ("H007_scan_2.png", r"^(H\d+)_", "H007"),  # the first group
    ("scan_H007.png", r"H\d+", "H007"),  # the whole match, by re.search
    ("scan.png", r"H\d+", None),
    ("scan.png", r"x*", None),  # an empty match names no one
    ("person12_virus_3.jpeg", r"^(\w)", "person12"),  # Kermany's first
])
def test_find_patient_id(name, pattern, expected):
  assert image_layouts.find_patient_id(name, pattern) == expected


def test_an_invalid_pattern_is_refused_at_the_command_line(capsys):
  for command in (["run", "--task", "binary", "--output", "o"],
                  ["compile", "--task", "binary", "--output", "o.json",
                   "--pipeline-root", "gs://b/r", "--image", "i"]):
    with pytest.raises(SystemExit) as raised:
      cli.main(command + ["--data", "d", "--patient-id-pattern", "(H\\d+"])
    assert raised.value.code == 2
    assert "not a valid regular expression" in capsys.readouterr().err
  with pytest.raises(ValueError, match="patient_id_pattern"):
    settings.RunSettings(patient_id_pattern="[")


def test_cxr_run_takes_several_data_sets(tmp_path, monkeypatch, capsys):
  from pipeline import runner  # pylint: disable=g-import-not-at-top
  seen = []
  monkeypatch.setattr(runner, "run",
                      lambda data, *args, **kwargs: seen.append(data))
  monkeypatch.setattr("cxr.commands.summary.print_summary",
                      lambda output, task: True)
  assert cli.main(["run", "--data", "a", "--data", "b,c", "--task",
                   "binary", "--output", str(tmp_path)]) == 0
  assert layout.data_folders(seen[0]) == ["a", "b", "c"]


@pytest.mark.parametrize("data, message", [
    (["{d}", "{d}/"], "given twice"),
    (["{d},,{d}2"], "empty data folder"),
    (["{d}", "{d}/train"], "overlap"),
])
def test_cxr_run_refuses_a_bad_data_list(tmp_path, capsys, data, message):
  d = str(tmp_path / "x")
  synthetic.generate(d, n=4, size=48, seed=0)
  args = [a for item in data for a in ("--data", item.format(d=d))]
  assert cli.main(["run", *args, "--task", "binary", "--output",
                   str(tmp_path / "out")]) == 1
  assert message in capsys.readouterr().err


def test_same_named_folders_get_distinct_sources_and_a_note():
  sources, notes = layout.source_names(["/a/xray", "/b/xray", "/c/xray-2"])
  assert sources == ["xray", "xray-3", "xray-2"]
  assert notes == ["data folders /a/xray and /b/xray share the name xray: "
                   "/b/xray is source xray-3"]
  assert layout.source_names(["/a/x", "/b/y"]) == (["x", "y"], [])


def test_the_pipeline_has_one_ingestion_node_for_any_number_of_data_sets():
  def build(data):
    return pipeline_lib.create_pipeline("p", "/root", data, "binary",
                                        "/serving")
  one, three = build("/d/a"), build(["/d/a", "/d/b", "/e/a"])
  assert [c.id for c in one.components] == [c.id for c in three.components]
  example_gen = next(c for c in three.components
                     if c.id == layout.EXAMPLE_GEN)
  assert example_gen.exec_properties["input_base"] == "/d/a,/d/b,/e/a"


def test_the_summary_counts_images_split_by_image(tmp_path):
  """Through ML Metadata, as `cxr run` prints it: the count and each data
  set's splits."""
  kermany, other = str(tmp_path / "kermany"), str(tmp_path / "other")
  synthetic.generate(kermany, n=30, size=48, seed=4)
  unnamed = [f"scan{i:02d}.jpeg" for i in range(7)]
  _write_binary(other, {"train": unnamed, "test": ["t.jpeg"]})
  metadata = str(tmp_path / "metadata.sqlite")
  tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
      pipeline_name="summary-test", pipeline_root=str(tmp_path / "root"),
      components=[image_example_gen.ImageExampleGen(
          input_base=[kermany, other], task="binary", eval_percent=20,
      ).with_id(layout.EXAMPLE_GEN)],
      metadata_connection_config=(
          tfx.orchestration.metadata.sqlite_metadata_connection_config(
              metadata))))
  result = summary.summarize(metadata, "summary-test")
  text = "\n".join(result.lines())
  assert (f"{len(unnamed)} images had no patient id and were split by "
          "image: a leakage risk") in text
  assert set(result.sources) == {"kermany", "other"}
  assert "  data set other (" in text
  assert sum(s["test"] for s in result.sources.values()) == (
      result.image_counts["test"])
  # Without such images there is no such line.
  result.image_counts[layout.SPLIT_BY_IMAGE_COUNT] = 0
  assert "split by image" not in "\n".join(result.lines())
