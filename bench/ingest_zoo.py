"""An ingestion zoo: a binary-layout data folder of odd-but-valid and bad
files, symbolic links included, through the ImageExampleGen executor.
Every entry must come out ingested or quarantined with its reason, and
nothing may abort the run.

  .venv/bin/python bench/ingest_zoo.py

Builds the zoo in a temporary folder (build_zoo: each entry with the
outcome it must have), runs the executor (Beam in memory), and prints a
Markdown table per entry and `zoo: N files, ingested + quarantined = N,
0 aborts`. Exits 1 if the run aborts or any entry's outcome differs.
tests/test_ingest_zoo.py runs the same zoo.
"""

import dataclasses
import io
import json
import os
import struct
import sys
import tempfile
import time
import zlib
from typing import Dict, List, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# The project first: schema/__init__.py selects Keras 2 before TensorFlow.
import schema  # noqa: F401  pylint: disable=unused-import,g-bad-import-order
import numpy as np  # pylint: disable=g-bad-import-order
from PIL import Image

INGESTED = "ingested"
NOT_IMAGE = "not a JPEG or PNG"
LINK = "symbolic link to "
PIXELS = "more than 50000000 pixels"


@dataclasses.dataclass(frozen=True)
class Entry:
  """One file or link of the zoo and the outcome it must have: INGESTED,
  or a substring of its quarantine reason."""
  kind: str
  path: str  # relative to the zoo's root
  expected: str
  channels: Optional[int] = None  # of an ingested image, as stored


def _image(fmt: str, mode: str = "L", size=(64, 48), **save) -> bytes:
  rng = np.random.default_rng(size[0] * 7 + size[1])
  if mode in ("L", "RGB", "RGBA", "CMYK", "LA"):
    bands = len(mode)
    pixels = rng.integers(0, 255, (size[1], size[0], bands), dtype=np.uint8)
    img = Image.fromarray(pixels[..., 0] if bands == 1 else pixels, mode=mode
                          if bands in (1, 3, 4) and mode != "CMYK" else None)
    if img.mode != mode:
      img = img.convert(mode)
  else:
    img = Image.new(mode, size, 1)
  buf = io.BytesIO()
  img.save(buf, format=fmt, **save)
  return buf.getvalue()


def _exif_rotated_jpeg() -> bytes:
  exif = Image.Exif()
  exif[0x0112] = 6  # Orientation: rotate 90 CW to display
  return _image("JPEG", "L", (64, 32), exif=exif)


def _png_declaring(width: int, height: int) -> bytes:
  """A small PNG whose IHDR (CRC fixed) declares width x height."""
  data = bytearray(_image("PNG"))
  data[16:24] = struct.pack(">II", width, height)
  data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
  return bytes(data)


def _jpeg_declaring(width: int, height: int) -> bytes:
  data = bytearray(_image("JPEG"))
  sof = data.index(b"\xff\xc0")
  data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
  return bytes(data)


def _bad_crc_png() -> bytes:
  data = bytearray(_image("PNG"))
  data[29] ^= 0xFF  # IHDR's CRC
  return bytes(data)


N, P = "train/NORMAL", "train/PNEUMONIA"
TN, TP = "test/NORMAL", "test/PNEUMONIA"


