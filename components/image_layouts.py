"""Finds the images of a data set folder and what each one is labelled.

Two Kaggle layouts are read:

* binary: `{train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg`; bacterial vs viral
  comes from the Kermany file name (`personN_bacteria_M`, `personN_virus_M`);
* 3-class: `{train,test}_images/*.jpeg` + `labels_{train,test}.csv` with
  `file_name,class_id` (0 normal, 1 bacterial, 2 viral) and, optionally,
  `patient_id`.

Any file of a layout may be a JPEG, a PNG or a DICOM file (serving/dicom.py).
A run may ingest several data sets, each under its own source name; a
patient is a (source, patient id) pair, so the same id in two data sets is
two patients. A DICOM file's patient is its PatientID, hashed with the data
set's salt (`with_dicom_patient`).

The layout's folders are found by listing the data set's top level only
(`plan_folders`); what each file or CSV row is comes from the pure rules
here (`binary_file`, `labelled_file`, `for_task`...), applied either in this
process (`list_images`, plain Python: os.walk on local disks, TFX's `fileio`
on gs://) or on Beam workers by the ingestion component
(components/image_listing.py).
Anything that cannot be labelled is a quarantine entry with its reason, so
a caller can account for every file it was given. The eval split is carved
from train by patient, each data set on its own (`carve_sources`). What the
files hold is checked later, in parallel, by the ingestion component.
"""

import csv
import dataclasses
import hashlib
import io
import os
import re
import stat
from typing import (Dict, Iterable, Iterator, List, Mapping, Optional,
                    Sequence, Tuple, Union)

from tfx.dsl.io import fileio

from schema import contract
from schema.contract import BACTERIAL, NORMAL, PNEUMONIA, VIRAL
from schema.layout import is_local
from serving import dicom

# 3-class CSV class ids, as the Kaggle 3-class data set defines them.
CSV_CLASS_IDS = {0: NORMAL, 1: BACTERIAL, 2: VIRAL}
# The labels CSV's columns; patient_id is optional, and names the patient
# of its row when not empty.
CSV_COLUMNS = ("file_name", "class_id")
CSV_PATIENT_COLUMN = "patient_id"

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
  patient_id: str  # as its data set names it; the stem if nothing does
  source: str = ""  # the data set's name in this run
  # False when no rule named the patient: the image is its own patient.
  patient_known: bool = True

  @property
  def patient(self) -> Tuple[str, str]:
    """The patient across data sets: the same id in two is two patients."""
    return self.source, self.patient_id

  @property
  def patient_key(self) -> str:
    """The patient as the example's patient_id: `<source>/<id>`."""
    return f"{self.source}/{self.patient_id}" if self.source else (
        self.patient_id)


@dataclasses.dataclass(frozen=True)
class Quarantined:
  path: str
  reason: str


def find_patient_id(file_name: str, pattern: str = "") -> Optional[str]:
  """The patient a file name names, or None.

  Kermany's names first (`personN`, `IM-NNNN`, `NORMAL2-IM-NNNN`); then
  `pattern`, a run's --patient-id-pattern: its first group, or its whole
  match when it has no group, in re.search on the file name.
  """
  name = os.path.basename(file_name)
  stem = os.path.splitext(name)[0]
  for known in _PATIENT_PATTERNS:
    match = known.match(stem)
    if match:
      return match.group(1)
  match = re.search(pattern, name) if pattern else None
  if match:
    found = match.group(1) if match.re.groups else match.group(0)
    if found:
      return found
  return None


def patient_id(file_name: str, pattern: str = "") -> str:
  """find_patient_id, or the file stem when nothing names the patient.

  The stem makes each such image a patient of its own: a patient's other
  images may then land in other splits, which leaks; ingestion counts
  these images (schema.layout.SPLIT_BY_IMAGE_COUNT).
  """
  return (find_patient_id(file_name, pattern)
          or os.path.splitext(os.path.basename(file_name))[0])


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


# --- The folders of a layout: found by listing the data set's top level only.


@dataclasses.dataclass(frozen=True)
class SplitFolder:
  """Binary layout: `train/`, `val/` or `test/`; every file under it counts."""
  path: str
  entry: str  # its name in the data set folder, a key of BINARY_SPLIT_DIRS
  source: str = ""  # the data set's name in this run
  patient_pattern: str = ""  # the run's --patient-id-pattern
  patient_salt: str = ""  # salt of the hashed DICOM PatientIDs


