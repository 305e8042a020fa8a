"""Finds the images of a data set folder and what each one is labelled.

Two Kaggle layouts are read:

* binary: `{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg`; bacterial vs viral
  comes from the Kermany file name (`personN_bacteria_M`, `personN_virus_M`);
* 3-class: `{train,test}_images/*.jpeg` + `labels_{train,test}.csv` with
  `file_name,class_id` (0 normal, 1 bacterial, 2 viral).

Listing is plain Python over TFX's `fileio` (local or gs://); what the files
hold is checked later, in parallel, by the ingestion component. Anything that
cannot be labelled here is returned as a quarantine entry with its reason, so
a caller can account for every file it was given.
"""

import csv
import dataclasses
import io
import os
import re
from typing import Callable, List, Optional, Tuple

from tfx.dsl.io import fileio

from schema import contract
from schema.contract import BACTERIAL, NORMAL, PNEUMONIA, VIRAL

# 3-class CSV class ids, as the Kaggle 3-class data set defines them.
CSV_CLASS_IDS = {0: NORMAL, 1: BACTERIAL, 2: VIRAL}

BINARY_LAYOUT, MULTICLASS_LAYOUT = "binary-folders", "3-class-csv"
# Kaggle's binary data set ships a tiny `val/` whose patients also appear in
# `train/`; it joins the train pool and is split by patient with it.
BINARY_SPLIT_DIRS = {"train": contract.TRAIN, "val": contract.TRAIN,
                     "test": contract.TEST}
BINARY_CLASS_DIRS = ("NORMAL", "PNEUMONIA")

_PATIENT_PATTERNS = (
    re.compile(r"^(person\d+)_", re.IGNORECASE),
    re.compile(r"^((?:NORMAL\d*-)?IM-\d+)-\d+", re.IGNORECASE),
)


@dataclasses.dataclass(frozen=True)
class ImageRecord:
  """One file to ingest, with everything known before reading it."""
  path: str
  split: str  # the data set's own split: train or test
  diagnosis: str  # normal, bacterial, viral or pneumonia (kind unknown)
  file_name: str
  patient_id: str


@dataclasses.dataclass(frozen=True)
class Quarantined:
  path: str
  reason: str


def patient_id(file_name: str) -> str:
  """Kermany patient id: `personN`, `IM-NNNN` or `NORMAL2-IM-NNNN`.

  Unknown names fall back to the file stem: one patient per image, which can
  only make the patient split finer, never leak.
  """
  stem = os.path.splitext(os.path.basename(file_name))[0]
  for pattern in _PATIENT_PATTERNS:
    match = pattern.match(stem)
    if match:
      return match.group(1)
  return stem


def diagnosis_from_file_name(file_name: str) -> str:
  """bacterial/viral from a Kermany pneumonia file name, else `pneumonia`."""
  name = os.path.basename(file_name).lower()
  if "_bacteria_" in name:
    return BACTERIAL
  if "_virus_" in name:
    return VIRAL
  return PNEUMONIA


def label_for_task(diagnosis: str, task: str) -> Optional[int]:
  """Class index of a diagnosis for a task; None if the task cannot use it."""
  names = contract.CLASS_NAMES[contract.check_task(task)]
  if task == contract.BINARY:
    # Every pneumonia, of whatever kind, is the binary task's pneumonia.
    return names.index(NORMAL if diagnosis == NORMAL else PNEUMONIA)
  return names.index(diagnosis) if diagnosis in names else None


def _listdir(path: str) -> List[str]:
  # GCS marks subfolders with a trailing '/'.
  return sorted(p.rstrip("/") for p in fileio.listdir(path))


def _read_text(path: str) -> str:
  with fileio.open(path, "rb") as f:
    return f.read().decode("utf-8-sig")


def _walk_files(top: str) -> List[str]:
  files = []
  for dirpath, _, names in fileio.walk(top):
    files.extend(os.path.join(dirpath, n) for n in names)
  return sorted(files)


def detect_layout(root: str) -> str:
  """BINARY_LAYOUT or MULTICLASS_LAYOUT; an error that says what was found."""
  if not fileio.isdir(root):
    raise FileNotFoundError(f"data folder not found: {root}")
  entries = set(_listdir(root))
  if any(d in entries for d in BINARY_SPLIT_DIRS) and any(
      fileio.isdir(os.path.join(root, d)) for d in BINARY_SPLIT_DIRS
      if d in entries):
    return BINARY_LAYOUT
  if any(e.endswith("_images") for e in entries) and any(
      e.startswith("labels_") and e.endswith(".csv") for e in entries):
    return MULTICLASS_LAYOUT
  raise ValueError(
      f"no known data set layout in {root}: expected either "
      "train/ and test/ folders with NORMAL/ and PNEUMONIA/ inside (Kaggle "
      "binary layout), or train_images/ + labels_train.csv (Kaggle 3-class "
      f"layout); found: {sorted(entries) or 'an empty folder'}")


