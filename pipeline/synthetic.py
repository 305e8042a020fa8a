"""Procedural chest X-ray generator for demos and tests.

Real data cannot be downloaded on every machine, so the demo and the end-to-end
tests run on images drawn here: a thorax, two lung fields, ribs, spine, heart
shadow and noise. Pneumonia images carry a lesion whose bounding box is written
to a sidecar (`lesions.json`), so Grad-CAM can later be checked against it:

* bacterial: a dense focal/lobar consolidation in one lung;
* viral: a diffuse bilateral interstitial haze over both lungs.

The output is the Kaggle binary layout (`train|test/NORMAL|PNEUMONIA/*.jpeg`)
with Kermany-style file names, several images per patient, split by patient.
Everything is drawn from one `numpy.random.Generator`, so a seed fixes the set.
"""

import dataclasses
import io
import json
import os
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

from components import image_layouts
from schema import contract
from schema.contract import BACTERIAL, KINDS, NORMAL

LESIONS_FILE = "lesions.json"
# Share of patients per kind; Kermany is about 1 normal : 2.9 pneumonia, but a
# balanced demo set learns faster and still exercises every class.
KIND_SHARES = (0.4, 0.3, 0.3)


@dataclasses.dataclass(frozen=True)
class Anatomy:
  """One patient's fixed anatomy, in fractions of the image size."""
  thorax_w: float
  thorax_h: float
  lung_w: float
  lung_h: float
  lung_gap: float
  lung_top: float
  heart_r: float
  rib_period: float
  tissue: float


def _patient_anatomy(rng: np.random.Generator) -> Anatomy:
  return Anatomy(
      thorax_w=rng.uniform(0.40, 0.47),
      thorax_h=rng.uniform(0.42, 0.48),
      lung_w=rng.uniform(0.14, 0.18),
      lung_h=rng.uniform(0.28, 0.34),
      lung_gap=rng.uniform(0.17, 0.21),
      lung_top=rng.uniform(0.44, 0.50),
      heart_r=rng.uniform(0.11, 0.14),
      rib_period=rng.uniform(0.065, 0.085),
      tissue=rng.uniform(0.40, 0.50),
  )


def _ellipse(yy, xx, cy, cx, ry, rx, softness=0.03):
  """Soft-edged ellipse mask in [0, 1]."""
  d = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
  return np.clip((1.0 - d) / softness, 0.0, 1.0)


def _smooth_noise(rng, size, cells):
  """Low-frequency noise: a coarse random grid upsampled bilinearly."""
  coarse = rng.standard_normal((cells, cells)).astype(np.float32)
  img = Image.fromarray(coarse, mode="F").resize((size, size), Image.BILINEAR)
  return np.asarray(img)


def _box(mask: np.ndarray, threshold: float = 0.2) -> List[int]:
  ys, xs = np.nonzero(mask > threshold)
  return [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]


