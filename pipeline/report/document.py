"""The report as a document: block types both renderers understand, and how
values, metric keys and slice names are written in it.

The sections (sections.py) build lists of these blocks; html.py and
markdown.py turn the same blocks into a page and a Markdown file.
"""

import dataclasses
import math
import re
from typing import List, Optional, Sequence

from pipeline import eval_config
from schema import contract

# The pictures' folder inside the report folder; block paths are relative
# to the report folder.
IMAGES_DIR = "images"
MISSING = "–"  # a value that is absent or not a number
# Metrics that count images: whole numbers, not 4 decimals.
COUNT_KEYS = ("example_count", "true_positives", "false_positives",
              "true_negatives", "false_negatives")


# ---------------------------------------------------------------------------
# Blocks.


@dataclasses.dataclass
class Cell:
  text: str
  numeric: bool = False
  css: str = ""  # extra class, e.g. "yes" / "no"
  title: str = ""  # tooltip (HTML only)


@dataclasses.dataclass
class Table:
  """A table; one without headers is a list of key-value facts."""
  headers: List[str]
  rows: List[List[Cell]]
  table_id: str = ""
  css: str = ""
  row_keys: List[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Heading:
  level: int
  text: str
  anchor: str = ""


@dataclasses.dataclass
class Para:
  text: str
  css: str = ""  # "note" for a highlighted remark


@dataclasses.dataclass
class BulletList:
  items: List[str]
  css: str = ""


@dataclasses.dataclass
class Figure:
  src: str  # relative to the report folder
  alt: str
  caption: str
  kind: str  # CSS class: "confusion" or "curves"
  width: int = 0  # CSS pixels; 0: the style sheet's


@dataclasses.dataclass
class Figures:
  """Figures side by side."""
  items: List[Figure]


@dataclasses.dataclass
class GradcamCard:
  """One class's Grad-CAM example, or a note why there is none."""
  class_name: str
  original: Optional[str] = None  # image paths relative to the report
  overlay: Optional[str] = None
  file_name: str = ""
  probability: float = float("nan")
  note: str = ""  # why there is no example


@dataclasses.dataclass
class Gallery:
  model: str
  cards: List[GradcamCard]


@dataclasses.dataclass
class Details:
  """Blocks folded away under a one-line summary."""
  summary: str
  blocks: list


@dataclasses.dataclass
class Section:
  """One task's part of the report."""
  anchor: str
  blocks: list


# ---------------------------------------------------------------------------
# Values and names.


def is_number(value) -> bool:
  return isinstance(value, (int, float)) and not math.isnan(value)


def format_value(value, key: str = "") -> str:
  """4 decimals for metrics, whole numbers for counts, '–' for none/NaN."""
  if not is_number(value):
    return MISSING
  if key.removesuffix(eval_config.AT_THRESHOLD) in COUNT_KEYS:
    return f"{value:.0f}"
  return f"{value:.4f}"


def format_interval(value, interval, key: str = "") -> str:
  """'0.9340 [0.9050, 0.9580]': a value and its 95% interval, when known."""
  text = format_value(value, key)
  if interval is not None and is_number(value):
    text += f" [{interval[0]:.4f}, {interval[1]:.4f}]"
  return text


def format_seconds(value: Optional[float]) -> str:
  return f"{value:.1f}" if is_number(value) else MISSING


# Slices of one true class: 'label:0', 'label:1', ...
LABEL_SLICE_PREFIX = f"{contract.LABEL_KEY}:"


def label_slice(class_id: int) -> str:
  return f"{LABEL_SLICE_PREFIX}{class_id}"


def class_suffix(key: str, class_names: Sequence[str]) -> str:
  """'recall classId:2 topK:1' -> 'recall viral topK:1' (the task's names)."""
  def name(match):
    class_id = int(match.group(1))
    return (class_names[class_id] if class_id < len(class_names)
            else match.group(0))
  return re.sub(r"\bclassId:(\d+)\b", name, key)


def slice_label(slice_name: str, class_names: Sequence[str]) -> str:
  """'label:1' -> 'label:1 (pneumonia)'; other slices as they are."""
  feature, _, value = slice_name.partition(":")
  if (feature == contract.LABEL_KEY and value.isdigit()
      and int(value) < len(class_names)):
    return f"{slice_name} ({class_names[int(value)]})"
  return slice_name
