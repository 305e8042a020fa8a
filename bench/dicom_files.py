"""DICOM files for the tests and benchmarks, built with pydicom from real
X-rays or a synthetic ramp.

Each carries planted identifying values (PLANTED) that must never reach an
artifact, a log or a report (tests/test_dicom.py).
"""

import copy
import io
from typing import Optional, Tuple

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (ExplicitVRLittleEndian, JPEG2000Lossless,
                         RLELossless, generate_uid)

# Computed Radiography Image Storage, Digital X-Ray Image Storage (for
# presentation), and a non-image SOP class (Basic Text SR).
CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
DX_IMAGE = "1.2.840.10008.5.1.4.1.1.1.1"
TEXT_REPORT = "1.2.840.10008.5.1.4.1.1.88.11"
PATIENT_ID = "MRN-PLANTED-4711"
PLANTED = {
    "PatientName": "Planted^Jane^Q",
    "PatientBirthDate": "19010203",
    "AccessionNumber": "ACC-PLANTED-0099",
    "InstitutionName": "Planted General Hospital",
    "ReferringPhysicianName": "Planted^Referrer",
    "StudyID": "STUDY-PLANTED-7",
}


def ramp(shape=(96, 80), top=4095) -> np.ndarray:
  """A diagonal ramp from 0 to top, uint16."""
  rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
  values = (rows / (shape[0] - 1) + cols / (shape[1] - 1)) / 2 * top
  return np.round(values).astype(np.uint16)


def from_image(path: str, bits: int = 12, size: Optional[int] = 256
               ) -> np.ndarray:
  """A real X-ray (JPEG/PNG) as `bits`-bit stored values, uint16: its 8-bit
  gray levels spread over the range, as a detector's would be."""
  with Image.open(path) as img:
    img = img.convert("L")
    if size:
      img.thumbnail((size, size))
    gray = np.asarray(img, np.float64)
  return np.round(gray / 255.0 * (2**bits - 1)).astype(np.uint16)


def dataset(pixels: np.ndarray, bits_stored: int = 12,
            photometric: str = "MONOCHROME2",
            window: Optional[Tuple[float, float]] = None,
            voi_lut: Optional[np.ndarray] = None,
            rescale: Optional[Tuple[float, float]] = None,
            view: Optional[str] = "PA", patient_id: Optional[str] = PATIENT_ID,
            sop_class: str = DX_IMAGE, modality: str = "DX",
            manufacturer: str = "Acme Imaging") -> Dataset:
  """A one-frame grayscale image dataset with the planted values.

  window: (centre, width). voi_lut: a VOI LUT's output values, indexed by
  the stored value (first mapped 0). rescale: (slope, intercept).
  """
  meta = FileMetaDataset()
  meta.MediaStorageSOPClassUID = sop_class
  meta.MediaStorageSOPInstanceUID = generate_uid()
  meta.TransferSyntaxUID = ExplicitVRLittleEndian
  ds = Dataset()
  ds.file_meta = meta
  ds.SOPClassUID = sop_class
  ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
  ds.StudyInstanceUID = generate_uid()
  ds.SeriesInstanceUID = generate_uid()
  ds.Modality = modality
  ds.Manufacturer = manufacturer
  if patient_id is not None:
    ds.PatientID = patient_id
  for keyword, value in PLANTED.items():
    setattr(ds, keyword, value)
  if view is not None:
    ds.ViewPosition = view
  ds.Rows, ds.Columns = pixels.shape
  ds.SamplesPerPixel = 1
  ds.PhotometricInterpretation = photometric
  ds.BitsAllocated = 16
  ds.BitsStored = bits_stored
  ds.HighBit = bits_stored - 1
  ds.PixelRepresentation = 0
  if window is not None:
    ds.WindowCenter, ds.WindowWidth = window
  if voi_lut is not None:
    item = Dataset()
    item.LUTDescriptor = [len(voi_lut), 0, 16]
    item.add_new(0x00283006, "US", [int(v) for v in voi_lut])  # LUTData
    ds.VOILUTSequence = [item]
  if rescale is not None:
    ds.RescaleSlope, ds.RescaleIntercept = rescale
    ds.RescaleType = "US"
  ds.PixelData = pixels.astype(np.uint16).tobytes()
  return ds


def encode(ds: Dataset, syntax: Optional[str] = None) -> bytes:
  """The dataset as a DICOM Part 10 file, compressed with `syntax` (RLE
  Lossless or JPEG 2000 Lossless, encoded by pydicom's plugins)."""
  ds = copy.deepcopy(ds)
  if syntax in (RLELossless, JPEG2000Lossless):
    ds.compress(syntax)
  elif syntax is not None:
    raise ValueError(f"no encoder here for {syntax}")
  buf = io.BytesIO()
  ds.save_as(buf, enforce_file_format=True)
  return buf.getvalue()


def file_bytes(pixels: Optional[np.ndarray] = None, syntax=None,
               **kwargs) -> bytes:
  """encode(dataset(pixels, **kwargs), syntax); a ramp by default."""
  return encode(dataset(ramp() if pixels is None else pixels, **kwargs),
                syntax)


def planted_values():
  """Every planted identifying value, as bytes to search for."""
  return [v.encode() for v in (PATIENT_ID, *PLANTED.values())]
