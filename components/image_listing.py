"""Lists a data set on the Beam workers, not on the launcher.

The launcher finds the layout's folders by listing the data set's top level
(image_layouts.plan_folders: a handful of folders and CSV names), so the
submitted Beam graph holds folder patterns, never file paths, and stays the
same size for ten files or a million (Dataflow caps a job graph at tens of
MB). On the workers:

* the files are matched with Beam's `fileio.MatchAll` on `<folder>/**`,
  one pattern per class folder of a binary split folder or per 3-class
  image folder (Beam's glob: `**` crosses `/`, so files in nested
  subfolders are found, as the launcher-side walk finds them; local or
  gs:// alike; see folder_patterns for the launcher's part);
* each labels CSV is read by one worker, row by row, and joined with the
  files of its image folder by path (CoGroupByKey), so unlisted files,
  rows naming missing files, duplicate rows and unknown class ids are
  quarantined with the same reasons as image_layouts.list_images gives;
* the eval (and, for a data set without a test folder, test) split is
  carved by patient with a global combine over the train patient ids of
  every data set, handed to every record as a side input: the same split
  as image_layouts.carve_splits.

A DICOM file's header is read here for its patient (its hashed
PatientID), so that its patient is known before the split is carved.
What each file or row is, is decided by the pure rules of image_layouts,
one place for each rule. Every listed input increments the `seen` counter.
"""

import os
from typing import Dict, Iterable, List, Sequence, Tuple

from absl import logging
import apache_beam as beam
from apache_beam.io import fileio as beam_fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import Metrics
from tfx.dsl.io import fileio as tfx_fileio

from components import image_layouts
from components.image_layouts import ImageFolder, ImageRecord, SplitFolder
from schema import contract
from schema import layout

METRICS_NAMESPACE = "ImageExampleGen"
SEEN = "seen"  # counter: every file and bad CSV row listed
# Counter, `test_split_carved:<source>`: 1 when that data set's test split
# was carved.
TEST_CARVED = "test_split_carved"
# Tags and CoGroupByKey keys.
_LISTED, _FILE, _ROWS, _FILES = "listed", "file", "rows", "files"


def glob_literal(path: str) -> str:
  """path as a Beam glob that matches it literally ([, * and ? escaped)."""
  return "".join(f"[{c}]" if c in "[*?" else c for c in path)


def folder_patterns(folder: image_layouts.Folder) -> List[str]:
  """Beam globs of every file under a folder, at any depth, found on workers.

  A 3-class image folder holds its images directly: one `<folder>/**`. A
  binary split folder holds class folders, so the launcher lists its entries
  (a few folders when the layout is kept) and each subfolder gets its own
  `<sub>/**`, matched by its own worker; Beam's local match walks without
  following symlinks below the folder it starts from, so this also keeps a
  symlinked class folder listed. Files lying in the split folder itself
  (quarantined later) are matched by `<folder>/*`, which walks the split
  folder a second time; only a data set with such files pays for it.
  """
  top = glob_literal(folder.path.rstrip("/"))
  if isinstance(folder, ImageFolder):
    return [top + "/**"]
  patterns, stray = [], False
  for entry in sorted(e.rstrip("/") for e in tfx_fileio.listdir(folder.path)):
    if tfx_fileio.isdir(os.path.join(folder.path, entry)):
      patterns.append(f"{top}/{glob_literal(entry)}/**")
    else:
      stray = True
  return patterns + [top + "/*"] if stray else patterns


def _owner(folders: Sequence[image_layouts.Folder],
           path: str) -> image_layouts.Folder:
  found = [f for f in folders if path.startswith(f.path.rstrip("/") + "/")]
  if not found:
    raise ValueError(f"matched {path}, which is in none of the listed "
                     f"folders {[f.path for f in folders]}")
  # Nested folders cannot happen in either layout; the deepest would win.
  return max(found, key=lambda f: len(f.path))


class _QuarantineLinks(beam.DoFn):
  """A local folder -> a quarantine entry for every symbolic link below it.

  Beam's local match walks without following folder links and silently
  drops dangling file links, so neither would be seen or accounted for.
  Every link below a layout folder is therefore quarantined, named with
  its target (image_layouts.local_entries says why), and the match's copy
  of a file link is dropped (_SortMatches). Object stores (gs://) have no
  links.
  """

  def process(self, folder: image_layouts.Folder):
    for path in image_layouts.local_entries(folder):
      if os.path.islink(path):
        yield image_layouts.symlink_quarantine(path)


class _SortMatches(beam.DoFn):
  """A matched file -> a listed input, or a key for the CSV join."""

  def __init__(self, folders: Sequence[image_layouts.Folder]):
    self._folders = list(folders)

  def process(self, metadata):
    path = metadata.path
    # GCS "folder" placeholder objects, which a walk does not list as files.
    if path.endswith("/"):
      return
    # Quarantined by _QuarantineLinks, which sees every link.
    if layout.is_local(path) and os.path.islink(path):
      return
    folder = _owner(self._folders, path)
    if isinstance(folder, SplitFolder):
      yield beam.pvalue.TaggedOutput(_LISTED,
                                     image_layouts.binary_file(folder, path))
    elif folder.csv_path is None:
      yield beam.pvalue.TaggedOutput(
          _LISTED, image_layouts.unlabelled_file(folder, path))
    elif image_layouts.not_utf8(path):
      # No CSV (read as UTF-8) can name it, and Beam's str coder cannot
      # carry it as a join key: quarantined here, as _list_folder does.
      yield beam.pvalue.TaggedOutput(_LISTED, image_layouts.Quarantined(
          path, image_layouts.NOT_UTF8))
    else:
      yield (folder.path, path), _FILE


