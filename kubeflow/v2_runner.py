"""Compiles the same `create_pipeline()` for Kubeflow Pipelines / Vertex AI.

The result is a KFP v2 pipeline-spec JSON file; submit it with the KFP or
Vertex AI SDK. The container image must hold this package (installed with
constraints.txt), since components refer to user code by module path.
Running on a cluster is not yet part of this project's tests; compiling is.
"""

import os
from typing import List, Optional

from tfx import v1 as tfx

from pipeline import pipeline as pipeline_lib
from schema import layout
from schema import settings as settings_lib


def compile_pipeline(output_file: str, data_root: str, pipeline_root: str,
                     serving_base: str, task: str, image: str,
                     run: settings_lib.RunSettings = settings_lib.RunSettings(),
                     training: settings_lib.TrainingSettings = (
                         settings_lib.TrainingSettings()),
                     gates: settings_lib.GateSettings = (
                         settings_lib.GateSettings()),
                     beam_pipeline_args: Optional[List[str]] = None,
                     cross_data_root: Optional[str] = None) -> str:
  """Writes the pipeline spec JSON; returns its path.

  data_root, pipeline_root, serving_base and cross_data_root (a second data
  set every model is also evaluated on) are cluster paths (gs://...).
  Caching is left to KFP, which keys it on the same inputs and properties.
  """
  pipeline = pipeline_lib.create_pipeline(
      pipeline_name=layout.pipeline_name(task),
      pipeline_root=pipeline_root,
      data_root=data_root,
      task=task,
      serving_base=serving_base,
      run=run,
      training=training,
      gates=gates,
      cross_data_root=cross_data_root,
      beam_pipeline_args=beam_pipeline_args)
  dag_runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
          default_image=image),
      output_dir=os.path.dirname(os.path.abspath(output_file)),
      output_filename=os.path.basename(output_file))
  dag_runner.run(pipeline, write_out=True)
  return output_file
