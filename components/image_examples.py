"""Checks one image file and turns it into a tf.Example.

A DICOM file is first turned into the 16-bit PNG of its displayed pixels
(serving/dicom.py), which is what the example keeps and what is checked.
The check uses two decoders on purpose: Pillow's `load()` is strict about
truncated files (TensorFlow's JPEG decoder pads some of them with grey and
says nothing), and TensorFlow's `decode_image` is the decoder Transform will
run, so a file that passes here is known to decode there.
"""

import io
from typing import Optional, Sequence, Tuple

from PIL import Image

from components import image_layouts
from schema import contract
from serving import dicom

# Mode -> channels of the file as stored (grayscale vs RGB is a known
# shortcut in Kermany data, so it is kept for slicing).
_MODE_CHANNELS = {"1": 1, "L": 1, "I;16": 1, "I": 1, "LA": 2, "P": 3,
                  "RGB": 3, "YCbCr": 3, "CMYK": 4, "RGBA": 4}


class BadImage(ValueError):
  """The file cannot be ingested; the message says why."""


def sniff_format(data: bytes) -> Optional[str]:
  for name, magic in contract.IMAGE_FORMATS.items():
    if data.startswith(magic):
      return name
  return None


def check_image(data: bytes) -> Tuple[int, int, int]:
  """Returns (height, width, channels) of encoded JPEG/PNG bytes.

  Raises BadImage with a reason for empty, non-image, unsupported, corrupt,
  truncated or undecodable input.
  """
  if not data:
    raise BadImage("empty file")
  fmt = sniff_format(data)
  if fmt is None:
    raise BadImage("not a JPEG or PNG file (unknown or unsupported format)")
  try:
    with Image.open(io.BytesIO(data)) as img:
      width, height = img.size  # from the header, before decoding
      if width * height > contract.MAX_IMAGE_PIXELS:
        raise BadImage(f"{fmt} of {width}x{height}: more than "
                       f"{contract.MAX_IMAGE_PIXELS} pixels")
      img.load()  # Raises on truncation (LOAD_TRUNCATED_IMAGES is off).
      channels = _MODE_CHANNELS.get(img.mode)
  except BadImage:
    raise
  except Image.DecompressionBombError as e:
    # Pillow's own, at twice its limit, before our header check can run.
    raise BadImage(f"{fmt} of more than {contract.MAX_IMAGE_PIXELS} pixels: "
                   f"{e}") from e
  except Exception as e:  # pylint: disable=broad-except
    raise BadImage(f"corrupt or truncated {fmt}: {e}") from e
  if channels is None:
    raise BadImage(f"unsupported {fmt} pixel mode {img.mode}")
  if width < 1 or height < 1:
    raise BadImage(f"{fmt} has no pixels ({width}x{height})")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    decoded = tf.io.decode_image(data, channels=3, expand_animations=False)
  except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
    raise BadImage(f"TensorFlow cannot decode this {fmt}: {e.message}") from e
  if tuple(decoded.shape[:2]) != (height, width):
    raise BadImage(f"decoders disagree on the size of this {fmt}")
  return height, width, channels


def as_image(data: bytes) -> Tuple[bytes, dicom.Attributes]:
  """A file's bytes -> (the image bytes to check and keep, its attributes).

  A DICOM file becomes its 16-bit PNG (BadImage when it cannot be used); a
  JPEG or PNG stays as it is, with the attributes of a file without a DICOM
  header.
  """
  if not dicom.is_dicom(data):
    return data, dicom.Attributes()
  try:
    image = dicom.read(data)
  except dicom.DicomError as e:
    raise BadImage(str(e)) from e
  return image.png, image.attributes


def check_view(attributes: dicom.Attributes, views: Sequence[str]) -> None:
  """BadImage unless the image's view position is one of `views`."""
  view = attributes.view_position
  if view in views:
    return
  what = ("lateral view" if view == contract.VIEW_LATERAL
          else f"view position {view}")
  raise BadImage(f"{what}: the models are frontal; --views "
                 f"{','.join(sorted(set(views) | {view})).lower()} "
                 "takes it")


def bits_in_use(data: bytes) -> Optional[int]:
  """For a 16-bit PNG, the bits its brightest sample needs (at least 8),
  which Transform and the served models scale it by; None otherwise."""
  # Most files are JPEGs: answered without TensorFlow's eager ops, which
  # cost ingestion more per image than reading the file.
  if sniff_format(data) != "PNG":
    return None
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  # pylint: disable-next=g-import-not-at-top
  from serving.export import pixels
  encoded = tf.constant(data)
  if int(pixels.png_bit_depth(encoded)) != 16:
    return None
  return int(pixels.significant_bits(
      tf.io.decode_png(encoded, channels=0, dtype=tf.uint16)))


# Buckets of an image's longer side, for sliced evaluation: Kermany's images
# run from about 400 to 2,900 px, and size can travel with the source
# hospital or scanner, a shortcut a model may learn.
SIZE_BUCKETS = ((1000, "<1000px"), (2000, "1000-1999px"), (None, ">=2000px"))


def size_bucket(height: int, width: int) -> str:
  longer = max(height, width)
  return next(name for limit, name in SIZE_BUCKETS
              if limit is None or longer < limit)


def make_example(record: image_layouts.ImageRecord, data: bytes, task: str,
                 shape: Tuple[int, int, int],
                 attributes: dicom.Attributes = dicom.Attributes()):
  """The tf.Example for one checked image (see schema/ for the features).

  Its source is its data set's name in the run, and its patient_id is
  namespaced by it (`<source>/<id>`): one id in two data sets is two
  patients.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  label = image_layouts.label_for_task(record.diagnosis, task)
  label_name = contract.CLASS_NAMES[task][label]

  def _bytes(v):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v]))

  def _int(v):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[v]))

  height, width, channels = shape
  return tf.train.Example(features=tf.train.Features(feature={
      contract.IMAGE_KEY: _bytes(data),
      contract.LABEL_KEY: _int(label),
      contract.LABEL_NAME_KEY: _bytes(label_name.encode()),
      contract.DIAGNOSIS_KEY: _bytes(record.diagnosis.encode()),
      contract.SOURCE_KEY: _bytes(record.source.encode()),
      contract.FILE_NAME_KEY: _bytes(record.file_name.encode()),
      contract.PATIENT_ID_KEY: _bytes(record.patient_key.encode()),
      contract.HEIGHT_KEY: _int(height),
      contract.WIDTH_KEY: _int(width),
      contract.CHANNELS_KEY: _int(channels),
      contract.SIZE_BUCKET_KEY: _bytes(size_bucket(height, width).encode()),
      contract.MODALITY_KEY: _bytes(attributes.modality.encode()),
      contract.VIEW_POSITION_KEY: _bytes(attributes.view_position.encode()),
      contract.BITS_STORED_KEY: _int(attributes.bits_stored),
      contract.PHOTOMETRIC_KEY: _bytes(attributes.photometric.encode()),
      contract.MANUFACTURER_KEY: _bytes(attributes.manufacturer.encode()),
  }))
