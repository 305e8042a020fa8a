"""Listing on the Beam workers: the same answers as the launcher-side listing,
and a submitted graph that does not grow with the number of files."""

import os
import random

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from tfx.types import standard_artifacts

from components import image_example_gen
from components import image_ingestion
from components import image_layouts
from components import image_listing
from schema import contract


def _as_tuple(listed):
  # Printable paths: Beam's str coder cannot carry a non-UTF-8 file name.
  if isinstance(listed, image_layouts.ImageRecord):
    return ("record", image_layouts.printable(listed.path), listed.split,
            listed.diagnosis, listed.file_name, listed.patient_id,
            listed.source, listed.patient_known)
  return ("quarantined", image_layouts.printable(listed.path), listed.reason)


def _launcher_listing(root, task):
  _, records, quarantined, _ = image_layouts.list_images(root, task)
  return sorted(_as_tuple(x) for x in records + quarantined)


def _worker_listing(root, task):
  _, folders, _ = image_layouts.plan_folders(root)
  with beam.Pipeline() as pipeline:
    listed = (pipeline
              | image_listing.ListImages(folders, task)
              | beam.Map(_as_tuple))
    assert_that(listed, equal_to(_launcher_listing(root, task)))


def _write(path, data=b"x"):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(data)


@pytest.mark.parametrize("name", ["plain", "data [v2]*?"])
def test_binary_layout_on_workers_as_on_the_launcher(tmp_path, name):
  # Beam's glob characters in the path are matched literally.
  root = str(tmp_path / name)
  for rel in ("train/NORMAL/IM-0001-0001.jpeg",
              "train/NORMAL/nested/deeper/IM-0002-0001.jpeg",
              "train/PNEUMONIA/person1_bacteria_1.jpeg",
              "train/PNEUMONIA/person1_virus_2.jpeg",
              "train/PNEUMONIA/scan7.jpeg",  # pneumonia of unknown kind
              "train/stray.jpeg",  # outside a class folder
              "train/extra/loose.jpeg",  # in a folder that is not a class
              "val/NORMAL/IM-0003-0001.jpeg",
              "test/PNEUMONIA/person2_virus_3.jpeg",
              "README.txt"):  # ignored top-level entry
    _write(os.path.join(root, rel))
  # A name that is not UTF-8: quarantined by both, failing neither.
  _write(os.fsdecode(os.path.join(os.fsencode(root), b"train", b"NORMAL",
                                  b"IM-\xff-0001.jpeg")))
  if name == "plain":
    # A symlinked class folder is listed, as the launcher's walk lists it
    # (with glob characters in the path, Beam's match starts its walk above
    # them and would not follow it).
    _write(str(tmp_path / "elsewhere" / "IM-0004-0001.jpeg"))
    os.symlink(str(tmp_path / "elsewhere"),
               os.path.join(root, "test", "NORMAL"))
  for task in contract.TASKS:
    _worker_listing(root, task)


def test_3class_layout_on_workers_as_on_the_launcher(tmp_path):
  root = str(tmp_path / "three")
  for rel in ("train_images/a.jpeg", "train_images/b.jpeg",
              "train_images/c.jpeg", "train_images/unlisted.jpeg",
              "train_images/sub/nested.jpeg", "test_images/t.jpeg",
              "test_images/u.jpeg", "val_images/no_csv.jpeg", "notes.md"):
    _write(os.path.join(root, rel))
  with open(os.path.join(root, "labels_train.csv"), "w") as f:
    f.write("file_name,class_id\n"
            "a.jpeg,0\n"
            "b.jpeg,7\n"  # unknown class id
            "b.jpeg,1\n"  # labelled twice (after a bad first label)
            "c.jpeg,2\n"
            "c.jpeg,2\n"  # labelled twice
            "missing.jpeg,1\n"  # names a file that does not exist
            "missing.jpeg,2\n"  # ...twice
            ",1\n"  # empty file_name
            "sub/nested.jpeg,1\n"  # a file in a subfolder
            "../test_images/t.jpeg,0\n")  # not in this folder
  with open(os.path.join(root, "labels_test.csv"), "w",
            encoding="utf-8-sig") as f:  # with a byte order mark
    f.write("file_name,class_id\r\nt.jpeg,1\r\nu.jpeg,2\r\n")
  # A name that is not UTF-8, and a link the CSV names.
  _write(os.fsdecode(os.path.join(os.fsencode(root), b"test_images",
                                  b"v\xfe.jpeg")))
  os.symlink("t.jpeg", os.path.join(root, "test_images", "linked.jpeg"))
  with open(os.path.join(root, "labels_test.csv"), "a") as f:
    f.write("linked.jpeg,0\r\n")
  for task in contract.TASKS:
    _worker_listing(root, task)