@dataclasses.dataclass(frozen=True)
class ImageFolder:
  """3-class layout: `<split>_images/` and the CSV that labels its files."""
  path: str
  split: str  # the folder's own split name: train, test, val...
  csv_name: str
  csv_path: Optional[str]  # None when the data set has no such CSV
  source: str = ""
  patient_pattern: str = ""
  patient_salt: str = ""

  def label_path(self, name: str) -> str:
    """The file a CSV row's file_name names."""
    return os.path.join(self.path, name)


Folder = Union[SplitFolder, ImageFolder]
Listed = Union[ImageRecord, Quarantined]
# A labels CSV row: (line number, file_name, class_id, patient_id or None).
CsvRow = Tuple[int, str, Optional[str], Optional[str]]


def _record(folder: Folder, path: str, split: str, diagnosis: str,
            name: str, csv_patient: Optional[str] = None) -> ImageRecord:
  """A record whose patient is the CSV's, else what its file name says."""
  found = csv_patient or find_patient_id(name, folder.patient_pattern)
  return ImageRecord(path, split, diagnosis, os.path.basename(name),
                     found or patient_id(name), folder.source,
                     patient_known=found is not None)


def _check_csv_header(csv_path: str) -> None:
  with fileio.open(csv_path, "rb") as f:
    first = f.readline().decode("utf-8-sig")
  fieldnames = next(csv.reader([first]), None)
  if not fieldnames or not set(CSV_COLUMNS) <= set(fieldnames):
    raise ValueError(f"{csv_path} must have the columns file_name,class_id; "
                     f"found {fieldnames}")


def plan_folders(root: str, source: str = "", patient_pattern: str = "",
                 patient_salt: str = ""
                 ) -> Tuple[str, List[Folder], List[str]]:
  """(layout, folders whose files to list, ignored top entries) of a data set.

  Lists the data set's top level only (O(folders), not O(files)), and reads
  the header line of each labels CSV, so a malformed CSV fails here.
  source, patient_pattern and patient_salt (default_patient_salt when
  empty) go with every folder to the records of its files.
  """
  patient_salt = patient_salt or default_patient_salt(root)
  layout = detect_layout(root)
  entries = _listdir(root)
  folders: List[Folder] = []
  used = set()
  for entry in entries:
    path = os.path.join(root, entry)
    if layout == BINARY_LAYOUT:
      if entry in BINARY_SPLIT_DIRS and fileio.isdir(path):
        folders.append(SplitFolder(path, entry, source, patient_pattern,
                                   patient_salt))
        used.add(entry)
    elif entry.endswith("_images") and fileio.isdir(path):
      split = entry[:-len("_images")]
      csv_name = f"labels_{split}.csv"
      csv_path = os.path.join(root, csv_name) if csv_name in entries else None
      if csv_path:
        _check_csv_header(csv_path)
      folders.append(ImageFolder(path, split, csv_name, csv_path, source,
                                 patient_pattern, patient_salt))
      used.update((entry, csv_name))
  ignored = [os.path.join(root, e) for e in entries if e not in used]
  return layout, folders, ignored


# --- The per-file rules, used by the launcher-side listing below and by the
# worker-side listing (components/image_listing.py) alike.


def binary_file(folder: SplitFolder, file_path: str) -> Listed:
  """What a file found under a binary-layout split folder is."""
  rel = os.path.relpath(file_path, folder.path)
  class_dir = rel.split(os.sep)[0] if os.sep in rel else None
  name = os.path.basename(file_path)
  if class_dir not in BINARY_CLASS_DIRS:
    return Quarantined(file_path, f"not inside a class folder "
                       f"{BINARY_CLASS_DIRS} of {folder.entry}/")
  diagnosis = (NORMAL if class_dir == "NORMAL"
               else diagnosis_from_file_name(name))
  return _record(folder, file_path, BINARY_SPLIT_DIRS[folder.entry],
                 diagnosis, name)


def unlabelled_file(folder: ImageFolder, file_path: str) -> Quarantined:
  """A file of a 3-class image folder that has no labels CSV at all."""
  return Quarantined(file_path, f"no {folder.csv_name} to label it")


