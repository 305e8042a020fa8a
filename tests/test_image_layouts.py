"""Kermany file names and layout detection."""

import pytest

from components import image_layouts


@pytest.mark.parametrize("name,patient", [
    ("person1000_bacteria_2931.jpeg", "person1000"),
    ("person1000_virus_1681.jpeg", "person1000"),
    ("IM-0115-0001.jpeg", "IM-0115"),
    ("NORMAL2-IM-0381-0001.jpeg", "NORMAL2-IM-0381"),
    ("some_scan.png", "some_scan"),
])
def test_patient_id(name, patient):
  assert image_layouts.patient_id(name) == patient


@pytest.mark.parametrize("name,diagnosis", [
    ("person1_bacteria_1.jpeg", "bacterial"),
    ("person1_virus_6.jpeg", "viral"),
    ("pneumonia_case.jpeg", "pneumonia"),
])
def test_diagnosis_from_file_name(name, diagnosis):
  assert image_layouts.diagnosis_from_file_name(name) == diagnosis


def test_labels_per_task():
  assert image_layouts.label_for_task("viral", "binary") == 1
  assert image_layouts.label_for_task("normal", "binary") == 0
  assert image_layouts.label_for_task("viral", "multiclass") == 2
  assert image_layouts.label_for_task("pneumonia", "multiclass") is None
  with pytest.raises(ValueError):
    image_layouts.label_for_task("normal", "ternary")


def test_3class_task_quarantines_pneumonia_of_unknown_kind(tmp_path):
  folder = tmp_path / "train" / "PNEUMONIA"
  folder.mkdir(parents=True)
  (folder / "person1_bacteria_1.jpeg").write_bytes(b"x")
  (folder / "scan7.jpeg").write_bytes(b"x")
  layout, records, quarantined, _ = image_layouts.list_images(
      str(tmp_path), "multiclass")
  assert layout == image_layouts.BINARY_LAYOUT
  assert [r.file_name for r in records] == ["person1_bacteria_1.jpeg"]
  assert len(quarantined) == 1 and "neither" in quarantined[0].reason
  # The binary task takes it: pneumonia, kind unknown.
  _, records, quarantined, _ = image_layouts.list_images(str(tmp_path),
                                                         "binary")
  assert len(records) == 2 and not quarantined


def test_missing_folder_and_csv_columns(tmp_path):
  with pytest.raises(FileNotFoundError, match="data folder not found"):
    image_layouts.list_images(str(tmp_path / "nope"), "binary")
  (tmp_path / "train_images").mkdir()
  (tmp_path / "labels_train.csv").write_text("name,label\na.jpeg,0\n")
  with pytest.raises(ValueError, match="file_name,class_id"):
    image_layouts.list_images(str(tmp_path), "multiclass")