class _ReadCsvRows(beam.DoFn):
  """A labels CSV, read on a worker -> rows keyed by the file they name."""

  def process(self, folder: ImageFolder):
    import io  # pylint: disable=g-import-not-at-top
    with FileSystems.open(
        folder.csv_path, mime_type="text/csv",
        compression_type=CompressionTypes.UNCOMPRESSED) as raw:
      text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
      for row in image_layouts.csv_rows(folder, text):
        if not row[1]:
          yield beam.pvalue.TaggedOutput(
              _LISTED, image_layouts.empty_csv_row(folder, row[0]))
        else:
          yield (folder.path, folder.label_path(row[1])), row


def _judge(keyed, folders: Dict[str, ImageFolder]):
  (folder_path, path), grouped = keyed
  return image_layouts.labelled_file(folders[folder_path], path,
                                     bool(list(grouped[_FILES])),
                                     list(grouped[_ROWS]))


class _ForTask(beam.DoFn):
  """Counts a listed input and takes it as the run does
  (image_layouts.for_run: the task's rule, a DICOM file's patient)."""

  def __init__(self, task: str, salts: Dict[str, str]):
    self._task = task
    self._salts = salts
    self._seen = Metrics.counter(METRICS_NAMESPACE, SEEN)

  def process(self, listed):
    self._seen.inc()
    salt = (self._salts[listed.source] if isinstance(listed, ImageRecord)
            else "")
    yield image_layouts.for_run(listed, self._task, salt)


class ListImages(beam.PTransform):
  """PBegin -> every ImageRecord and Quarantined input of the folders.

  Built on the launcher, which lists each binary split folder's entries
  (folder_patterns); everything else is listed on the workers.
  """

  def __init__(self, folders: Sequence[image_layouts.Folder], task: str):
    super().__init__()
    self._folders = list(folders)
    self._task = task

  def expand(self, pbegin):
    labelled = [f for f in self._folders
                if isinstance(f, ImageFolder) and f.csv_path]
    matched = (
        pbegin
        | "FolderPatterns" >> beam.Create(
            [p for f in self._folders for p in folder_patterns(f)])
        | "MatchAll" >> beam_fileio.MatchAll()
        | "SortMatches" >> beam.ParDo(_SortMatches(self._folders))
        .with_outputs(_LISTED, main=_FILES))
    rows = (
        pbegin
        | "LabelCsvs" >> beam.Create(labelled)
        | "ReadCsvRows" >> beam.ParDo(_ReadCsvRows())
        .with_outputs(_LISTED, main=_ROWS))
    joined = (
        {_FILES: matched[_FILES], _ROWS: rows[_ROWS]}
        | "JoinCsvByPath" >> beam.CoGroupByKey()
        | "Judge" >> beam.FlatMap(_judge, {f.path: f for f in labelled}))
    links = (
        pbegin
        | "LocalFolders" >> beam.Create(
            [f for f in self._folders if layout.is_local(f.path)])
        | "QuarantineLinks" >> beam.ParDo(_QuarantineLinks()))
    return ((matched[_LISTED], rows[_LISTED], joined, links)
            | "AllListed" >> beam.Flatten()
            | "ForTask" >> beam.ParDo(_ForTask(
                self._task, {f.source: f.patient_salt
                             for f in self._folders})))


class _TrainPatients(beam.CombineFn):
  """Records -> image_layouts.pools: each data set's train patient ids and
  whether it has test records."""

  def create_accumulator(self):
    return {}

  def add_input(self, accumulator, record: ImageRecord):
    patients, has_test = accumulator.setdefault(record.source, (set(), False))
    if record.split == contract.TRAIN:
      patients.add(record.patient_id)
    if record.split == contract.TEST and not has_test:
      accumulator[record.source] = patients, True
    return accumulator

  def merge_accumulators(self, accumulators: Iterable[Dict[str, tuple]]):
    merged = {}
    for accumulator in accumulators:
      for source, (more, test) in accumulator.items():
        patients, has_test = merged.setdefault(source, (set(), False))
        merged[source] = patients | more, has_test or test
    return merged

  def extract_output(self, accumulator) -> Dict[str, image_layouts.Pool]:
    return {source: (sorted(patients), has_test)
            for source, (patients, has_test) in accumulator.items()}


def test_carved_counter(source: str) -> str:
  return f"{TEST_CARVED}:{source}"


def _carve(by_source: Dict[str, image_layouts.Pool], eval_percent: int,
           salt: str) -> Dict[Tuple[str, str], str]:
  for source, (_, has_test) in sorted(by_source.items()):
    if not has_test:
      Metrics.counter(METRICS_NAMESPACE, test_carved_counter(source)).inc()
      logging.warning("ImageExampleGen: %s has no test split; carving %d%% "
                      "of its patients for it", source, eval_percent)
  return image_layouts.carve_sources(by_source, eval_percent, salt)


class CarveSplits(beam.PTransform):
  """ImageRecords -> (record, output split), as image_layouts.carve_splits.

  The carve needs every train patient id of a data set at once (a small
  data set's empty carved split takes the nearest patient), so the ids are
  combined globally, by data set, carved on one worker, and the answer
  ({(source, patient): eval or test}, a fraction of the patients) reaches
  every record as a side input.
  """

  def __init__(self, eval_percent: int, salt: str):
    super().__init__()
    self._eval_percent = eval_percent
    self._salt = salt

  def expand(self, records):
    carved = (records
              | "TrainPatients" >> beam.CombineGlobally(_TrainPatients())
              | "Carve" >> beam.Map(_carve, self._eval_percent, self._salt))
    return records | "AssignSplit" >> beam.Map(
        lambda r, c: (r, image_layouts.split_of(r, c)),
        beam.pvalue.AsSingleton(carved))