def empty_csv_row(folder: ImageFolder, line_no: int) -> Quarantined:
  return Quarantined(f"{folder.csv_path}:{line_no}",
                     f"{folder.csv_name} line {line_no}: empty file_name")


def csv_rows(folder: ImageFolder, text: Iterable[str]) -> Iterator[CsvRow]:
  """(line number, file_name, class_id, patient_id) of a labels CSV's rows;
  patient_id is None without the column or when empty."""
  rows = csv.DictReader(text)
  if not rows.fieldnames or not set(CSV_COLUMNS) <= set(rows.fieldnames):
    raise ValueError(f"{folder.csv_path} must have the columns "
                     f"file_name,class_id; found {rows.fieldnames}")
  for line_no, row in enumerate(rows, start=2):
    patient = (row.get(CSV_PATIENT_COLUMN) or "").strip() or None
    yield (line_no, (row["file_name"] or "").strip(), row["class_id"],
           patient)


def labelled_file(folder: ImageFolder, path: str, exists: bool,
                  rows: List[CsvRow]) -> List[Listed]:
  """What one path of a 3-class image folder is, given the CSV rows naming it.

  rows: csv_rows's rows whose file_name names `path`. The first row labels the file; later rows are duplicates;
  rows naming a file that is not there are quarantined each.
  """
  if not rows:
    return ([Quarantined(path, f"not listed in {folder.csv_name}")]
            if exists else [])
  rows = sorted(rows)
  if not exists:
    return [Quarantined(path, f"{folder.csv_name} line {line_no} names a "
                        "file that does not exist")
            for line_no, _, _, _ in rows]
  (line_no, name, class_id, patient), *again = rows
  out: List[Listed] = [
      Quarantined(f"{folder.csv_path}:{n}", f"{folder.csv_name} line {n}: "
                  f"{dup} is labelled twice; the first label is kept")
      for n, dup, _, _ in again]
  try:
    diagnosis = CSV_CLASS_IDS[int((class_id or "").strip())]
  except (KeyError, ValueError):
    out.append(Quarantined(
        path, f"{folder.csv_name} line {line_no}: unknown class_id "
        f"{class_id!r} (expected one of {sorted(CSV_CLASS_IDS)})"))
    return out
  # The data set may be split as train/test, or val for validation.
  own_split = contract.TEST if folder.split == "test" else contract.TRAIN
  out.append(_record(folder, path, own_split, diagnosis, name, patient))
  return out


def printable(text: str) -> str:
  """A path (or a reason naming one) writable as UTF-8: the bytes of a file
  name that is not UTF-8, which Python holds as surrogate escapes, are
  written as \\xNN."""
  return text.encode("utf-8", "surrogateescape").decode("utf-8",
                                                        "backslashreplace")


NOT_UTF8 = "file name is not valid UTF-8; rename the file to ingest it"


def not_utf8(path: str) -> bool:
  """Whether a listed path holds bytes that are not UTF-8 (surrogate
  escapes): neither TFX's file system layer, nor Beam's str coder, nor a
  tf.Example's file_name can take it, and it aborted the whole run."""
  return printable(path) != path


def for_task(listed: Listed, task: str) -> Listed:
  """A record whose diagnosis the task cannot use, or whose file name is
  not UTF-8, becomes a quarantine."""
  if isinstance(listed, ImageRecord) and not_utf8(listed.path):
    return Quarantined(listed.path, NOT_UTF8)
  if (isinstance(listed, ImageRecord)
      and label_for_task(listed.diagnosis, task) is None):
    return Quarantined(
        listed.path, "the 3-class task needs bacterial or viral, and the "
        "file name says neither (expected personN_bacteria_M or "
        "personN_virus_M)")
  return listed


def is_special_file(path: str) -> bool:
  """Whether a local path is not a regular file (a FIFO, socket or device):
  reading a FIFO blocks until someone writes to it, which hung a whole run.
  Object stores (gs://) hold regular files only."""
  return is_local(path) and not stat.S_ISREG(os.stat(path).st_mode)


def for_run(listed: Listed, task: str, salt: str) -> Listed:
  """A listed input as the run takes it, wherever it is listed: the task's
  rule (for_task), then a DICOM file's patient (with_dicom_patient)."""
  listed = for_task(listed, task)
  if isinstance(listed, ImageRecord):
    listed = with_dicom_patient(listed, salt)
  return listed


