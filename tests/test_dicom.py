"""DICOM files: pixels as a radiologist sees them, kept at 16 bits; patients
by hashed PatientID; bad files quarantined; nothing identifying stored."""

import collections
import glob
import gzip
import io
import os
import random
import shutil

import numpy as np
from PIL import Image
import pydicom
from pydicom.uid import JPEG2000Lossless, RLELossless
import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_serving.apis import predict_pb2

from bench import exported
from components import image_example_gen
from components import image_examples
import schema
from schema import contract
from serving import client
from serving import dicom
from serving.export import pixels as pixels_lib
from bench import dicom_files
from tests import test_image_example_gen
from tests import test_transform

BUNDLED = os.path.join(os.path.dirname(pydicom.data.__file__), "test_files")


def png_pixels(data: bytes) -> np.ndarray:
  with Image.open(io.BytesIO(data)) as img:
    assert img.format == "PNG" and img.mode in ("I;16", "I")
    return np.asarray(img).astype(np.int64)


def pixels_of(data: bytes) -> np.ndarray:
  return png_pixels(dicom.read(data).png)


def bundled(name: str) -> bytes:
  with open(os.path.join(BUNDLED, name), "rb") as f:
    return f.read()


def test_stored_range_is_stretched_to_sixteen_bits(real_binary_subset):
  path = sorted(glob.glob(os.path.join(real_binary_subset, "train", "NORMAL",
                                       "*.jpeg")))[0]
  stored = dicom_files.from_image(path, bits=12)
  got = pixels_of(dicom_files.file_bytes(stored))
  low, high = int(stored.min()), int(stored.max())
  expected = np.round((stored.astype(np.float64) - low) * 65535 / (high - low))
  np.testing.assert_array_equal(got, expected)
  # A linear rescale (modality LUT) changes nothing that is seen; 16 bits
  # stored read the same way.
  np.testing.assert_array_equal(
      pixels_of(dicom_files.file_bytes(stored, rescale=(2.0, -1024.0))), got)
  sixteen = dicom_files.from_image(path, bits=16)
  assert np.abs(pixels_of(dicom_files.file_bytes(
      sixteen, bits_stored=16)) - got).max() <= 32


def test_monochrome1_is_shown_inverted():
  plain = pixels_of(dicom_files.file_bytes())
  inverted = pixels_of(dicom_files.file_bytes(photometric="MONOCHROME1"))
  np.testing.assert_array_equal(inverted, 65535 - plain)


def test_the_window_decides_what_is_seen():
  # Stored 0..4095; the window 1536..2560 shows, the rest saturates.
  stored = dicom_files.ramp()
  got = pixels_of(dicom_files.file_bytes(stored, window=(2048.0, 1024.0)))
  assert (got[stored <= 1500] == 0).all()
  assert (got[stored >= 2600] == 65535).all()
  middle = (stored > 1600) & (stored < 2500)
  assert middle.any()
  # Linear inside the window (pydicom's LINEAR function), to a grey level.
  expected = (stored[middle] - (2048 - 0.5 - 1023 / 2)) / 1023 * 65535
  assert np.abs(got[middle] - expected).max() <= 80


def test_a_voi_lut_wins_over_the_window():
  stored = dicom_files.ramp()
  flipped = 4095 - np.arange(4096)
  with_lut = pixels_of(dicom_files.file_bytes(
      stored, voi_lut=flipped, window=(2048.0, 1024.0)))
  np.testing.assert_array_equal(with_lut,
                                65535 - pixels_of(dicom_files.file_bytes()))


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_compressed_files_give_the_same_pixels(syntax):
  stored = dicom_files.ramp(top=4000)
  plain = dicom.read(dicom_files.file_bytes(stored)).png
  compressed = dicom_files.file_bytes(stored, syntax=syntax)
  assert pydicom.dcmread(io.BytesIO(compressed)).file_meta.TransferSyntaxUID \
      == syntax
  assert dicom.read(compressed).png == plain


