"""The pixels a model sees, as Transform stores them and every signature
rebuilds them.

Decodes JPEG/PNG (a 16-bit PNG scaled by the bits it uses), makes
grayscale 3-channel, resizes to `image_size` (squashed to a square, as
the thesis's Keras loader did, or scaled to fit with black bars) and keeps
uint8 pixels: 4x smaller than float32. tf.Example has no uint8 type, so the
pixels travel as one serialized uint8 tensor per image
(`tf.io.serialize_tensor`); `image_from_transformed` is the inverse, used
by the Trainer's input pipeline and by every serving signature.
"""

import tensorflow as tf

from schema import contract
from schema import settings


def _taken_format(encoded: tf.Tensor) -> tf.Tensor:
  """Whether the bytes start as a JPEG or PNG file does (contract)."""
  return tf.reduce_any([
      tf.equal(tf.strings.substr(encoded, 0, len(magic)), magic)
      for magic in contract.IMAGE_FORMATS.values()])


_HEADER_BYTES = 32  # a PNG's signature and IHDR chunk fit in it


def _header_bytes(encoded: tf.Tensor, start: int, length: int) -> tf.Tensor:
  """Bytes [start, start + length) of a file as uint8, zeros past its end
  (substr refuses a start beyond the end; the decoder later says what is
  wrong with so short a file)."""
  padded = tf.strings.join([encoded, tf.constant(b"\0" * _HEADER_BYTES)])
  return tf.io.decode_raw(tf.strings.substr(padded, start, length), tf.uint8)


def _png_pixels(encoded: tf.Tensor) -> tf.Tensor:
  """Width x height from a PNG's IHDR chunk (big-endian, bytes 16-23); 0
  for a file too short to hold one."""
  header = tf.cast(_header_bytes(encoded, 16, 8), tf.int64)
  weights = tf.constant([2**24, 2**16, 2**8, 1], tf.int64)
  return (tf.reduce_sum(header[:4] * weights)
          * tf.reduce_sum(header[4:] * weights))


def _jpeg_pixels(encoded: tf.Tensor) -> tf.Tensor:
  shape = tf.cast(tf.image.extract_jpeg_shape(encoded), tf.int64)
  return shape[0] * shape[1]


def declared_pixels(encoded: tf.Tensor) -> tf.Tensor:
  """Pixels a JPEG or PNG declares in its header, read without decoding."""
  png_magic = contract.IMAGE_FORMATS["PNG"]
  return tf.cond(
      tf.equal(tf.strings.substr(encoded, 0, len(png_magic)), png_magic),
      lambda: _png_pixels(encoded), lambda: _jpeg_pixels(encoded))


def png_bit_depth(encoded: tf.Tensor) -> tf.Tensor:
  """Bits per sample a PNG's IHDR declares (byte 24); 0 for a JPEG or a
  file too short to hold one."""
  png_magic = contract.IMAGE_FORMATS["PNG"]
  depth = tf.cast(_header_bytes(encoded, 24, 1)[0], tf.int32)
  return tf.where(
      tf.equal(tf.strings.substr(encoded, 0, len(png_magic)), png_magic),
      depth, 0)


def significant_bits(image: tf.Tensor) -> tf.Tensor:
  """Bits the brightest sample of a 16-bit image needs, at least 8.

  Detectors write 10-14-bit data into 16-bit PNGs; read as 16 bits such an
  image is almost black (12-bit white, 4095, is 16 of 255).
  """
  brightest = tf.cast(tf.reduce_max(image), tf.float32)
  bits = tf.math.ceil(tf.math.log(brightest + 1.0) / tf.math.log(2.0))
  return tf.cast(tf.clip_by_value(bits, 8.0, 16.0), tf.int32)


_EXIF_MARK = "Exif\x00\x00"  # opens a JPEG's APP1 segment with EXIF
_EXIF_BYTES = 4096  # IFD0 and its entries lie near the TIFF header
_ORIENTATION_TAG = 0x0112
_MAX_IFD_ENTRIES = 64


def exif_orientation(encoded: tf.Tensor) -> tf.Tensor:
  """The EXIF orientation of a JPEG (1-8), 1 when it has none.

  Read in the graph, as TF Serving runs it: TensorFlow's JPEG decoder
  ignores EXIF, and a phone photo of a film or a scanner's output may be
  stored sideways with the tag saying so. Walks the TIFF header's IFD0
  (byte order II or MM) for tag 0x0112.
  """
  parts = tf.strings.split(tf.strings.substr(encoded, 0, 65536),
                           sep=_EXIF_MARK, maxsplit=1)
  tiff = tf.cond(tf.size(parts) > 1, lambda: parts[-1], lambda: "")
  padded = tf.strings.join([tiff, tf.constant(b"\0" * _EXIF_BYTES)])
  data = tf.cast(tf.io.decode_raw(tf.strings.substr(padded, 0, _EXIF_BYTES),
                                  tf.uint8), tf.int32)
  little = tf.equal(data[0], ord("I"))

  def number(position, size):
    position = tf.clip_by_value(position, 0, _EXIF_BYTES - size)
    raw = tf.gather(data, position + tf.range(size))
    raw = tf.where(little, tf.reverse(raw, [0]), raw)
    return tf.reduce_sum(raw * tf.bitwise.left_shift(
        1, 8 * tf.range(size - 1, -1, -1)))

  ifd = number(4, 4)
  count = tf.minimum(number(ifd, 2), _MAX_IFD_ENTRIES)
  entries = ifd + 2 + 12 * tf.range(count)
  tags = tf.map_fn(lambda e: number(e, 2), entries)
  found = tf.where(tf.equal(tags, _ORIENTATION_TAG))
  orientation = tf.cond(tf.size(found) > 0,
                        lambda: number(entries[found[0][0]] + 8, 2),
                        lambda: tf.constant(1))
  jpeg_magic = contract.IMAGE_FORMATS["JPEG"]
  valid = ((orientation >= 1) & (orientation <= 8)
           & tf.equal(tf.size(parts), 2)
           & tf.equal(tf.strings.substr(encoded, 0, len(jpeg_magic)),
                      jpeg_magic))
  return tf.where(valid, orientation, 1)