def default_patient_salt(root: str) -> str:
  """The salt of a data set's hashed PatientIDs when the run names none:
  its folder, so that two data sets never share hashes. Anyone who knows
  the folder can test a guessed PatientID against a hash; a secret
  --patient-salt prevents that."""
  return root.rstrip("/")


def with_dicom_patient(record: ImageRecord, salt: str) -> ImageRecord:
  """A DICOM file's record, its patient named by its salted PatientID hash.

  A DICOM file's PatientID is the hospital's own name for the patient, so
  it wins over the CSV's and the file name's. Only files whose name allows
  DICOM (serving.dicom.is_candidate) are opened, and only the header is
  read. A file that cannot be read here keeps its record: reading it again
  later quarantines it with the reason.
  """
  if not dicom.is_candidate(record.path):
    return record
  try:
    if is_special_file(record.path):
      return record  # a FIFO would block this reader
    with fileio.open(record.path, "rb") as f:
      if not dicom.is_dicom(f.read(dicom.HEADER_BYTES)):
        return record
      f.seek(0)
      hashed = dicom.hashed_patient_id(f, salt)
  except Exception:  # pylint: disable=broad-except
    return record
  if hashed is None:
    return record
  return dataclasses.replace(record, patient_id=hashed, patient_known=True)


# --- Symbolic links, and the launcher-side listing: every file, here.

SYMLINK_REASON = ("symbolic link to {target}: not followed, so that no image "
                  "is read from outside its folder or twice")


def local_entries(folder: Folder) -> Iterator[str]:
  """Every path below a local layout folder, links not followed.

  A followed link could bring in images from outside the data set, or a
  test image into training, or one image many times (`up -> ..`); so links
  are listed as entries, never walked through. A binary split folder's
  class folders may be links themselves (kept on another disk): only what
  lies below them counts. Paths come from os.walk on str, so a name that is
  not UTF-8 arrives as surrogate escapes instead of failing the walk.
  """
  roots, loose = [folder.path], []
  if isinstance(folder, SplitFolder):
    entries = [os.path.join(folder.path, e)
               for e in sorted(os.listdir(folder.path))]
    roots = [e for e in entries if os.path.isdir(e)]
    loose = [e for e in entries if not os.path.isdir(e)]
  yield from loose
  for root in roots:
    for dirpath, dirs, files in os.walk(root, followlinks=False):
      for name in sorted(dirs + files):
        yield os.path.join(dirpath, name)


def symlink_quarantine(path: str) -> Quarantined:
  """The quarantine entry of a link found by local_entries."""
  return Quarantined(path, SYMLINK_REASON.format(target=os.readlink(path)))


def _walk_files(folder: Folder) -> Tuple[List[str], List[Listed]]:
  """(files, quarantined links) below a folder, local or on an object store
  (which has no links; TFX's fileio walks it)."""
  if not is_local(folder.path):
    return sorted(os.path.join(dirpath, n)
                  for dirpath, _, names in fileio.walk(folder.path)
                  for n in names), []
  files, links = [], []
  for path in local_entries(folder):
    if os.path.islink(path):
      links.append(symlink_quarantine(path))
    elif not os.path.isdir(path):
      files.append(path)
  return sorted(files), links


def _list_folder(folder: Folder) -> List[Listed]:
  files, links = _walk_files(folder)
  if isinstance(folder, SplitFolder):
    return links + [binary_file(folder, p) for p in files]
  if folder.csv_path is None:
    return links + [unlabelled_file(folder, p) for p in files]
  out: List[Listed] = list(links)
  naming: Dict[str, List[CsvRow]] = {}
  for row in csv_rows(folder, io.StringIO(_read_text(folder.csv_path))):
    if not row[1]:
      out.append(empty_csv_row(folder, row[0]))
    else:
      naming.setdefault(folder.label_path(row[1]), []).append(row)
  # No CSV (read as UTF-8) can name a file whose name is not UTF-8.
  out.extend(Quarantined(p, NOT_UTF8) for p in files if not_utf8(p))
  existing = {p for p in files if not not_utf8(p)}
  for path in sorted(existing | set(naming)):
    out.extend(labelled_file(folder, path, path in existing,
                             naming.get(path, [])))
  return out