def draw_image(rng: np.random.Generator, anatomy: Anatomy, kind: str,
               size: int) -> Tuple[np.ndarray, List[List[int]]]:
  """Draws one grayscale image; returns (uint8 [size, size], lesion boxes).

  Boxes are [x0, y0, x1, y1] in pixels, one per lesion (none for normal).
  """
  if kind not in KINDS:
    raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
  # Per-image pose and exposure jitter, so brightness alone cannot tell classes.
  cy = 0.5 + rng.uniform(-0.03, 0.03)
  cx = 0.5 + rng.uniform(-0.03, 0.03)
  exposure = rng.uniform(0.85, 1.15)

  img = np.full((size, size), 0.08, np.float32)
  thorax = _ellipse(yy, xx, cy + 0.02, cx, anatomy.thorax_h, anatomy.thorax_w,
                    0.08)
  img += thorax * anatomy.tissue
  spine = np.exp(-((xx - cx) / 0.025) ** 2) * thorax
  img += 0.25 * spine

  lungs = []
  for side in (-1, 1):
    lung = _ellipse(yy, xx, cy - 0.5 + anatomy.lung_top,
                    cx + side * anatomy.lung_gap, anatomy.lung_h,
                    anatomy.lung_w, 0.15)
    lungs.append(lung)
  lung_mask = np.maximum(*lungs)
  img -= 0.30 * lung_mask

  # Ribs: bright arcs, periodic down the chest and bending downwards sideways.
  bend = 0.9 * (xx - cx) ** 2
  phase = (yy - bend) / anatomy.rib_period
  ribs = np.clip(np.cos(2 * np.pi * phase), 0, 1) ** 4
  img += 0.10 * ribs * thorax

  # Heart shadow: bright, lower centre, reaching into the image-right lung.
  heart = _ellipse(yy, xx, cy + 0.12, cx + 0.05, anatomy.heart_r * 1.1,
                   anatomy.heart_r * 1.3, 0.25)
  img = np.maximum(img, heart * (anatomy.tissue + 0.12))

  boxes: List[List[int]] = []
  if kind == BACTERIAL:
    # Lobar consolidation: a dense blob in a lower or middle zone of one lung.
    side = rng.choice([-1, 1])
    ly = cy - 0.5 + anatomy.lung_top + rng.uniform(-0.05, 0.15)
    lx = cx + side * anatomy.lung_gap + rng.uniform(-0.03, 0.03)
    ry, rx = rng.uniform(0.09, 0.14), rng.uniform(0.07, 0.11)
    blob = _ellipse(yy, xx, ly, lx, ry, rx, 0.5)
    blob *= 0.8 + 0.4 * np.clip(_smooth_noise(rng, size, 8), -1, 1) * 0.5
    blob = np.clip(blob, 0, 1) * lungs[0 if side < 0 else 1]
    img += 0.55 * blob
    boxes.append(_box(blob))
  elif kind == contract.VIRAL:
    # Interstitial haze: fine reticular texture over both lungs.
    texture = (0.6 + 0.4 * _smooth_noise(rng, size, 24))
    reticular = np.abs(np.sin(xx * size / 3.0) * np.sin(yy * size / 3.5))
    haze = np.clip(texture * (0.7 + 0.3 * reticular), 0, 1.4)
    for lung in lungs:
      part = lung * haze
      img += 0.32 * part
      boxes.append(_box(lung))

  img += 0.04 * _smooth_noise(rng, size, 6)
  img *= exposure
  img += rng.normal(0, 0.025, img.shape).astype(np.float32)
  pixels = np.clip(img * 255.0, 0, 255).astype(np.uint8)
  return pixels, boxes


def _encode_jpeg(pixels: np.ndarray) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(pixels, mode="L").save(buf, format="JPEG", quality=92)
  return buf.getvalue()


def generate(out_dir: str, n: int = 300, size: int = 256, seed: int = 0,
             test_fraction: float = 0.2,
             images_per_patient: Tuple[int, int] = (1, 4)) -> Dict[str, int]:
  """Writes about `n` images in the Kaggle binary layout under `out_dir`.

  Patients get 1-4 images each (inclusive) and whole patients go to `test`
  with probability `test_fraction`, so no patient spans both splits.
  Returns the count of images per `split/kind`.
  """
  if n < 1:
    raise ValueError(f"n must be at least 1, got {n}")
  if size < 32:
    raise ValueError(f"size must be at least 32 px, got {size}")
  rng = np.random.default_rng(seed)
  lesions: Dict[str, List[List[int]]] = {}
  counts: Dict[str, int] = {}
  # Kermany numbers pneumonia patients (personN) across both kinds.
  next_id = {NORMAL: 1, contract.PNEUMONIA: 1}
  image_no = {BACTERIAL: 1, contract.VIRAL: 1}
  written = 0
  while written < n:
    kind = KINDS[rng.choice(len(KINDS), p=KIND_SHARES)]
    split = "test" if rng.random() < test_fraction else "train"
    anatomy = _patient_anatomy(rng)
    series = NORMAL if kind == NORMAL else contract.PNEUMONIA
    patient = next_id[series]
    next_id[series] += 1
    lo, hi = images_per_patient
    for k in range(min(int(rng.integers(lo, hi + 1)), n - written)):
      if kind == NORMAL:
        folder, name = "NORMAL", f"IM-{patient:04d}-{k + 1:04d}.jpeg"
      else:
        # Kermany's file names: personN_bacteria_M, personN_virus_M.
        tag = "bacteria" if kind == BACTERIAL else "virus"
        folder = "PNEUMONIA"
        name = f"person{patient}_{tag}_{image_no[kind]}.jpeg"
        image_no[kind] += 1
      pixels, boxes = draw_image(rng, anatomy, kind, size)
      rel = f"{split}/{folder}/{name}"
      path = os.path.join(out_dir, rel)
      os.makedirs(os.path.dirname(path), exist_ok=True)
      with open(path, "wb") as f:
        f.write(_encode_jpeg(pixels))
      lesions[rel] = boxes
      key = f"{split}/{kind}"
      counts[key] = counts.get(key, 0) + 1
      written += 1
  with open(os.path.join(out_dir, LESIONS_FILE), "w") as f:
    json.dump({"size": size, "seed": seed, "boxes": lesions}, f, indent=1,
              sort_keys=True)
  return counts