def test_links_below_a_class_folder_are_quarantined_not_followed(tmp_path):
  """A folder link out of the data set, a file link from train to a test
  image, a dangling link and a loop: each is one quarantine entry naming
  its target, and no image behind them is read."""
  root = tmp_path / "linked"
  normal = root / "train" / "NORMAL"
  _write(str(normal / "IM-0001-0001.jpeg"))
  _write(str(root / "test" / "NORMAL" / "IM-0009-0001.jpeg"))
  _write(str(tmp_path / "more" / "IM-0002-0001.jpeg"))
  links = {"more": str(tmp_path / "more"),
           "IM-0009-0001.jpeg": "../../test/NORMAL/IM-0009-0001.jpeg",
           "IM-0003-0001.jpeg": str(tmp_path / "gone.jpeg"),
           "up": ".."}
  for name, target in links.items():
    os.symlink(target, str(normal / name))
  _, folders, _ = image_layouts.plan_folders(str(root))
  with beam.Pipeline() as pipeline:
    listed = pipeline | image_listing.ListImages(folders, "binary")
    names = (listed
             | beam.Filter(lambda r: isinstance(r, image_layouts.ImageRecord))
             | beam.Map(lambda r: r.path[len(str(root)) + 1:]))
    assert_that(names, equal_to(["train/NORMAL/IM-0001-0001.jpeg",
                                 "test/NORMAL/IM-0009-0001.jpeg"]),
                label="records")
    quarantined = (
        listed
        | beam.Filter(lambda r: isinstance(r, image_layouts.Quarantined))
        | beam.Map(lambda q: (os.path.basename(q.path), q.reason)))
    assert_that(quarantined, equal_to([
        (name, image_layouts.SYMLINK_REASON.format(target=target))
        for name, target in links.items()]), label="quarantined")
  # The launcher-side listing neither follows nor fails on them.
  for task in contract.TASKS:
    _worker_listing(str(root), task)


def _records(n_patients, with_test, seed=0):
  rng = random.Random(seed)
  records = []
  for i in range(n_patients):
    split = (contract.TEST if with_test and rng.random() < 0.2
             else contract.TRAIN)
    for k in range(rng.randint(1, 3)):
      name = f"person{i}_virus_{k}.jpeg"
      records.append(image_layouts.ImageRecord(
          f"/d/{split}/{name}", split, "viral", name, f"person{i}"))
  return records


def test_carve_on_workers_is_carve_splits():
  for n_patients, with_test in ((400, True), (400, False), (3, True),
                                (5, False), (0, False)):
    records = _records(n_patients, with_test)
    expected = image_layouts.carve_splits(records, 10, "cxr")
    with beam.Pipeline() as pipeline:
      carved = (pipeline
                | beam.Create(records)
                | image_listing.CarveSplits(10, "cxr"))
      assert_that(carved, equal_to(expected))


def _graph_size(root, tmp_path):
  examples = standard_artifacts.Examples()
  examples.uri = str(tmp_path / "examples")
  quarantine = image_example_gen.ImageQuarantine()
  quarantine.uri = str(tmp_path / "quarantine")
  _, folders, _ = image_layouts.plan_folders(root)
  pipeline = beam.Pipeline()
  image_ingestion.build_pipeline(pipeline, folders, "binary", 10, "cxr",
                                 examples, quarantine)
  return pipeline.to_runner_api().SerializeToString()


def test_submitted_graph_does_not_grow_with_the_files(tmp_path):
  sizes = {}
  for n in (10, 1000):
    root = str(tmp_path / f"n{n:04d}")
    for i in range(n):
      _write(os.path.join(root, ("train", "test")[i % 2],
                          ("NORMAL", "PNEUMONIA")[i // 2 % 2],
                          f"person{i}_bacteria_{i}.jpeg"))
    graph = _graph_size(root, tmp_path / f"out{n}")
    assert b"person1_bacteria_1.jpeg" not in graph
    sizes[n] = len(graph)
  assert abs(sizes[1000] - sizes[10]) <= 0.01 * sizes[10], sizes
  # The measure would see file paths in the graph: the old launcher-side
  # listing's beam.Create of 1000 records.
  _, records, _, _ = image_layouts.list_images(root, "binary")
  old = beam.Pipeline()
  _ = old | beam.Create(image_layouts.carve_splits(records, 10, "cxr"))
  assert len(old.to_runner_api().SerializeToString()) > 1000 * 20, sizes