def test_pydicoms_own_files_decode_alike_in_every_syntax():
  # One MR image in four transfer syntaxes, from pydicom's test files: the
  # JPEG-LS one is decoded by the pylibjpeg-libjpeg plugin.
  reference = pixels_of(bundled("MR_small.dcm"))
  for name in ("MR_small_RLE.dcm", "MR_small_jp2klossless.dcm",
               "MR_small_jpeg_ls_lossless.dcm"):
    np.testing.assert_array_equal(pixels_of(bundled(name)), reference)
  attributes = dicom.read(bundled("MR_small.dcm")).attributes
  assert (attributes.modality, attributes.view_position,
          attributes.bits_stored, attributes.photometric) == (
              "MR", contract.UNKNOWN, 16, "MONOCHROME2")


def test_attributes_and_views():
  image = dicom.read(dicom_files.file_bytes(manufacturer="Vendor X"))
  assert image.attributes == dicom.Attributes(
      modality="DX", view_position="PA", bits_stored=12,
      photometric="MONOCHROME2", manufacturer="Vendor X")
  for given, view in (("AP", "AP"), ("LL", "LL"), ("RL", "LL"),
                      ("LATERAL", "LL"), (None, contract.UNKNOWN),
                      ("OBL", contract.UNKNOWN)):
    assert dicom.read(dicom_files.file_bytes(view=given)).attributes \
        .view_position == view


