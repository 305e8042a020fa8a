"""Ingestion over a zoo of odd-but-valid and bad files, symbolic links
included (bench/ingest_zoo.py): every entry is ingested or quarantined
with its reason, seen = ingested + quarantined = the entries made, and
nothing aborts the run."""

import collections
import os

import pytest

from bench import ingest_zoo
from components import image_layouts
from tests.test_image_example_gen import run_executor


@pytest.mark.timeout(180)  # a FIFO read would block for ever
def test_every_entry_of_the_zoo_is_accounted_for(tmp_path):
  root = tmp_path / "zoo"
  root.mkdir()
  entries = ingest_zoo.build_zoo(str(root))
  assert len(entries) >= 25
  assert len({e.path for e in entries}) == len(entries)
  result = ingest_zoo.run_zoo(str(root), str(tmp_path / "out"))
  assert result["error"] is None, result["error"]
  wrong = [(entry.kind, entry.expected, outcome)
           for entry, outcome, ok in ingest_zoo.judge(entries, result)
           if not ok]
  assert wrong == []
  counts = result["counts"]
  expected = collections.Counter(
      e.expected == ingest_zoo.INGESTED for e in entries)
  assert counts["ingested"] == expected[True]
  assert counts["quarantined"] == expected[False]
  assert counts["seen"] == counts["ingested"] + counts["quarantined"] == len(
      entries)


@pytest.mark.timeout(180)  # a FIFO read would block for ever
def test_the_3class_layout_quarantines_the_same_odd_files(tmp_path):
  """Names that are not UTF-8 and named pipes in a CSV-labelled layout are
  quarantined too (the name aborted the run as a CSV join key)."""
  root = tmp_path / "d"
  jpeg = ingest_zoo._image("JPEG")  # pylint: disable=protected-access
  for split, first in (("train", 0), ("test", 100)):
    (root / f"{split}_images").mkdir(parents=True)
    rows = ["file_name,class_id"]
    for i in range(6):
      name = f"person{first + i}_x_{i}.jpeg"
      (root / f"{split}_images" / name).write_bytes(jpeg)
      rows.append(f"{name},{i % 3}")
    (root / f"labels_{split}.csv").write_text("\n".join(rows) + "\n")
  images = os.fsencode(root / "train_images")
  with open(images + b"/bad-\xff.jpeg", "wb") as f:
    f.write(jpeg)
  os.mkfifo(root / "train_images" / "fifo.jpeg")
  with open(root / "labels_train.csv", "a") as f:
    f.write("fifo.jpeg,1\n")
  _, counts, quarantined = run_executor(str(root), str(tmp_path / "out"),
                                        "multiclass")
  reasons = {os.path.basename(q["path"]): q["reason"] for q in quarantined}
  assert reasons == {"bad-\\xff.jpeg": image_layouts.NOT_UTF8,
                     "fifo.jpeg": "not a regular file (a FIFO, socket or "
                                  "device): not read"}
  assert counts["ingested"] == 12 and counts["seen"] == 14
