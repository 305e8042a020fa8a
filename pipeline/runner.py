"""Runs the pipeline on one machine: BeamDagRunner (default) or LocalDagRunner.

Layout under the output folder OUT:
  OUT/pipeline_root/  artifacts of every component
  OUT/metadata.sqlite ML Metadata (lineage, caching)
  OUT/serving/        pushed models, <model_name>/<version>/ (TF Serving)
"""

import os
from typing import List, Optional

from tfx import v1 as tfx
from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

from components import image_example_gen
from components import image_layouts
from pipeline import pipeline as pipeline_lib

RUNNERS = ("beam", "local")
BEAM_MODES = ("in_memory", "multi_processing")


def output_paths(output: str) -> dict:
  output = os.path.abspath(output)
  return {
      "pipeline_root": os.path.join(output, "pipeline_root"),
      "metadata": os.path.join(output, "metadata.sqlite"),
      "serving": os.path.join(output, "serving"),
  }


def beam_args(mode: str) -> List[str]:
  """Beam DirectRunner settings; multi-processing only pays off at scale."""
  if mode not in BEAM_MODES:
    raise ValueError(f"beam mode must be one of {BEAM_MODES}, got {mode!r}")
  workers = 1 if mode == "in_memory" else 0  # 0: one per core.
  return [f"--direct_running_mode={mode}", f"--direct_num_workers={workers}"]


def pipeline_name_for(task: str) -> str:
  return f"cxr-{task}"


def run(data: str, task: str, output: str,
        settings: pipeline_lib.TrainingSettings, runner: str = "beam",
        beam_mode: str = "in_memory", eval_percent: int = 10,
        enable_cache: bool = True, cross_data: Optional[str] = None) -> str:
  """Builds and runs the pipeline; returns the pipeline name.

  cross_data: a second data set every model is also evaluated on.
  """
  if runner not in RUNNERS:
    raise ValueError(f"runner must be one of {RUNNERS}, got {runner!r}")
  # Fail fast, before any component starts, on a folder we cannot read.
  image_layouts.detect_layout(data, image_layouts.Filesystem())
  if cross_data:
    image_layouts.detect_layout(cross_data, image_layouts.Filesystem())
  paths = output_paths(output)
  name = pipeline_name_for(task)
  pipeline = pipeline_lib.create_pipeline(
      pipeline_name=name,
      pipeline_root=paths["pipeline_root"],
      data_root=os.path.abspath(data),
      task=task,
      serving_base=paths["serving"],
      settings=settings,
      eval_percent=eval_percent,
      input_fingerprint=image_example_gen.fingerprint_folder(data),
      cross_data_root=os.path.abspath(cross_data) if cross_data else None,
      cross_input_fingerprint=(image_example_gen.fingerprint_folder(cross_data)
                               if cross_data else None),
      metadata_connection_config=(
          tfx.orchestration.metadata.sqlite_metadata_connection_config(
              paths["metadata"])),
      beam_pipeline_args=beam_args(beam_mode),
      enable_cache=enable_cache)
  if runner == "beam":
    BeamDagRunner().run(pipeline)
  else:
    tfx.orchestration.LocalDagRunner().run(pipeline)
  return name
