"""An image is sized by its header before it is decoded, in ingestion and
in the exported graph (which tensorflow_model_server runs too)."""

import io
import struct
import zlib

from PIL import Image
import pytest
import tensorflow as tf

from components import image_examples
from schema import contract
from serving.export import pixels

HUGE = 20_000  # 400 million pixels declared


def _png(width=64, height=48) -> bytes:
  buf = io.BytesIO()
  Image.new("L", (width, height), 128).save(buf, format="PNG")
  return buf.getvalue()


def _jpeg(width=64, height=48) -> bytes:
  buf = io.BytesIO()
  Image.new("L", (width, height), 128).save(buf, format="JPEG")
  return buf.getvalue()


def _png_declaring(width: int, height: int) -> bytes:
  """A small PNG whose IHDR chunk (CRC fixed) declares width x height."""
  data = bytearray(_png())
  data[16:24] = struct.pack(">II", width, height)
  data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
  return bytes(data)


def _jpeg_declaring(width: int, height: int) -> bytes:
  """A small JPEG whose frame header (SOF0) declares width x height."""
  data = bytearray(_jpeg())
  sof = data.index(b"\xff\xc0")
  data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
  return bytes(data)


def test_headers_are_read_without_decoding():
  assert int(pixels.declared_pixels(tf.constant(_png(64, 48)))) == 64 * 48
  assert int(pixels.declared_pixels(tf.constant(_jpeg(64, 48)))) == 64 * 48
  assert int(pixels.declared_pixels(tf.constant(
      _png_declaring(HUGE, HUGE)))) == HUGE * HUGE
  assert int(pixels.declared_pixels(tf.constant(
      _jpeg_declaring(HUGE, HUGE)))) == HUGE * HUGE


@pytest.mark.parametrize("bomb", [_png_declaring, _jpeg_declaring])
def test_the_graph_refuses_an_image_above_the_limit_before_decoding(bomb):
  assert HUGE * HUGE > contract.MAX_IMAGE_PIXELS
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=f"larger than {contract.MAX_IMAGE_PIXELS}"):
    pixels.decode_and_resize(tf.constant(bomb(HUGE, HUGE)), 32)
  # Below the limit the check lets the same file through to the decoder,
  # which refuses the PNG and pads the JPEG's missing rows.
  try:
    pixels.decode_and_resize(tf.constant(bomb(5000, 5000)), 32)
  except tf.errors.InvalidArgumentError as e:
    assert "larger than" not in str(e)


def test_a_truncated_png_still_gets_the_decoders_message():
  with pytest.raises(tf.errors.InvalidArgumentError) as raised:
    pixels.decode_and_resize(tf.constant(_png()[:20]), 32)
  assert "larger than" not in str(raised.value)


@pytest.mark.parametrize("bomb", [_png_declaring, _jpeg_declaring])
# 100 MP is under Pillow's own refusal (2 x 89 MP), 400 MP above it.
@pytest.mark.parametrize("side", [10_000, HUGE])
def test_ingestion_quarantines_an_image_above_the_limit(bomb, side):
  with pytest.raises(image_examples.BadImage,
                     match=f"more than {contract.MAX_IMAGE_PIXELS} pixels"):
    image_examples.check_image(bomb(side, side))
  assert image_examples.check_image(_png(64, 48)) == (48, 64, 1)
