"""Per-image cost of ingestion's check, the image summary and the DICOM
conversion on full-size X-rays against the shared data's small ones.

  .venv/bin/python bench/full_size_cost.py [--images 40]

The shared images are at most 256 px; a hospital's are about 2,000 px.
Upscales --images real JPEGs to 1900x1500 (JPEG quality 90) and times
`components.image_examples.check_image` (ingestion's decode and checks)
and `serving.server.image_summary.summarize` (ImageStatisticsGen and the
request log) on both, best of 3 passes; SCALING.md scales the measured
per-image costs by the ratio. The same images as 12-bit DICOM files time
`components.image_examples.as_image` (pydicom's read, LUTs and windowing,
the 16-bit PNG) and check_image on that PNG.
"""

import argparse
import io
import statistics
import sys
import time

import numpy as np
from PIL import Image

from bench import dicom_files
from bench import harness
from components import image_examples
from serving.server import image_summary


def _full_size(data: bytes) -> bytes:
  image = Image.open(io.BytesIO(data)).convert("L").resize(
      (1900, 1500), Image.BICUBIC)
  out = io.BytesIO()
  image.save(out, "JPEG", quality=90)
  return out.getvalue()


def _dicom(data: bytes) -> bytes:
  """A JPEG as an uncompressed 12-bit DICOM file."""
  gray = np.asarray(Image.open(io.BytesIO(data)).convert("L"), np.float64)
  return dicom_files.file_bytes(np.round(gray / 255 * 4095).astype(
      np.uint16))


def _ms_per_image(function, images) -> float:
  function(images[0])
  passes = []
  for _ in range(3):
    start = time.perf_counter()
    for data in images:
      function(data)
    passes.append((time.perf_counter() - start) / len(images) * 1000)
  return min(passes)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--images", type=int, default=40)
  args = parser.parse_args(argv)
  small = [open(p, "rb").read() for p in harness.real_images(
      "chest_xray/train/*/*.jpeg", args.images)]
  large = [_full_size(data) for data in small]
  print(f"KB per image: small {statistics.mean(map(len, small)) / 1e3:.0f},"
        f" full-size {statistics.mean(map(len, large)) / 1e3:.0f}")
  small_dicom = [_dicom(data) for data in small]
  large_dicom = [_dicom(data) for data in large]
  as_png = [[image_examples.as_image(data)[0] for data in files]
            for files in (small_dicom, large_dicom)]
  print(f"KB per DICOM file: small "
        f"{statistics.mean(map(len, small_dicom)) / 1e3:.0f}, full-size "
        f"{statistics.mean(map(len, large_dicom)) / 1e3:.0f}; as 16-bit PNG "
        f"{statistics.mean(map(len, as_png[1])) / 1e3:.0f}")
  rows = []
  for name, function, inputs in (
      ("check_image", image_examples.check_image, (small, large)),
      ("summarize", image_summary.summarize, (small, large)),
      ("DICOM as_image", image_examples.as_image, (small_dicom,
                                                   large_dicom)),
      ("check_image of its PNG", image_examples.check_image, as_png)):
    costs = [_ms_per_image(function, images) for images in inputs]
    rows.append([name, costs[0], costs[1], costs[1] / costs[0]])
  harness.table(["step", "ms per small image", "ms per 1900x1500 image",
                 "ratio"], rows)
  return 0


if __name__ == "__main__":
  sys.exit(main())