def list_images(root: str, task: str, source: str = "",
                patient_pattern: str = ""
                ) -> Tuple[str, List[ImageRecord], List[Quarantined],
                           List[str]]:
  """Lists a data set: (layout, records, quarantined, ignored top entries).

  Every file is listed here, in this process; the ingestion component lists
  on its Beam workers instead (components/image_listing.py), with the same
  rules. Records whose diagnosis the task cannot use (a binary-layout
  pneumonia file without bacteria/virus in its name, for the 3-class task)
  are quarantined with the reason.
  """
  contract.check_task(task)
  layout, folders, ignored = plan_folders(root, source, patient_pattern)
  records, quarantined = [], []
  for folder in folders:
    for listed in _list_folder(folder):
      listed = for_run(listed, task, folder.patient_salt)
      (records if isinstance(listed, ImageRecord) else quarantined).append(
          listed)
  return layout, records, quarantined, ignored


# --- The eval (and, without a test folder, test) split: carved by patient.


def _bucket(patient: str, salt: str) -> float:
  """Stable position of a patient in [0, 100)."""
  digest = hashlib.sha256(f"{salt}:{patient}".encode()).hexdigest()
  return int(digest[:12], 16) / 16**12 * 100


def carve_patients(train_patients: Iterable[str], eval_percent: int,
                   carve_test_percent: int, salt: str) -> Dict[str, str]:
  """{patient: eval or test} for the train patients carved out of train.

  By a stable hash of the patient id. A small data set whose hash leaves a
  carved split empty gets the nearest patient moved there, so every split
  has data while two patients remain. Patients not in the answer stay train.
  """
  patients = sorted(set(train_patients), key=lambda p: (_bucket(p, salt), p))
  ranges = {contract.EVAL: (0, eval_percent),
            contract.TEST: (eval_percent, eval_percent + carve_test_percent)}
  chosen = {}
  for split, (low, high) in ranges.items():
    if high == low:
      continue
    members = [p for p in patients if low <= _bucket(p, salt) < high]
    rest = [p for p in patients if p not in chosen]
    if not members and len(rest) > 2:
      members = [min(rest, key=lambda p, low=low: (abs(_bucket(p, salt) - low),
                                                   p))]
    chosen.update({p: split for p in members})
  return chosen


# A data set's train patients and whether it has a test folder: its pool.
Pool = Tuple[Sequence[str], bool]


def pools(records: Iterable[ImageRecord]) -> Dict[str, Pool]:
  """{source: (sorted train patient ids, whether any record is test)}."""
  patients: Dict[str, set] = {}
  has_test: Dict[str, bool] = {}
  for r in records:
    patients.setdefault(r.source, set())
    has_test[r.source] = has_test.get(r.source, False) or (
        r.split == contract.TEST)
    if r.split == contract.TRAIN:
      patients[r.source].add(r.patient_id)
  return {s: (sorted(patients[s]), has_test[s]) for s in patients}


def carve_sources(by_source: Mapping[str, Pool], eval_percent: int,
                  salt: str) -> Dict[Tuple[str, str], str]:
  """{(source, patient): eval or test} for every data set of a run.

  Each data set is carved on its own, as carve_patients carves one: eval
  from its train patients, and test too when it has no test folder of its
  own. The hash is of the patient id within its data set, so a data set
  splits the same alone or with others, and whatever its folder is called.
  """
  chosen = {}
  for source, (patients, has_test) in sorted(by_source.items()):
    carved = carve_patients(patients, eval_percent,
                            0 if has_test else eval_percent, salt)
    chosen.update({(source, p): split for p, split in carved.items()})
  return chosen


def split_of(record: ImageRecord, carved: Mapping[Tuple[str, str], str]
             ) -> str:
  """The output split of a record, given carve_sources's answer."""
  return (contract.TEST if record.split == contract.TEST
          else carved.get(record.patient, contract.TRAIN))


def carve_splits(records: Sequence[ImageRecord], eval_percent: int,
                 salt: str) -> List[tuple]:
  """(record, output split) pairs; whole patients move together.

  Test records keep their split; train patients are carved as
  carve_sources says, a data set without test records getting its test
  split carved too.
  """
  carved = carve_sources(pools(records), eval_percent, salt)
  return [(r, split_of(r, carved)) for r in records]
