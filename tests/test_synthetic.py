"""The procedural chest X-ray generator."""

import glob
import hashlib
import os
import re

import numpy as np
from PIL import Image
import pytest

from components import image_layouts
from pipeline import synthetic


def _digest(root):
  h = hashlib.sha256()
  for path in sorted(glob.glob(os.path.join(root, "*", "*", "*.jpeg"))):
    h.update(os.path.relpath(path, root).encode())
    with open(path, "rb") as f:
      h.update(f.read())
  return h.hexdigest()


def test_layout_names_and_determinism(tmp_path):
  counts = synthetic.generate(str(tmp_path / "a"), n=60, size=64, seed=7)
  synthetic.generate(str(tmp_path / "b"), n=60, size=64, seed=7)
  synthetic.generate(str(tmp_path / "c"), n=60, size=64, seed=8)
  assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
  assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
  assert sum(counts.values()) == 60

  files = glob.glob(str(tmp_path / "a" / "*" / "*" / "*.jpeg"))
  assert len(files) == 60
  names = re.compile(r"^(IM-\d{4}-\d{4}|person\d+_(bacteria|virus)_\d+)\.jpeg$")
  splits = {}
  for path in files:
    split, folder, name = path.split(os.sep)[-3:]
    assert split in ("train", "test") and names.match(name), path
    assert (folder == "NORMAL") == name.startswith("IM-")
    splits.setdefault(image_layouts.patient_id(name), set()).add(split)
    with Image.open(path) as img:
      assert img.format == "JPEG" and img.size == (64, 64)
  # Several images per patient, and no patient in both splits.
  assert len(splits) < len(files)
  assert all(len(s) == 1 for s in splits.values())


def test_lesion_boxes(tmp_path):
  synthetic.generate(str(tmp_path), n=40, size=128, seed=3)
  boxes = synthetic.load_lesions(str(tmp_path))
  assert len(boxes) == 40
  for rel, lesion_boxes in boxes.items():
    kind = image_layouts.diagnosis_from_file_name(rel)
    if "/NORMAL/" in rel:
      assert lesion_boxes == []
    else:
      assert len(lesion_boxes) == (1 if kind == "bacterial" else 2)
    for x0, y0, x1, y1 in lesion_boxes:
      assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 128


def test_lesions_are_where_the_boxes_say():
  """A pneumonia image is brighter than the same anatomy, normal, in its box."""
  anatomy = synthetic._patient_anatomy(np.random.default_rng(0))  # pylint: disable=protected-access
  for kind in ("bacterial", "viral"):
    sick, boxes = synthetic.draw_image(np.random.default_rng(5), anatomy, kind,
                                       128)
    healthy, _ = synthetic.draw_image(np.random.default_rng(5), anatomy,
                                      "normal", 128)
    x0, y0, x1, y1 = boxes[0]
    inside = (sick[y0:y1, x0:x1].astype(float)
              - healthy[y0:y1, x0:x1].astype(float)).mean()
    assert inside > 10, kind


def test_bad_arguments(tmp_path):
  with pytest.raises(ValueError):
    synthetic.generate(str(tmp_path), n=0)
  with pytest.raises(ValueError):
    synthetic.generate(str(tmp_path), size=8)