def _list_binary(
    root: str) -> Tuple[List[ImageRecord], List[Quarantined], List[str]]:
  records, quarantined, ignored = [], [], []
  for entry in _listdir(root):
    path = os.path.join(root, entry)
    if entry not in BINARY_SPLIT_DIRS or not fileio.isdir(path):
      ignored.append(path)
      continue
    split = BINARY_SPLIT_DIRS[entry]
    for file_path in _walk_files(path):
      rel = os.path.relpath(file_path, path)
      class_dir = rel.split(os.sep)[0] if os.sep in rel else None
      name = os.path.basename(file_path)
      if class_dir not in BINARY_CLASS_DIRS:
        quarantined.append(Quarantined(
            file_path, f"not inside a class folder {BINARY_CLASS_DIRS} of "
            f"{entry}/"))
        continue
      diagnosis = (NORMAL if class_dir == "NORMAL"
                   else diagnosis_from_file_name(name))
      records.append(ImageRecord(file_path, split, diagnosis, name,
                                 patient_id(name)))
  return records, quarantined, ignored


def _list_multiclass(
    root: str) -> Tuple[List[ImageRecord], List[Quarantined], List[str]]:
  records, quarantined, ignored = [], [], []
  entries = _listdir(root)
  used = set()
  for entry in entries:
    image_dir = os.path.join(root, entry)
    if not (entry.endswith("_images") and fileio.isdir(image_dir)):
      continue
    split = entry[:-len("_images")]
    csv_name = f"labels_{split}.csv"
    used.update((entry, csv_name))
    files = set(_walk_files(image_dir))
    if csv_name not in entries:
      quarantined.extend(Quarantined(p, f"no {csv_name} to label it")
                         for p in sorted(files))
      continue
    labelled = set()
    csv_path = os.path.join(root, csv_name)
    rows = csv.DictReader(io.StringIO(_read_text(csv_path)))
    if not rows.fieldnames or not {"file_name", "class_id"} <= set(
        rows.fieldnames):
      raise ValueError(f"{csv_path} must have the columns file_name,class_id; "
                       f"found {rows.fieldnames}")
    for line_no, row in enumerate(rows, start=2):
      name = (row["file_name"] or "").strip()
      where = f"{csv_name} line {line_no}"
      path = os.path.join(image_dir, name)
      if not name:
        quarantined.append(Quarantined(f"{csv_path}:{line_no}",
                                       f"{where}: empty file_name"))
        continue
      if path in labelled:
        quarantined.append(Quarantined(
            f"{csv_path}:{line_no}", f"{where}: {name} is labelled twice; "
            "the first label is kept"))
        continue
      if path not in files:
        quarantined.append(Quarantined(
            path, f"{where} names a file that does not exist"))
        continue
      labelled.add(path)
      try:
        diagnosis = CSV_CLASS_IDS[int((row["class_id"] or "").strip())]
      except (KeyError, ValueError):
        quarantined.append(Quarantined(
            path, f"{where}: unknown class_id {row['class_id']!r} "
            f"(expected one of {sorted(CSV_CLASS_IDS)})"))
        continue
      # The data set may be split as train/test, or val for validation.
      own_split = contract.TEST if split == "test" else contract.TRAIN
      records.append(ImageRecord(path, own_split, diagnosis,
                                 os.path.basename(name), patient_id(name)))
    quarantined.extend(Quarantined(p, f"not listed in {csv_name}")
                       for p in sorted(files - labelled))
  ignored = [os.path.join(root, e) for e in entries if e not in used]
  return records, quarantined, ignored


def list_images(root: str, task: str
                ) -> Tuple[str, List[ImageRecord], List[Quarantined],
                           List[str]]:
  """Lists a data set: (layout, records, quarantined, ignored top entries).

  Records whose diagnosis the task cannot use (a binary-layout pneumonia
  file without bacteria/virus in its name, for the 3-class task) are
  quarantined with the reason.
  """
  contract.check_task(task)
  layout = detect_layout(root)
  lister: Callable = (_list_binary if layout == BINARY_LAYOUT
                      else _list_multiclass)
  records, quarantined, ignored = lister(root)
  usable = []
  for record in records:
    if label_for_task(record.diagnosis, task) is None:
      quarantined.append(Quarantined(
          record.path, "the 3-class task needs bacterial or viral, and the "
          "file name says neither (expected personN_bacteria_M or "
          "personN_virus_M)"))
    else:
      usable.append(record)
  return layout, usable, quarantined, ignored