def _files() -> List[tuple]:
  """(kind, path, bytes, expected outcome, channels) of every plain file."""
  jpeg, png = _image("JPEG"), _image("PNG")
  return [
      ("grayscale PNG", f"{N}/IM-0001-0001.png", png, INGESTED, 1),
      ("RGB PNG", f"{N}/IM-0002-0001.png", _image("PNG", "RGB"), INGESTED, 3),
      ("RGBA PNG", f"{N}/IM-0003-0001.png", _image("PNG", "RGBA"), INGESTED,
       4),
      ("grayscale+alpha PNG", f"{N}/IM-0004-0001.png", _image("PNG", "LA"),
       INGESTED, 2),
      ("palette PNG", f"{N}/IM-0005-0001.png", _image("PNG", "P"), INGESTED,
       3),
      ("16-bit grayscale PNG", f"{N}/IM-0006-0001.png",
       _image("PNG", "I;16"), INGESTED, 1),
      ("1-bit PNG", f"{N}/IM-0007-0001.png", _image("PNG", "1"), INGESTED, 1),
      ("grayscale JPEG", f"{N}/IM-0008-0001.jpeg", jpeg, INGESTED, 1),
      ("RGB JPEG", f"{P}/person1_bacteria_1.jpeg", _image("JPEG", "RGB"),
       INGESTED, 3),
      ("progressive JPEG", f"{P}/person2_virus_2.jpeg",
       _image("JPEG", "L", progressive=True), INGESTED, 1),
      ("CMYK JPEG", f"{P}/person3_bacteria_3.jpeg", _image("JPEG", "CMYK"),
       INGESTED, 4),
      ("JPEG with EXIF orientation", f"{P}/person4_virus_4.jpeg",
       _exif_rotated_jpeg(), INGESTED, 1),
      ("1x1 PNG", f"{N}/IM-0009-0001.png", _image("PNG", "L", (1, 1)),
       INGESTED, 1),
      ("1x1 JPEG", f"{N}/IM-0010-0001.jpeg", _image("JPEG", "L", (1, 1)),
       INGESTED, 1),
      ("very wide PNG (20000x2)", f"{N}/IM-0011-0001.png",
       _image("PNG", "L", (20_000, 2)), INGESTED, 1),
      ("JPEG named .png", f"{N}/IM-0012-0001.png", jpeg, INGESTED, 1),
      ("JPEG without extension", f"{N}/IM-0013-0001", jpeg, INGESTED, 1),
      ("JPEG with bytes after its end", f"{N}/IM-0014-0001.jpeg",
       jpeg + b"trailing junk" * 10, INGESTED, 1),
      ("unicode file name", f"{P}/person5_virus_5 r\u00f6ntgen \u80ba.jpeg",
       jpeg, INGESTED, 1),
      ("spaces and glob characters in the name",
       f"{N}/IM-0015-0001 [copy] (2) *?.jpeg", jpeg, INGESTED, 1),
      ("newline in the name", f"{N}/IM-0044-0001\nb.jpeg", jpeg, INGESTED, 1),
      ("comma and quotes in the name", f'{N}/IM-0045-0001,"b".jpeg', jpeg,
       INGESTED, 1),
      ("bad file with a newline, comma and quote in its name (the CSV "
       "quotes it)", f'{N}/notes\n,"1".txt', b"notes\n", NOT_IMAGE, None),
      ("nested subfolders", f"{N}/2019/ward b/IM-0016-0001.jpeg", jpeg,
       INGESTED, 1),
      ("folder named like an image, holding one", f"{N}/x.jpeg/IM-0017-0001"
       ".jpeg", jpeg, INGESTED, 1),
      ("hidden dotfile image", f"{N}/.IM-0018-0001.jpeg", jpeg, INGESTED, 1),
      ("hidden .DS_Store", f"{N}/.DS_Store", b"\x00\x00\x00\x01Bud1" * 20,
       NOT_IMAGE, None),
      ("PNG declaring 400 M pixels", f"{N}/IM-0019-0001.png",
       _png_declaring(20_000, 20_000), PIXELS, None),
      ("JPEG declaring 400 M pixels", f"{N}/IM-0020-0001.jpeg",
       _jpeg_declaring(20_000, 20_000), PIXELS, None),
      ("empty .jpeg", f"{N}/IM-0021-0001.jpeg", b"", "empty file", None),
      ("zero-byte .png", f"{N}/IM-0022-0001.png", b"", "empty file", None),
      ("truncated JPEG", f"{N}/IM-0023-0001.jpeg", jpeg[:len(jpeg) // 2],
       "truncated", None),
      ("truncated PNG", f"{N}/IM-0024-0001.png", png[:len(png) // 2],
       "truncated", None),
      ("PNG with a bad CRC", f"{N}/IM-0025-0001.png", _bad_crc_png(),
       "corrupt", None),
      ("JPEG signature, then noise", f"{N}/IM-0026-0001.jpeg",
       b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4, "corrupt", None),
      ("GIF", f"{N}/IM-0027-0001.gif", _image("GIF"), NOT_IMAGE, None),
      ("GIF named .jpeg", f"{N}/IM-0028-0001.jpeg", _image("GIF"), NOT_IMAGE,
       None),
      ("BMP", f"{N}/IM-0029-0001.bmp", _image("BMP"), NOT_IMAGE, None),
      ("TIFF", f"{N}/IM-0030-0001.tiff", _image("TIFF"), NOT_IMAGE, None),
      ("WebP", f"{N}/IM-0031-0001.webp", _image("WEBP", "RGB"), NOT_IMAGE,
       None),
      ("text file named .jpeg", f"{N}/IM-0032-0001.jpeg",
       b"radiologist notes\n", NOT_IMAGE, None),
      ("file beside the class folders", "train/stray.jpeg", jpeg,
       "class folder", None),
      ("file in an unknown class folder", "train/OTHER/IM-0033-0001.jpeg",
       jpeg, "class folder", None),
      ("good test image (linked to below)", f"{TN}/IM-0100-0001.jpeg", jpeg,
       INGESTED, 1),
      ("good test image", f"{TP}/person100_bacteria_1.jpeg", jpeg, INGESTED,
       1),
  ]


def build_zoo(root: str) -> List[Entry]:
  """Writes the zoo under root (an empty folder) and an `outside/` folder
  beside it; returns every entry the ingestion must account for."""
  outside = os.path.join(os.path.dirname(root), "outside")
  os.makedirs(outside, exist_ok=True)
  jpeg = _image("JPEG")
  with open(os.path.join(outside, "IM-0900-0001.jpeg"), "wb") as f:
    f.write(jpeg)
  entries = []
  for kind, rel, data, expected, channels in _files():
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
      f.write(data)
    entries.append(Entry(kind, rel, expected, channels))
  links = [
      ("dangling file link", f"{N}/IM-0040-0001.jpeg", "gone.jpeg"),
      ("link loop up -> ..", f"{N}/up", ".."),
      ("link to itself", f"{N}/self.jpeg", "self.jpeg"),
      ("link to a test image (would leak it into train)",
       f"{N}/IM-0041-0001.jpeg", "../../test/NORMAL/IM-0100-0001.jpeg"),
      ("link to a file outside the data set", f"{P}/person6_virus_6.jpeg",
       os.path.join(outside, "IM-0900-0001.jpeg")),
      ("folder link out of the data set", f"{N}/elsewhere", outside),
      ("dangling folder link in a subfolder", f"{N}/2019/gone", "/nonexistent"
       "/folder"),
  ]
  for kind, rel, target in links:
    os.symlink(target, os.path.join(root, rel))
    entries.append(Entry(kind, rel, LINK))
  # A file name that is not UTF-8 (Linux allows any bytes): quarantined,
  # its bytes written as \xNN.
  bad_name = os.path.join(root, N).encode() + b"/IM-0042-0001-\xff.jpeg"
  with open(bad_name, "wb") as f:
    f.write(jpeg)
  entries.append(Entry("file name that is not UTF-8",
                       f"{N}/IM-0042-0001-\\xff.jpeg", "not valid UTF-8"))
  os.symlink(b"gone-\xfe", os.path.join(root, N).encode() + b"/link-\xfe")
  entries.append(Entry("link whose name and target are not UTF-8",
                       f"{N}/link-\\xfe", LINK))
  # A named pipe: reading it would block until someone writes to it.
  os.mkfifo(os.path.join(root, N, "IM-0043-0001.jpeg"))
  entries.append(Entry("named pipe (FIFO) named .jpeg",
                       f"{N}/IM-0043-0001.jpeg", "not a regular file"))
  # A layout folder may itself be a link (kept on another disk): followed,
  # its image ingested; the link is a folder of the layout, not an entry.
  linked = os.path.join(os.path.dirname(root), "val-on-another-disk")
  os.makedirs(os.path.join(linked, "NORMAL"))
  with open(os.path.join(linked, "NORMAL", "IM-0901-0001.jpeg"), "wb") as f:
    f.write(jpeg)
  os.symlink(linked, os.path.join(root, "val"))
  entries.append(Entry("image in a split folder that is a link",
                       "val/NORMAL/IM-0901-0001.jpeg", INGESTED, 1))
  # Beside the layout's folders: logged and ignored, not an input.
  with open(os.path.join(root, "README.txt"), "w") as f:
    f.write("the zoo\n")
  return entries


def run_zoo(root: str, out_dir: str, task: str = "binary") -> Dict:
  """Runs the executor over root; {"counts", "quarantined": {path: reason},
  "ingested": {path: channels}, "error": the abort, if any}."""
  # pylint: disable=g-import-not-at-top
  from components import image_layouts
  from tests.test_image_example_gen import all_examples
  from tests.test_image_example_gen import run_executor
  try:
    examples, counts, quarantined = run_executor(root, out_dir, task)
  except Exception as e:  # pylint: disable=broad-except
    return {"error": f"{type(e).__name__}: {e}"}
  ingested = {}
  for split_examples in all_examples(examples).values():
    for e in split_examples:
      ingested.setdefault(e["file_name"].decode(), []).append(e["channels"])
  return {"counts": counts, "ingested": ingested, "error": None,
          "quarantined": {os.path.relpath(q["path"], image_layouts.printable(
              root)): q["reason"]
                          for q in quarantined}}


def judge(entries: List[Entry], result: Dict) -> List[tuple]:
  """(entry, outcome, ok) per entry; the ingested are matched by file name
  (what the examples keep), which is unique in the zoo."""
  rows = []
  ingested = dict(result["ingested"])
  for entry in entries:
    reason = result["quarantined"].get(entry.path)
    channels = ingested.pop(os.path.basename(entry.path), None)
    if reason is not None:
      outcome = f"quarantined: {reason}"
      ok = entry.expected != INGESTED and entry.expected in reason
    elif channels is not None:
      outcome = f"ingested, {channels[0]} channel(s)"
      ok = (entry.expected == INGESTED and channels == [entry.channels])
    else:
      outcome, ok = "LOST (neither ingested nor quarantined)", False
    rows.append((entry, outcome, ok and not (reason and channels)))
  return rows


def _cell(text: str) -> str:
  """text for one Markdown table cell."""
  return text.replace("\n", "\\n").replace("|", "\\|")


def main() -> int:
  work = tempfile.mkdtemp(prefix="ingest-zoo-")
  root = os.path.join(work, "zoo")
  os.makedirs(root)
  entries = build_zoo(root)
  start = time.monotonic()
  result = run_zoo(root, os.path.join(work, "out"))
  seconds = time.monotonic() - start
  if result["error"]:
    print(f"zoo: {len(entries)} files, ABORTED: {result['error']}")
    return 1
  rows = judge(entries, result)
  print("| kind | path | expected | outcome | ok |")
  print("|---|---|---|---|---|")
  for entry, outcome, ok in rows:
    print(f"| {entry.kind} | `{_cell(entry.path)}` | {entry.expected} | "
          f"{_cell(outcome[:110])} | {'yes' if ok else 'NO'} |")
  counts = result["counts"]
  print()
  print(f"counts: {json.dumps(counts)}; {seconds:.0f} s")
  bad = [r for r in rows if not r[2]]
  accounted = counts["ingested"] + counts["quarantined"]
  print(f"zoo: {len(entries)} files, ingested + quarantined = "
        f"{counts['ingested']} + {counts['quarantined']} = {accounted}, "
        f"seen {counts['seen']}, 0 aborts"
        + (f", {len(bad)} WRONG OUTCOMES" if bad else ""))
  return 0 if not bad and accounted == counts["seen"] == len(entries) else 1


if __name__ == "__main__":
  sys.exit(main())
