"""ImageExampleGen on both real layouts and on a folder salted with bad files."""

import csv
import glob
import io
import json
import os
import shutil

import pytest
import tensorflow as tf
from PIL import Image
from tfx.types import standard_artifacts

from components import image_example_gen
from components import image_layouts
from schema import layout
from tests import test_bit_depth
from tests import test_pixel_limit


def run_executor(data_dir, out_dir, task, eval_percent=25,
                 beam_args=(),
                 patient_id_pattern="", **more_properties):
  examples = standard_artifacts.Examples()
  examples.uri = os.path.join(out_dir, "examples")
  quarantine = image_example_gen.ImageQuarantine()
  quarantine.uri = os.path.join(out_dir, "quarantine")
  executor = image_example_gen.Executor(image_example_gen.Executor.Context(
      beam_pipeline_args=list(beam_args),
      tmp_dir=os.path.join(out_dir, "tmp")))
  executor.Do({}, {"examples": [examples], "quarantine": [quarantine]},
              {"input_base": data_dir, "task": task, "source": "",
               "eval_percent": eval_percent, "split_salt": "cxr",
               "patient_id_pattern": patient_id_pattern,
               "input_fingerprint": "", **more_properties})
  counts = json.loads(examples.get_string_custom_property(
      layout.COUNTS_PROPERTY))
  with open(os.path.join(quarantine.uri,
                         layout.QUARANTINE_FILE)) as f:
    quarantined = list(csv.DictReader(f))
  return examples, counts, quarantined


def read_examples(examples, split):
  files = glob.glob(os.path.join(examples.uri, f"Split-{split}", "*.gz"))
  out = []
  for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
    ex = tf.train.Example.FromString(record.numpy())
    f = ex.features.feature
    out.append({k: (f[k].bytes_list.value[0] if f[k].bytes_list.value
                    else f[k].int64_list.value[0]) for k in f})
  return out


def all_examples(examples):
  return {s: read_examples(examples, s) for s in image_example_gen.SPLITS}


def test_real_binary_layout(real_binary_subset, tmp_path):
  examples, counts, quarantined = run_executor(real_binary_subset,
                                               str(tmp_path), "binary")
  files = glob.glob(os.path.join(real_binary_subset, "*", "*", "*.jpeg"))
  assert quarantined == []
  assert counts["ingested"] == counts["seen"] == len(files) == 33
  by_split = all_examples(examples)
  assert {s: len(v) for s, v in by_split.items()} == {
      s: counts[s] for s in image_example_gen.SPLITS}
  # The data set's own test folder is kept as the test split.
  assert len(by_split["test"]) == 9
  # Eval is carved from train by patient: no patient in both.
  train_patients = {e["patient_id"] for e in by_split["train"]}
  eval_patients = {e["patient_id"] for e in by_split["eval"]}
  assert eval_patients and not train_patients & eval_patients
  for split_examples in by_split.values():
    for e in split_examples:
      name = e["file_name"].decode()
      src = glob.glob(os.path.join(real_binary_subset, "*", "*", name))[0]
      with open(src, "rb") as f:
        assert e["image"] == f.read()  # bytes exactly as read
      with Image.open(src) as img:
        assert (e["width"], e["height"]) == img.size
      expected = image_layouts.diagnosis_from_file_name(name)
      if "/NORMAL/" in src:
        expected = "normal"
      assert e["diagnosis"].decode() == expected
      assert e["label"] == (0 if expected == "normal" else 1)
      assert e["label_name"].decode() == ("normal" if expected == "normal"
                                          else "pneumonia")
      source = os.path.basename(real_binary_subset)
      assert e["source"] == source.encode()
      # Namespaced by the source: one id in two data sets is two patients.
      assert e["patient_id"].decode() == (
          f"{source}/{image_layouts.patient_id(name)}")


def test_multi_processing_runner_counts_the_same(real_binary_subset,
                                                 tmp_path):
  """Beam workers in other processes: the DoFn pickles, counters add up."""
  _, in_memory, _ = run_executor(real_binary_subset, str(tmp_path / "a"),
                                 "binary")
  examples, counts, _ = run_executor(
      real_binary_subset, str(tmp_path / "b"), "binary",
      beam_args=("--direct_running_mode=multi_processing",
                 "--direct_num_workers=2"))
  assert counts == in_memory
  assert {s: len(v) for s, v in all_examples(examples).items()} == {
      s: in_memory[s] for s in image_example_gen.SPLITS}


def test_binary_layout_for_the_3class_task(real_binary_subset, tmp_path):
  examples, counts, _ = run_executor(real_binary_subset, str(tmp_path),
                                     "multiclass")
  labels = {}
  for e in sum(all_examples(examples).values(), []):
    labels[e["label_name"].decode()] = labels.get(e["label_name"].decode(),
                                                  0) + 1
    assert e["label"] == ("normal", "bacterial", "viral").index(
        e["label_name"].decode())
  assert labels == {"normal": 11, "bacterial": 11, "viral": 11}
  assert counts["quarantined"] == 0


def test_real_3class_layout(real_multiclass_subset, tmp_path):
  examples, counts, quarantined = run_executor(real_multiclass_subset,
                                               str(tmp_path), "multiclass")
  assert quarantined == []
  assert counts["ingested"] == counts["seen"] == 27
  by_split = all_examples(examples)
  with open(os.path.join(real_multiclass_subset, "labels_test.csv")) as f:
    test_labels = {r["file_name"]: int(r["class_id"])
                   for r in csv.DictReader(f)}
  assert {e["file_name"].decode(): e["label"]
          for e in by_split["test"]} == test_labels
  with open(os.path.join(real_multiclass_subset, "labels_train.csv")) as f:
    train_labels = {r["file_name"]: int(r["class_id"])
                    for r in csv.DictReader(f)}
  carved = by_split["train"] + by_split["eval"]
  assert {e["file_name"].decode(): e["label"] for e in carved} == train_labels


