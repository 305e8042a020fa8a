"""DICOM files -> the 16-bit grayscale PNG the models take, and what the
examples keep of their header.

One code path for ingestion (components/image_examples.py) and for the
clients (serving/client.py, `cxr predict`), so training and serving see the
same pixels. pydicom reads the file and its plugins (pylibjpeg with
libjpeg, openjpeg and RLE) decode compressed transfer syntaxes; its
`apply_modality_lut` and `apply_voi_lut` do the look-ups and windowing:

1. the modality LUT (or rescale slope/intercept);
2. the VOI LUT, else the first window (centre/width), else nothing: the
   full range of the stored values;
3. the result stretched to 0..65535 by its own minimum and maximum (as
   Google's CXR Foundation does before its 16-bit PNG), so a 16-bit PNG
   always uses its 16 bits and Transform scales it by them
   (serving/export/pixels.py);
4. MONOCHROME1 (white is 0) inverted, so that bone is bright in every
   image.

A file's PatientID leaves this module only hashed with a salt
(`hashed_patient_id`); no other identifying attribute (names, dates,
accession number, institution) is read out at all. Every failure is a
DicomError whose message names the problem, never a value of the file.
"""

import dataclasses
import hashlib
import io
from typing import BinaryIO, Optional, Union

from schema import contract

# A DICOM Part 10 file: a 128-byte preamble, then these four bytes.
_PREAMBLE_BYTES = 128
DICOM_MAGIC = b"DICM"
HEADER_BYTES = _PREAMBLE_BYTES + len(DICOM_MAGIC)  # what is_dicom needs
# File names read as DICOM candidates during listing (besides files without
# an extension, as PACS exports often write them).
DICOM_EXTENSIONS = (".dcm", ".dicom")
_MONOCHROME1, _MONOCHROME2 = "MONOCHROME1", "MONOCHROME2"
# ViewPosition values (DICOM PS3.3 C.8.11.5) -> the view_position feature.
_VIEWS = {"PA": contract.VIEW_PA, "AP": contract.VIEW_AP,
          "LL": contract.VIEW_LATERAL, "RL": contract.VIEW_LATERAL,
          "LATERAL": contract.VIEW_LATERAL, "LAT": contract.VIEW_LATERAL}
_TEXT_LIMIT = 64  # characters kept of modality and manufacturer
_HASH_HEX = 16  # 64 bits of the salted hash: no collision among patients


class DicomError(ValueError):
  """The DICOM file cannot be used; the message says why."""


# Not a file's fault: never turned into a DicomError.
_INTERRUPTS = (KeyboardInterrupt, SystemExit, GeneratorExit)


@dataclasses.dataclass(frozen=True)
class Attributes:
  """What an example keeps of an image's header (schema/<task>/schema.pbtxt).

  The defaults are those of a JPEG or PNG file, which has no such header.
  """
  modality: str = contract.UNKNOWN
  view_position: str = contract.UNKNOWN
  bits_stored: int = 8
  photometric: str = contract.UNKNOWN
  manufacturer: str = contract.UNKNOWN


@dataclasses.dataclass(frozen=True)
class DicomImage:
  png: bytes  # 16-bit grayscale PNG of the displayed pixels
  attributes: Attributes


def is_dicom(data: bytes) -> bool:
  """Whether bytes (a whole file, or its first 132 bytes) are DICOM Part 10."""
  return data[_PREAMBLE_BYTES:_PREAMBLE_BYTES + len(DICOM_MAGIC)] == (
      DICOM_MAGIC)


def is_candidate(file_name: str) -> bool:
  """Whether a file's name lets it be DICOM: a DICOM extension, or none."""
  base = file_name.rsplit("/", 1)[-1]
  return "." not in base or base.lower().endswith(DICOM_EXTENSIONS)


def _pydicom():
  # pylint: disable-next=g-import-not-at-top
  import pydicom
  # Validation warnings quote the offending value, which may be a name or
  # an id; nothing of a file's values reaches a log.
  pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
  return pydicom


def _text(dataset, keyword: str) -> str:
  value = str(dataset.get(keyword, "") or "").strip()
  return value[:_TEXT_LIMIT] if value else contract.UNKNOWN


def view_position(dataset) -> str:
  """The view_position feature of a dataset: PA, AP, LL or unknown."""
  return _VIEWS.get(str(dataset.get("ViewPosition", "") or "").strip()
                    .upper(), contract.UNKNOWN)


def _read(source: Union[bytes, BinaryIO], **kwargs):
  pydicom = _pydicom()
  fp = io.BytesIO(source) if isinstance(source, bytes) else source
  try:
    return pydicom.dcmread(fp, **kwargs)
  except Exception as e:  # pylint: disable=broad-except
    raise DicomError(f"unreadable DICOM ({type(e).__name__}: truncated or "
                     "corrupt header)") from e


