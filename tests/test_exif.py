"""A JPEG's EXIF orientation is applied in the graph (Transform and the
served models), as Pillow's ImageOps.exif_transpose applies it."""

import io
import struct

import numpy as np
from PIL import Image
from PIL import ImageOps
import pytest
import tensorflow as tf

from serving.export import pixels

# Asymmetric, so every one of the eight orientations looks different.
BASE = np.zeros((40, 60), np.uint8)
BASE[:10, :20] = 255
BASE[30:, 50:] = 128


def _jpeg(orientation=None) -> bytes:
  buf = io.BytesIO()
  extra = {}
  if orientation is not None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    extra["exif"] = exif.tobytes()
  Image.fromarray(BASE).save(buf, format="JPEG", quality=95, **extra)
  return buf.getvalue()


def _big_endian_jpeg(orientation: int) -> bytes:
  """An APP1 segment written by hand in Motorola (MM) byte order."""
  tiff = (b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">H", 1)
          + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
          + struct.pack(">I", 0))
  body = b"Exif\x00\x00" + tiff
  app1 = b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body
  plain = _jpeg()
  return plain[:2] + app1 + plain[2:]


def _upright(data: bytes) -> np.ndarray:
  image = tf.io.decode_jpeg(data, channels=1)
  return pixels.orient(image, pixels.exif_orientation(tf.constant(data))
                       ).numpy()[..., 0]


@pytest.mark.parametrize("orientation", range(1, 9))
def test_each_orientation_as_pillow_turns_it(orientation):
  data = _jpeg(orientation)
  assert int(pixels.exif_orientation(tf.constant(data))) == orientation
  reference = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(data))))
  ours = _upright(data)
  assert ours.shape == reference.shape
  # The two JPEG decoders round a little differently.
  assert np.abs(ours.astype(int) - reference.astype(int)).mean() < 2


def test_big_endian_exif_and_no_exif():
  assert int(pixels.exif_orientation(tf.constant(_big_endian_jpeg(6)))) == 6
  assert int(pixels.exif_orientation(tf.constant(_jpeg()))) == 1
  png = io.BytesIO()
  Image.fromarray(BASE).save(png, format="PNG")
  assert int(pixels.exif_orientation(tf.constant(png.getvalue()))) == 1


def test_the_models_see_the_upright_image():
  turned = pixels.decode_and_resize(tf.constant(_jpeg(6)), 32).numpy()
  upright = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(
      _jpeg(6)))))
  expected = tf.image.resize(np.repeat(upright[..., None], 3, -1), [32, 32],
                             antialias=True).numpy()
  assert np.abs(turned.astype(float) - expected).mean() < 3