def _jpeg(size=(40, 30), mode="L"):
  buf = io.BytesIO()
  Image.new(mode, size, 128).save(buf, format="JPEG")
  return buf.getvalue()


def _png(size=(40, 30)):
  buf = io.BytesIO()
  Image.new("RGB", size, (10, 200, 30)).save(buf, format="PNG")
  return buf.getvalue()


@pytest.fixture
def salted_binary(real_binary_subset, tmp_path):
  """The real subset plus one file of every kind of bad input."""
  root = tmp_path / "salted"
  shutil.copytree(real_binary_subset, root)
  normal = root / "train" / "NORMAL"
  good_jpeg = sorted(normal.iterdir())[0].read_bytes()
  bad = {
      normal / "empty.jpeg": b"",
      normal / "truncated.jpeg": good_jpeg[:len(good_jpeg) // 2],
      normal / "notes.txt": b"radiologist notes, not an image\n",
      normal / "corrupt.png": b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20,
      normal / "scan.bmp": b"BM" + b"\x00" * 60,
      root / "train" / "stray.jpeg": good_jpeg,  # outside a class folder
  }
  for path, data in bad.items():
    path.write_bytes(data)
  # A decompression bomb (a small PNG declaring 400 million pixels) and
  # links: dangling, a loop, and one bringing a test image into training.
  huge = normal / "huge.png"
  huge.write_bytes(test_pixel_limit._png_declaring(20_000, 20_000))
  test_image = sorted((root / "test" / "NORMAL").iterdir())[0]
  links = {normal / "dangling.jpeg": str(tmp_path / "gone.jpeg"),
           normal / "up": "..",
           normal / "leak.jpeg": os.path.relpath(test_image, normal)}
  for path, target in links.items():
    os.symlink(target, path)
  bad = {**bad, huge: None, **links}
  # Good non-standard inputs that must be ingested: a PNG, an RGB JPEG and
  # a 16-bit PNG holding 12-bit data.
  (normal / "IM-9001-0001.png").write_bytes(_png())
  (normal / "IM-9002-0001.png").write_bytes(test_bit_depth.png16(4095))
  (root / "test" / "PNEUMONIA" / "person9001_virus_1.jpeg").write_bytes(
      _jpeg(mode="RGB"))
  return str(root), len(bad)


def test_bad_files_are_quarantined(salted_binary, tmp_path):
  data_dir, n_bad = salted_binary
  examples, counts, quarantined = run_executor(data_dir, str(tmp_path),
                                               "binary")
  assert counts["quarantined"] == len(quarantined) == n_bad
  assert counts["ingested"] == 33 + 3
  assert counts[layout.RESCALED_COUNT] == 1
  assert counts["seen"] == counts["ingested"] + counts["quarantined"]
  reasons = {os.path.basename(q["path"]): q["reason"] for q in quarantined}
  assert reasons["empty.jpeg"] == "empty file"
  assert "truncated" in reasons["truncated.jpeg"]
  assert "not a JPEG or PNG" in reasons["notes.txt"]
  assert "corrupt" in reasons["corrupt.png"]
  assert "not a JPEG or PNG" in reasons["scan.bmp"]
  assert "class folder" in reasons["stray.jpeg"]
  assert "more than 50000000 pixels" in reasons["huge.png"]
  for link in ("dangling.jpeg", "up", "leak.jpeg"):
    assert reasons[link].startswith("symbolic link to "), reasons[link]
  ingested = {e["file_name"].decode(): e
              for e in sum(all_examples(examples).values(), [])}
  assert ingested["IM-9001-0001.png"]["channels"] == 3
  assert ingested["person9001_virus_1.jpeg"]["channels"] == 3


def test_bad_csv_rows_are_quarantined(real_multiclass_subset, tmp_path):
  root = tmp_path / "salted3"
  shutil.copytree(real_multiclass_subset, root)
  first = sorted((root / "train_images").iterdir())[0].name
  (root / "train_images" / "unlisted.jpeg").write_bytes(_jpeg())
  (root / "train_images" / "wrong_class.jpeg").write_bytes(_jpeg())
  (root / "train_images" / "broken.jpeg").write_bytes(b"\xff\xd8\xff\xe0")
  with open(root / "labels_train.csv", "a") as f:
    f.write("missing.jpeg,1\n")
    f.write("wrong_class.jpeg,7\n")
    f.write("broken.jpeg,2\n")
    f.write(f"{first},2\n")  # labelled twice
  examples, counts, quarantined = run_executor(str(root), str(tmp_path / "o"),
                                               "multiclass")
  reasons = sorted(q["reason"] for q in quarantined)
  assert counts["quarantined"] == len(quarantined) == 5, reasons
  assert counts["ingested"] == 27
  assert counts["seen"] == counts["ingested"] + counts["quarantined"]
  text = "\n".join(reasons)
  for expected in ("does not exist", "unknown class_id '7'",
                   "not listed in labels_train.csv", "labelled twice",
                   "corrupt or truncated JPEG"):
    assert expected in text
  assert examples.split_names


def test_unknown_layout_is_a_clear_error(tmp_path):
  (tmp_path / "pictures").mkdir()
  with pytest.raises(ValueError, match="no known data set layout"):
    run_executor(str(tmp_path), str(tmp_path / "out"), "binary")