def _check_image(dataset) -> None:
  """Raises DicomError unless the dataset is one grayscale frame."""
  if "PixelData" not in dataset:
    sop = dataset.get("SOPClassUID")
    kind = getattr(sop, "name", None) or "unknown SOP class"
    raise DicomError(f"no pixel data ({kind}): not an image")
  frames = int(dataset.get("NumberOfFrames", 1) or 1)
  if frames > 1:
    raise DicomError(f"multi-frame image ({frames} frames); one frame per "
                     "file is taken")
  samples = int(dataset.get("SamplesPerPixel", 1) or 1)
  photometric = str(dataset.get("PhotometricInterpretation", "")).strip()
  if samples != 1 or photometric not in (_MONOCHROME1, _MONOCHROME2):
    raise DicomError(f"colour image ({photometric or 'no photometric'}, "
                     f"{samples} samples per pixel) where grayscale "
                     "(MONOCHROME1/2) is expected")
  bits = int(dataset.get("BitsStored", 0) or 0)
  if not 1 <= bits <= 16:
    raise DicomError(f"{bits} bits stored: 1 to 16 are taken")
  rows, columns = int(dataset.get("Rows", 0)), int(dataset.get("Columns", 0))
  if rows * columns > contract.MAX_IMAGE_PIXELS:
    raise DicomError(f"DICOM of {columns}x{rows}: more than "
                     f"{contract.MAX_IMAGE_PIXELS} pixels")


def _pixels(dataset):
  """The decoded stored pixels; DicomError when no plugin decodes them."""
  pydicom = _pydicom()
  try:
    return dataset.pixel_array
  # pylint: disable-next=broad-exception-caught
  except BaseException as e:
    # Rust decoders (pylibjpeg-rle) raise a PanicException, which is a
    # BaseException, on some corrupt data.
    if isinstance(e, _INTERRUPTS):
      raise
    syntax = getattr(getattr(dataset, "file_meta", None),
                     "TransferSyntaxUID", None)
    name = getattr(syntax, "name", None) or str(syntax or "unknown")
    try:
      decodable = pydicom.pixels.get_decoder(syntax).is_available
    except Exception:  # pylint: disable=broad-except
      decodable = False  # pydicom has no decoder for it at all
    if not decodable:
      raise DicomError(f"cannot decode transfer syntax {name}: no installed "
                       "pydicom plugin supports it") from e
    raise DicomError(f"corrupt or truncated pixel data ({name}): "
                     f"{type(e).__name__}") from e


def read(data: bytes) -> DicomImage:
  """A DICOM file's bytes -> its displayed pixels as a 16-bit PNG, and its
  attributes. DicomError says why a file cannot be used."""
  try:
    return _displayed(data)
  except DicomError:
    raise
  # pylint: disable-next=broad-exception-caught
  except BaseException as e:
    if isinstance(e, _INTERRUPTS):
      raise
    # pydicom parses an attribute when it is first read: a malformed one
    # (a Rows of "abc") fails wherever that is.
    raise DicomError(f"malformed DICOM attribute ({type(e).__name__})"
                     ) from e


def _displayed(data: bytes) -> DicomImage:
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  pydicom = _pydicom()
  dataset = _read(data)
  _check_image(dataset)
  stored = _pixels(dataset)
  try:
    shown = pydicom.pixels.apply_voi_lut(
        pydicom.pixels.apply_modality_lut(stored, dataset), dataset, index=0)
  except Exception as e:  # pylint: disable=broad-except
    raise DicomError(f"invalid modality or VOI LUT: {type(e).__name__}"
                     ) from e
  shown = np.asarray(shown, np.float64)
  low, high = float(shown.min()), float(shown.max())
  if not high > low:
    raise DicomError("every pixel has the same value after windowing: no "
                     "image to see")
  scaled = np.round((shown - low) * (65535.0 / (high - low)))
  photometric = str(dataset.PhotometricInterpretation).strip()
  if photometric == _MONOCHROME1:
    scaled = 65535.0 - scaled
  encoded = io.BytesIO()
  # zlib's fastest level: encoding is most of the conversion's time, and
  # the examples are gzipped again when written (BENCHMARKS.md).
  Image.fromarray(scaled.astype(np.uint16)).save(encoded, format="PNG",
                                                 compress_level=1)
  return DicomImage(encoded.getvalue(), Attributes(
      modality=_text(dataset, "Modality"),
      view_position=view_position(dataset),
      bits_stored=int(dataset.get("BitsStored", 0) or 0),
      photometric=photometric,
      manufacturer=_text(dataset, "Manufacturer")))


def hashed_patient_id(source: Union[bytes, BinaryIO], salt: str
                      ) -> Optional[str]:
  """The file's PatientID hashed with salt (sha256, hex), or None when the
  file has none. Reads the header only."""
  dataset = _read(source, stop_before_pixels=True,
                  specific_tags=["PatientID"])
  clear = str(dataset.get("PatientID", "") or "").strip()
  if not clear:
    return None
  digest = hashlib.sha256(f"{salt}\0{clear}".encode("utf-8"))
  return "dicom-" + digest.hexdigest()[:_HASH_HEX]


def as_image(data: bytes) -> bytes:
  """Image bytes as the models take them: a DICOM file as its 16-bit PNG,
  anything else as it is (the signatures judge it)."""
  return read(data).png if is_dicom(data) else data
