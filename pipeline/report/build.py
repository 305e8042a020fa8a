"""build_report: reads the latest run of each task and writes the report's
page, Markdown file and pictures."""

import datetime
import os
import shutil
from typing import List, Sequence, Tuple, Union

import tensorflow as tf
import tensorflow_model_analysis as tfma

from pipeline import summary as summary_lib
from pipeline.report import document as doc
from pipeline.report import html
from pipeline.report import markdown
from pipeline.report import sections as sections_lib
from schema import contract
from schema import layout

INDEX_FILE = "index.html"
MARKDOWN_FILE = "report.md"
_TITLE = "Chest X-ray pneumonia models: results"
BOTH = contract.BOTH_TASKS


def _footer_text(metadata_path: str) -> str:
  import tfx  # pylint: disable=g-import-not-at-top
  return (f"Produced by `cxr report` (pipeline/report/) from the ML "
          f"Metadata in {metadata_path}, the Evaluators' TFMA output, the "
          f"Trainers' {layout.HISTORY_FILE} and {layout.CURVES_FILE}, and "
          f"each model's {contract.GRADCAM} signature. TFX {tfx.__version__}, "
          f"TensorFlow {tf.__version__}, TFMA {tfma.__version__}.")


def _write(report_dir: str, output_dir: str, sections: List[doc.Section],
           notes: List[str], metadata_path: str) -> str:
  """Writes index.html and report.md; returns the path of index.html."""
  generated = datetime.datetime.now().astimezone().strftime(
      "%Y-%m-%d %H:%M:%S %Z")
  footer = _footer_text(metadata_path)
  index = os.path.join(report_dir, INDEX_FILE)
  with open(index, "w", encoding="utf-8") as f:
    f.write(html.page(_TITLE, output_dir, generated, sections,
                      sections_lib.TASK_TITLES, notes, footer))
  with open(os.path.join(report_dir, MARKDOWN_FILE), "w",
            encoding="utf-8") as f:
    f.write(markdown.document(_TITLE, output_dir, generated, sections, notes,
                              footer))
  return index


def task_list(tasks: Union[None, str, Sequence[str]]) -> Tuple[str, ...]:
  """The tasks named by "both", None, one task or a list of tasks."""
  if tasks is None or tasks == BOTH:
    return contract.TASKS
  if isinstance(tasks, str):
    tasks = (tasks,)
  unknown = [t for t in tasks if t not in contract.TASKS]
  if unknown:
    raise ValueError(f"unknown task {unknown[0]!r}; one of "
                     f"{contract.TASKS} or '{BOTH}'")
  return tuple(tasks)


def build_report(output_dir: str,
                 tasks: Union[None, str, Sequence[str]] = None) -> str:
  """Writes OUT/report/{index.html, report.md, images/}; returns index.html.

  tasks: "binary", "multiclass", "both", a list of tasks, or None (both).
  A task whose pipeline never ran in `output_dir` gets a note; when none
  ran, ValueError.
  """
  tasks = task_list(tasks)
  paths = layout.output_paths(output_dir)
  metadata_path = paths.metadata
  if not os.path.exists(metadata_path):
    raise FileNotFoundError(
        f"no ML Metadata at {metadata_path}: is {output_dir} the --output "
        "folder of a `cxr run`?")
  runs, notes = {}, []
  for task in tasks:
    try:
      runs[task] = summary_lib.summarize(metadata_path,
                                         layout.pipeline_name(task))
    except ValueError as e:
      notes.append(f"The {task} task has not run in this output folder "
                   f"({e}); `cxr run --task {task}` adds it.")
  if not runs:
    raise ValueError(f"no pipeline run of {' or '.join(tasks)} in "
                     f"{output_dir}: " + " ".join(notes))
  images_dir = os.path.join(paths.report, doc.IMAGES_DIR)
  # Our own folder: pictures of models no longer in the run must not linger.
  shutil.rmtree(images_dir, ignore_errors=True)
  os.makedirs(images_dir)
  sections = [sections_lib.task_section(task, run, metadata_path, images_dir)
              for task, run in runs.items()]
  return _write(paths.report, output_dir, sections, notes, metadata_path)