def load_lesions(data_dir: str) -> Dict[str, List[List[int]]]:
  """Reads the sidecar: relative image path -> list of [x0, y0, x1, y1]."""
  with open(os.path.join(data_dir, LESIONS_FILE)) as f:
    return json.load(f)["boxes"]


def heatmap_peak(heatmap: np.ndarray) -> Optional[Tuple[int, int]]:
  """(row, col) of a heat map's peak: its maximum pixel nearest the centre.

  The map is measured only at the feature cells' receptive-field centres and
  interpolated between them, so inside the grid a maximum sits on a cell
  centre; beyond the outermost cells it is held flat out to the image edge.
  When the strongest cell is an outer one the maximum is a plateau from that
  cell's centre to the edge, and of all its pixels only the innermost is
  where the evidence was measured (the plateau's middle lies in the
  extrapolated margin; argmax's first pixel in an image corner). None for a
  blank map, which shows no evidence anywhere.
  """
  heatmap = np.asarray(heatmap)
  if heatmap.max() <= 0:
    return None
  ys, xs = np.nonzero(heatmap >= heatmap.max() - 1e-6)
  height, width = heatmap.shape
  inner = np.argmin((ys + 0.5 - height / 2) ** 2 + (xs + 0.5 - width / 2) ** 2)
  return int(ys[inner]), int(xs[inner])


def peak_in_boxes(heatmap: np.ndarray, boxes: List[List[int]],
                  image_size: int) -> bool:
  """Whether a square heat map's peak lies in a box of the original image.

  The model saw the whole image resized to the heat map's size, so pixel
  centres scale back linearly. A blank map is never a hit.
  """
  heatmap = np.asarray(heatmap)
  peak = heatmap_peak(heatmap)
  if peak is None:
    return False
  cy = (peak[0] + 0.5) * image_size / heatmap.shape[0]
  cx = (peak[1] + 0.5) * image_size / heatmap.shape[1]
  return any(x0 <= cx <= x1 and y0 <= cy <= y1 for x0, y0, x1, y1 in boxes)


def lesion_hits(data_dir: str, explain, split: str = "test",
                pneumonia_class: int = 1) -> Dict[str, int]:
  """Grad-CAM localisation on the pneumonia images of one split.

  explain(list of encoded images) -> (class_id [n], heatmap [n, h, w]).
  Counts the images the model calls pneumonia (`explained`) and those whose
  heat-map peak falls inside a lesion box (`hits`), overall and per kind
  (`kinds`: bacterial/viral -> the same two counts); misclassified images
  have no lesion evidence to find and are left out, as Grad-CAM is asked
  only to explain correct calls.
  """
  with open(os.path.join(data_dir, LESIONS_FILE)) as f:
    sidecar = json.load(f)  # read once: the image size and the boxes
  size = sidecar["size"]
  cases = sorted((rel, boxes) for rel, boxes in sidecar["boxes"].items()
                 if rel.startswith(split + "/") and boxes)
  counts = {"pneumonia": len(cases), "explained": 0, "hits": 0, "kinds": {}}
  for start in range(0, len(cases), 16):
    batch = cases[start:start + 16]
    encoded = []
    for rel, _ in batch:
      with open(os.path.join(data_dir, rel), "rb") as f:
        encoded.append(f.read())
    class_ids, heatmaps = explain(encoded)
    for (rel, boxes), class_id, heatmap in zip(batch, class_ids, heatmaps):
      if int(class_id) == pneumonia_class:
        hit = int(peak_in_boxes(np.asarray(heatmap), boxes, size))
        kind = counts["kinds"].setdefault(
            image_layouts.diagnosis_from_file_name(rel),
            {"explained": 0, "hits": 0})
        for c in (counts, kind):
          c["explained"] += 1
          c["hits"] += hit
  return counts


def hit_rate(counts: Dict) -> float:
  """hits / explained from lesion_hits(); 0 when nothing was explained."""
  return counts["hits"] / counts["explained"] if counts["explained"] else 0.0