def orient(image: tf.Tensor, orientation: tf.Tensor) -> tf.Tensor:
  """An [h, w, c] image turned upright by its EXIF orientation (1-8), as
  Pillow's ImageOps.exif_transpose turns it."""
  transposed = lambda: tf.transpose(image, [1, 0, 2])  # noqa: E731
  return tf.switch_case(tf.convert_to_tensor(orientation) - 1, [
      lambda: image,                                   # 1: upright
      lambda: tf.reverse(image, [1]),                  # 2: mirrored
      lambda: tf.reverse(image, [0, 1]),               # 3: upside down
      lambda: tf.reverse(image, [0]),                  # 4: flipped
      transposed,                                      # 5: transposed
      lambda: tf.reverse(transposed(), [1]),           # 6: turned right
      lambda: tf.reverse(transposed(), [0, 1]),        # 7: transverse
      lambda: tf.reverse(transposed(), [0]),           # 8: turned left
  ])


def _decode(encoded: tf.Tensor) -> tf.Tensor:
  """Encoded JPEG/PNG -> float32 [h, w, 3] in 0..255. A 16-bit PNG is
  scaled by the bits it uses (significant_bits), not by 16."""
  def sixteen_bit():
    image = tf.io.decode_png(encoded, channels=3, dtype=tf.uint16)
    top = tf.cast(2 ** significant_bits(image) - 1, tf.float32)
    return tf.cast(image, tf.float32) * (255.0 / top)
  def eight_bit():
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    return tf.cast(orient(image, exif_orientation(encoded)), tf.float32)
  return tf.cond(tf.equal(png_bit_depth(encoded), 16), sixteen_bit,
                 eight_bit)


def _fit_between_bars(image: tf.Tensor, size: int) -> tf.Tensor:
  """[h, w, c] -> [size, size, c]: the long side scaled to `size`, the
  short side in proportion, centred between black bars.

  Not tf.image.resize_with_pad: it floors the scaled side, and in a graph,
  where the shape is not known, 100 * (48 / 100) floors to 47, leaving a
  black line at the image's edge; rounding keeps the side whole.
  """
  shape = tf.cast(tf.shape(image)[:2], tf.float32)
  fitted = tf.cast(tf.round(shape * (size / tf.reduce_max(shape))), tf.int32)
  image = tf.image.resize(image, tf.maximum(fitted, 1), antialias=True)
  return tf.image.resize_with_crop_or_pad(image, size, size)


def decode_and_resize(encoded: tf.Tensor, image_size: int,
                      resize: str = settings.SQUASH) -> tf.Tensor:
  """One encoded JPEG/PNG string -> uint8 [image_size, image_size, 3].

  resize (settings.RESIZE_MODES): squash stretches the image to the
  square; pad scales it to fit and centres it between black bars, so a
  wide chest stays as wide as it is.

  Other formats TensorFlow could decode (GIF, BMP) are refused, with
  InvalidArgumentError, as ingestion quarantines them: a model serves the
  formats it was trained on. So are images whose header declares more than
  contract.MAX_IMAGE_PIXELS, before they are decoded: a small file can
  declare a huge image, and the graph is what tensorflow_model_server runs.
  """
  taken = tf.debugging.Assert(
      _taken_format(encoded),
      [f"not a {' or '.join(contract.IMAGE_FORMATS)} image"])
  with tf.control_dependencies([taken]):
    declared = declared_pixels(encoded)
  small = tf.debugging.Assert(
      declared <= contract.MAX_IMAGE_PIXELS,
      [f"image larger than {contract.MAX_IMAGE_PIXELS} pixels:", declared])
  with tf.control_dependencies([small]):
    image = _decode(encoded)
  if resize == settings.PAD:
    image = _fit_between_bars(image, image_size)
  else:
    image = tf.image.resize(image, [image_size, image_size], antialias=True)
  image = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
  return tf.ensure_shape(image, [image_size, image_size, 3])


def serialized_pixels(encoded: tf.Tensor, image_size: int,
                      resize: str = settings.SQUASH) -> tf.Tensor:
  """Encoded images [batch] -> serialized uint8 pixel tensors [batch]."""
  return tf.map_fn(
      lambda e: tf.io.serialize_tensor(
          decode_and_resize(e, image_size, resize)),
      encoded, fn_output_signature=tf.string)


def image_from_transformed(pixels: tf.Tensor, image_size: int) -> tf.Tensor:
  """Serialized uint8 tensors [batch] -> uint8 [batch, S, S, 3]."""
  pixels = tf.reshape(pixels, [-1])
  return tf.map_fn(
      lambda s: tf.ensure_shape(tf.io.parse_tensor(s, tf.uint8),
                                [image_size, image_size, 3]),
      pixels, fn_output_signature=tf.TensorSpec([image_size, image_size, 3],
                                                tf.uint8))