def _truncated():
  data = dicom_files.file_bytes()
  return data[:len(data) // 2]


def _syntax_without_plugin():
  # MPEG-2 video: pydicom has no decoder for it at all.
  ds = dicom_files.dataset(dicom_files.ramp())
  ds.compress(RLELossless)
  ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"
  buf = io.BytesIO()
  ds.save_as(buf, enforce_file_format=True)
  return buf.getvalue()


def _without_pixels():
  ds = dicom_files.dataset(dicom_files.ramp(),
                           sop_class=dicom_files.TEXT_REPORT)
  del ds.PixelData
  return dicom_files.encode(ds)


def _two_frames():
  ds = dicom_files.dataset(np.concatenate([dicom_files.ramp()] * 2))
  ds.Rows = 96
  ds.NumberOfFrames = 2
  return dicom_files.encode(ds)


def _malformed_frames():
  ds = dicom_files.dataset(dicom_files.ramp())
  ds.NumberOfFrames = 1
  data = dicom_files.encode(ds)
  # Number of Frames (0028,0008), IS: "1 " becomes "x ", not a number.
  at = data.index(b"\x28\x00\x08\x00IS\x02\x00") + 8
  return data[:at] + b"x " + data[at + 2:]


def _rle_that_panics():
  # One byte of the RLE data changed: pylibjpeg-rle's Rust decoder panics
  # (PanicException, a BaseException) instead of raising an error.
  data = bytearray(dicom_files.file_bytes(syntax=RLELossless))
  data[-8088] = 204
  return bytes(data)


BAD = {
    "truncated": (_truncated, "truncated"),
    "no pixel data": (_without_pixels, "no pixel data (Basic Text SR "
                      "Storage): not an image"),
    "no plugin": (_syntax_without_plugin, "cannot decode transfer syntax "
                  "MPEG2"),
    "multi-frame": (_two_frames, "multi-frame image (2 frames)"),
    "rgb": (lambda: bundled("SC_rgb_rle.dcm"), "colour image (RGB, 3 "
            "samples per pixel)"),
    "uniform": (lambda: dicom_files.file_bytes(
        np.full((40, 40), 700, np.uint16)), "every pixel has the same value"),
    "rt plan": (lambda: bundled("rtplan.dcm"), "no pixel data (RT Plan "
                "Storage)"),
    "32 bits": (lambda: dicom_files.file_bytes(bits_stored=32),
                "32 bits stored: 1 to 16 are taken"),
    "malformed": (_malformed_frames, "malformed DICOM attribute"),
    "rle panic": (_rle_that_panics, "corrupt or truncated pixel data (RLE "
                  "Lossless): PanicException"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_dicom_files_say_why(kind):
  make, reason = BAD[kind]
  data = make()
  assert dicom.is_dicom(data)
  with pytest.raises(dicom.DicomError) as raised:
    dicom.read(data)
  assert reason in str(raised.value)
  assert not any(v.decode() in str(raised.value)
                 for v in dicom_files.planted_values())


def test_mutated_files_are_bad_images_never_crashes():
  # Seeded byte flips and truncations of files in four transfer syntaxes:
  # each is read or refused with a reason, as ingestion needs. (8,000 such
  # files found the RLE panic above and nothing else.)
  rng = random.Random(18)
  bases = [dicom_files.file_bytes(), bundled("MR_small_jpeg_ls_lossless.dcm"),
           dicom_files.file_bytes(syntax=RLELossless),
           dicom_files.file_bytes(syntax=JPEG2000Lossless)]
  outcomes = collections.Counter()
  for _ in range(400):
    data = bytearray(rng.choice(bases))
    for _ in range(rng.choice([1, 4, 32])):
      data[rng.randrange(132, len(data))] = rng.randrange(256)
    if rng.random() < 0.2:
      data = data[:rng.randrange(132, len(data))]
    try:
      image_examples.check_image(image_examples.as_image(bytes(data))[0])
      outcomes["read"] += 1
    except image_examples.BadImage:
      outcomes["refused"] += 1
  assert outcomes["read"] and outcomes["refused"], outcomes


def test_patient_ids_are_salted_hashes():
  data = dicom_files.file_bytes()
  first = dicom.hashed_patient_id(data, "salt-a")
  assert first == dicom.hashed_patient_id(io.BytesIO(data), "salt-a")
  assert first.startswith("dicom-") and dicom_files.PATIENT_ID not in first
  assert first != dicom.hashed_patient_id(data, "salt-b")
  assert first != dicom.hashed_patient_id(
      dicom_files.file_bytes(patient_id="MRN-OTHER"), "salt-a")
  assert dicom.hashed_patient_id(dicom_files.file_bytes(patient_id=None),
                                 "salt-a") is None


def _write(path, data):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "wb") as f:
    f.write(data)


@pytest.fixture(scope="module")
def hospital_export(real_binary_subset, tmp_path_factory):
  """A binary-layout data set as a PACS export writes it: DICOM files of
  real X-rays named by number (some without an extension), two per
  patient, a lateral view, a MONOCHROME1 file, bad files, and one JPEG."""
  root = tmp_path_factory.mktemp("hospital")
  real = sorted(glob.glob(os.path.join(real_binary_subset, "*", "*",
                                       "*.jpeg")))
  patients = {}  # name in the folder -> PatientID
  number = 0
  for split, classes in (("train", 4), ("test", 1)):
    for folder in ("NORMAL", "PNEUMONIA"):
      for p in range(classes):
        patient = f"MRN-{split}-{folder}-{p}"
        for view in ("PA", "AP"):
          number += 1
          name = f"IM{number:04d}" + (".dcm" if number % 2 else "")
          stored = dicom_files.from_image(real[number % len(real)],
                                          size=128)
          photometric = "MONOCHROME2"
          if number == 3:  # stored inverted, as some CR readers write
            stored, photometric = 4095 - stored, "MONOCHROME1"
          _write(root / split / folder / name, dicom_files.file_bytes(
              stored, view=view, patient_id=patient,
              photometric=photometric))
          patients[name] = patient
  lateral = root / "train" / "NORMAL" / "IM9001.dcm"
  _write(lateral, dicom_files.file_bytes(view="LL",
                                         patient_id="MRN-train-NORMAL-0"))
  bad = {name: make() for name, (make, _) in BAD.items()
         if name in ("truncated", "no plugin", "rgb", "malformed")}
  for name, data in bad.items():
    _write(root / "train" / "PNEUMONIA" / name.replace(" ", "_"), data)
  shutil.copy(real[0], root / "train" / "NORMAL" / "IM-0001-0001.jpeg")
  return {"root": str(root), "patients": patients, "lateral": str(lateral),
          "bad": {str(root / "train" / "PNEUMONIA" / n.replace(" ", "_")):
                  BAD[n][1] for n in bad}}


def _ingest(data, tmp_path, task=contract.BINARY, **properties):
  return test_image_example_gen.run_executor(data, str(tmp_path), task,
                                             **properties)


def test_a_hospital_export_is_ingested_by_patient(hospital_export, tmp_path,
                                                  caplog, capfd):
  caplog.set_level("DEBUG")
  examples, counts, quarantined = _ingest(hospital_export["root"], tmp_path)
  reasons = {row["path"]: row["reason"] for row in quarantined}
  assert reasons.pop(hospital_export["lateral"]).startswith("lateral view")
  for path, reason in hospital_export["bad"].items():
    assert reason in reasons.pop(path)
  assert not reasons
  # 20 DICOM images of 10 patients and the JPEG; nothing lost.
  assert counts["ingested"] == 21 and counts["seen"] == 26
  assert counts[image_example_gen.SPLIT_BY_IMAGE] == 0
  assert counts[image_example_gen.DICOM] == 20
  by_split = test_image_example_gen.all_examples(examples)
  split_of_patient = {}
  dicoms = []
  for split, rows in by_split.items():
    for row in rows:
      if row["file_name"].endswith(b".jpeg"):
        assert (row["modality"], row["view_position"], row["bits_stored"],
                row["photometric"]) == (b"unknown", b"unknown", 8,
                                        b"unknown")
        continue
      dicoms.append(row)
      patient = row["patient_id"].decode()
      assert patient.startswith(f"{os.path.basename(hospital_export['root'])}"
                                "/dicom-")
      # Both images of a patient, whatever their names, in one split.
      assert split_of_patient.setdefault(patient, split) == split
      assert row["image"].startswith(contract.IMAGE_FORMATS["PNG"])
      assert (row["modality"], row["bits_stored"], row["manufacturer"]) == (
          b"DX", 12, b"Acme Imaging")
  assert len(dicoms) == 20 and len(split_of_patient) == 10
  assert {r["view_position"] for r in dicoms} == {b"PA", b"AP"}
  assert {r["photometric"] for r in dicoms} == {b"MONOCHROME1",
                                                b"MONOCHROME2"}
  assert {contract.TRAIN, contract.TEST} <= set(split_of_patient.values())
  assert by_split[contract.EVAL]
  # The pipeline's schema gate takes them (the train split: DICOM files of
  # both photometrics and views, and the JPEG).
  statistics = tfdv.generate_statistics_from_tfrecord(
      glob.glob(os.path.join(examples.uri, "Split-train", "*.gz"))[0],
      stats_options=tfdv.StatsOptions(schema=tfdv.load_schema_text(
          schema.schema_path(contract.BINARY))))
  anomalies = tfdv.validate_statistics(statistics, tfdv.load_schema_text(
      schema.schema_path(contract.BINARY)))
  assert not anomalies.anomaly_info, anomalies.anomaly_info
  # Nothing identifying in the examples, the quarantine or the logs.
  written = b"".join(
      gzip.open(p).read() for p in glob.glob(os.path.join(
          examples.uri, "Split-*", "*.gz")))
  written += b"".join(open(p, "rb").read() for p in glob.glob(os.path.join(
      tmp_path, "quarantine", "*")))
  captured = capfd.readouterr()
  logged = (caplog.text + captured.out + captured.err).encode()
  for value in dicom_files.planted_values() + [
      p.encode() for p in hospital_export["patients"].values()]:
    assert value not in written and value not in logged, value


def test_views_choose_what_is_taken(hospital_export, tmp_path):
  _, counts, quarantined = _ingest(hospital_export["root"], tmp_path,
                                   views="pa,ap,ll,unknown")
  assert counts["ingested"] == 22
  assert hospital_export["lateral"] not in {r["path"] for r in quarantined}
  _, counts, quarantined = _ingest(hospital_export["root"], tmp_path / "pa",
                                   views="pa")
  reasons = {r["path"]: r["reason"] for r in quarantined}
  assert counts["ingested"] == 10
  assert reasons[hospital_export["lateral"]].startswith("lateral view")
  jpeg = os.path.join(hospital_export["root"], "train", "NORMAL",
                      "IM-0001-0001.jpeg")
  assert reasons[jpeg].startswith("view position unknown")


def test_the_salt_names_the_patients(hospital_export, tmp_path):
  def patients(out, **salt):
    examples, _, _ = _ingest(hospital_export["root"], out, **salt)
    return {row["file_name"]: row["patient_id"]
            for rows in test_image_example_gen.all_examples(examples).values()
            for row in rows if not row["file_name"].endswith(b".jpeg")}
  default = patients(tmp_path / "a")
  salted = patients(tmp_path / "b", patient_salt="a secret")
  assert default.keys() == salted.keys()
  assert not set(default.values()) & set(salted.values())
  assert salted == patients(tmp_path / "c", patient_salt="a secret")


def test_a_3class_csv_may_name_dicom_files(tmp_path):
  root = tmp_path / "data"
  for split, n in (("train", 9), ("test", 3)):
    rows = ["file_name,class_id"]
    for i in range(n):
      name = f"{split}{i}.dcm"
      _write(root / f"{split}_images" / name, dicom_files.file_bytes(
          dicom_files.ramp(top=1000 + 300 * i), patient_id=f"P{split}{i}"))
      rows.append(f"{name},{i % 3}")
    (root / f"labels_{split}.csv").write_text("\n".join(rows) + "\n")
  examples, counts, quarantined = _ingest(str(root), tmp_path / "out",
                                          task=contract.MULTICLASS)
  assert not quarantined and counts["ingested"] == 12
  rows = [r for split in test_image_example_gen.all_examples(
      examples).values() for r in split]
  assert all(b"/dicom-" in r["patient_id"] for r in rows)
  assert sorted(r["label"] for r in rows) == [0] * 4 + [1] * 4 + [2] * 4


class _RecordingStub:
  """Stands in for the server: keeps each PredictRequest."""

  def __init__(self):
    self.requests = []

  def Predict(self, request, timeout):  # pylint: disable=invalid-name
    del timeout
    self.requests.append(request)
    return predict_pb2.PredictResponse()


def test_training_and_serving_see_the_same_pixels(hospital_export, tmp_path):
  examples, _, _ = _ingest(hospital_export["root"], tmp_path)
  rows = {r["file_name"].decode(): r
          for split in test_image_example_gen.all_examples(examples).values()
          for r in split}
  size = test_transform.SIZE
  transform_output = exported.transform_output(size)
  for name in ("IM0003.dcm", "IM0004"):  # MONOCHROME1; no extension
    path, = glob.glob(os.path.join(hospital_export["root"], "*", "*", name))
    with open(path, "rb") as f:
      data = f.read()
    # The client sends what ingestion kept.
    connection = client.Client("localhost:1")
    connection._predictions = stub = _RecordingStub()  # pylint: disable=protected-access
    connection.predict("model", [data])
    sent = tf.make_ndarray(stub.requests[0].inputs[contract.IMAGES_INPUT])[0]
    assert sent == rows[name]["image"]
    # Transform over the ingested example, as training runs it, and the
    # Transform graph as the serving signatures run it, on the sent bytes.
    trained_on = test_transform.transform_pixels([rows[name]["image"]],
                                                 tmp_path / name)[0]
    served = pixels_lib.image_from_transformed(
        transform_output.transform_features_layer()(
            {contract.IMAGE_KEY: tf.constant([[sent]])})[contract.PIXELS_KEY],
        size).numpy()[0]
    np.testing.assert_array_equal(trained_on, served)
    # Both are the DICOM's displayed pixels, read at 16 bits.
    shown = pixels_of(data).astype(np.float32) * (255.0 / 65535.0)
    reference = tf.image.resize(shown[..., None], [size, size],
                                antialias=True).numpy()[..., 0]
    assert np.abs(served[..., 0] - np.round(reference)).max() <= 1
    assert served[..., 0].std() > 10


def test_the_client_refuses_a_bad_dicom_file_before_calling():
  connection = client.Client("localhost:1")
  connection._predictions = stub = _RecordingStub()  # pylint: disable=protected-access
  with pytest.raises(client.BadImageError) as raised:
    connection.predict("model", [dicom_files.file_bytes(), _truncated()])
  assert "image 1" in str(raised.value) and not stub.requests
