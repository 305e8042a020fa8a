"""Runs the pipeline on one machine: BeamDagRunner (default) or LocalDagRunner.

Everything lands under the output folder OUT (schema/layout.py):
  OUT/pipeline_root/  artifacts of every component
  OUT/metadata.sqlite ML Metadata (lineage, caching)
  OUT/serving/        pushed models, <model_name>/<version>/ (TF Serving)
"""

import os
import tempfile
from typing import List, Optional

from absl import logging
from tfx import v1 as tfx
from tfx.orchestration import pipeline as tfx_pipeline
from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

from components import image_layouts
from pipeline import pipeline as pipeline_lib
from schema import layout
from schema import settings as settings_lib


def beam_args(mode: str) -> List[str]:
  """Beam DirectRunner settings; multi-processing only pays off at scale.

  In-memory with one worker is the DirectRunner's default, so that mode
  passes no argument at all: given any, TFX's Beam executors build an sdist
  of TFX into a new temporary folder each time one is constructed (for
  remote workers, which must install it), seconds of work per component
  that in-process workers never read.
  """
  if mode not in settings_lib.BEAM_MODES:
    raise ValueError(f"beam mode must be one of {settings_lib.BEAM_MODES}, "
                     f"got {mode!r}")
  if mode == "in_memory":
    return []
  return [f"--direct_running_mode={mode}",
          "--direct_num_workers=0"]  # 0: one per core


def data_folders(data: layout.DataFolders) -> str:
  """The data folders as ingestion takes them (absolute, a comma list),
  each checked to hold a known layout, before any component starts."""
  folders = [os.path.abspath(f) if layout.is_local(f) else f
             for f in layout.data_folders(data)]
  for folder in folders:
    image_layouts.detect_layout(folder)
  for note in layout.source_names(folders)[1]:
    logging.warning("%s", note)
  return layout.join_data_folders(folders)


def run(data: layout.DataFolders, task: str, output: str,
        run_settings: settings_lib.RunSettings = settings_lib.RunSettings(),
        training: settings_lib.TrainingSettings = (
            settings_lib.TrainingSettings()),
        gates: settings_lib.GateSettings = settings_lib.GateSettings(),
        cross_data: Optional[str] = None,
        run_options: Optional[tfx_pipeline.RunOptions] = None) -> str:
  """Builds and runs the pipeline; returns the pipeline name.

  data: a data set folder, or several (a list or a comma list), ingested
  together. cross_data: a second data set every model is also evaluated on.
  run_options: a partial run (TFX's RunOptions: from_nodes, to_nodes), its
  other nodes' artifacts taken from the previous run in the same output.
  """
  # Fail fast, before any component starts, on a folder we cannot read.
  data = data_folders(data)
  if cross_data:
    cross_data = data_folders(cross_data)
  paths = layout.output_paths(output)
  name = layout.pipeline_name(task)
  pipeline = pipeline_lib.create_pipeline(
      pipeline_name=name,
      pipeline_root=paths.pipeline_root,
      data_root=data,
      task=task,
      serving_base=paths.serving,
      run=run_settings,
      training=training,
      gates=gates,
      cross_data_root=cross_data or None,
      metadata_connection_config=(
          tfx.orchestration.metadata.sqlite_metadata_connection_config(
              paths.metadata)),
      beam_pipeline_args=beam_args(run_settings.beam_mode))
  # The components' temporary files (TFX's sdists for multi-processing
  # Beam, the Evaluator's scratch) go to one folder removed after the run,
  # not to the system's temporary folder, which they would fill run by run.
  previous = tempfile.tempdir
  with tempfile.TemporaryDirectory(prefix="cxr-run-") as scratch:
    tempfile.tempdir = scratch
    try:
      if run_settings.runner == "beam":
        BeamDagRunner().run(pipeline, run_options=run_options)
      else:
        tfx.orchestration.LocalDagRunner().run(pipeline,
                                               run_options=run_options)
    finally:
      tempfile.tempdir = previous
  return name
