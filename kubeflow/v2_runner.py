"""Compiles the same `create_pipeline()` for Vertex AI / Kubeflow Pipelines.

TFX's KubeflowV2DagRunner writes a KFP v2 pipeline job (JSON); `cxr submit`
sends it. What this module adds to the local run's pipeline:

* every component runs in `cloud.image` (Dockerfile / Dockerfile.gpu), which
  holds this project, since components name user code by module path;
* the Beam components run on Dataflow (or the DirectRunner in their pod);
* the Trainer gets its accelerator: on Vertex AI as a Vertex custom training
  job (TFX's google_cloud_ai_platform Trainer), on Kubeflow as the task's
  accelerator resource;
* the data folders are runtime parameters (`data_root`, `cross_data_root`),
  defaulting to the folders given, so one compiled file serves many runs;
  data_root holds one folder or several as a comma list;
  models and training settings are fixed at compile time, since TFX cannot
  put runtime parameters inside the Trainer's custom_config;
* ingestion fingerprints its folder at run time, before the cache lookup
  (components/fingerprint_driver.py), through the task's pre-cache-check
  hook.
"""

import json
import os
from typing import Any, Dict, List, Optional

from kfp.pipeline_spec import pipeline_spec_pb2
from tfx import v1 as tfx
from tfx.dsl.io import fileio

from components import fingerprint_driver
from pipeline import pipeline as pipeline_lib
from pipeline import runner
from schema import layout
from schema import settings as settings_lib

DATA_ROOT_PARAMETER = "data_root"
CROSS_DATA_ROOT_PARAMETER = "cross_data_root"
FINGERPRINT_COMMAND = ("python", "-m", fingerprint_driver.__name__)
INGESTION_NODES = (layout.EXAMPLE_GEN, layout.CROSS_EXAMPLE_GEN)
ResourceSpec = (pipeline_spec_pb2.PipelineDeploymentConfig
                .PipelineContainerSpec.ResourceSpec)


def beam_pipeline_args(cloud: settings_lib.CloudSettings,
                       pipeline_root: str) -> List[str]:
  """Dataflow, with the project's image on the workers; or the DirectRunner
  in multi-processing mode inside the component's container."""
  if cloud.beam_runner == "direct":
    return runner.beam_args("multi_processing")
  temp_location = cloud.temp_location or os.path.join(pipeline_root, "tmp")
  return ["--runner=DataflowRunner",
          f"--project={cloud.project}",
          f"--region={cloud.region}",
          f"--temp_location={temp_location}",
          f"--machine_type={cloud.machine_type}",
          f"--max_num_workers={cloud.max_workers}",
          # The workers run the same image, so the project's modules (the
          # ingestion DoFns, preprocessing_fn) are there.
          f"--sdk_container_image={cloud.image}",
          "--experiments=use_runner_v2"]


def vertex_training(cloud: settings_lib.CloudSettings
                    ) -> Optional[Dict[str, Any]]:
  """custom_config of TFX's Vertex AI Trainer: one worker with the GPU."""
  if cloud.engine != "vertex" or cloud.accelerator is None:
    return None
  # pylint: disable-next=g-import-not-at-top
  from tfx.extensions.google_cloud_ai_platform import constants
  kind, count = cloud.accelerator
  ext = tfx.extensions.google_cloud_ai_platform
  return {
      constants.ENABLE_VERTEX_KEY: True,
      constants.VERTEX_REGION_KEY: cloud.region,
      ext.TRAINING_ARGS_KEY: {
          "project": cloud.project,
          "worker_pool_specs": [{
              "machine_spec": {"machine_type": cloud.trainer_machine_type,
                               "accelerator_type": kind,
                               "accelerator_count": count},
              "replica_count": 1,
              "container_spec": {"image_uri": cloud.image},
          }],
      },
  }


def trainer_platform_config(cloud: settings_lib.CloudSettings
                            ) -> Optional[ResourceSpec]:
  """The Trainer task's accelerator on Kubeflow."""
  if cloud.engine != "kubeflow" or cloud.accelerator is None:
    return None
  kind, count = cloud.accelerator
  return ResourceSpec(accelerator=ResourceSpec.AcceleratorConfig(
      type=kind, count=count))


def _add_fingerprint_hooks(job: Dict[str, Any],
                           engine: str) -> Dict[str, Any]:
  """Gives each ingestion task the pre-cache-check hook that fingerprints
  its folder, as TFX's compiler does for its own FileBasedExampleGen (it
  recognises only that class). Vertex AI runs the hook before the cache
  lookup. We found no sign that the open-source Kubeflow backend runs it,
  so there ingestion is not cached: it re-reads the folder every run rather
  than risk a stale hit."""
  spec = job["pipelineSpec"]
  tasks = spec["root"]["dag"]["tasks"]
  for node in INGESTION_NODES:
    if node not in tasks:
      continue
    label = spec["components"][tasks[node]["componentRef"]["name"]][
        "executorLabel"]
    container = spec["deploymentSpec"]["executors"][label]["container"]
    # The same arguments as the executor's: the ExecutorInput, the inputs
    # spec when the compiler writes one, then the Beam flags.
    args = list(container["args"])
    start = args.index(fingerprint_driver.INVOCATION_FLAG)
    container["lifecycle"] = {"preCacheCheck": {
        "command": list(FINGERPRINT_COMMAND), "args": args[start:]}}
    if engine == "kubeflow":
      tasks[node]["cachingOptions"] = {"enableCache": False}
  return job


def check_spec(job: Dict[str, Any]) -> pipeline_spec_pb2.PipelineSpec:
  """The job's pipeline spec as KFP's proto; raises on a malformed one."""
  # pylint: disable-next=g-import-not-at-top
  from google.protobuf import json_format
  spec = pipeline_spec_pb2.PipelineSpec()
  json_format.ParseDict(job["pipelineSpec"], spec)
  return spec


def compile_pipeline(output_file: str, data_root: layout.DataFolders,
                     pipeline_root: str,
                     serving_base: str, task: str,
                     cloud: settings_lib.CloudSettings,
                     run: settings_lib.RunSettings = settings_lib.RunSettings(),
                     training: settings_lib.TrainingSettings = (
                         settings_lib.TrainingSettings()),
                     gates: settings_lib.GateSettings = (
                         settings_lib.GateSettings()),
                     cross_data_root: Optional[str] = None) -> str:
  """Writes the pipeline job JSON; returns its path.

  data_root, pipeline_root, serving_base and cross_data_root (a second data
  set every model is also evaluated on) are paths the cluster reads
  (gs://...); data_root and cross_data_root are the defaults of the runtime
  parameters of the same names. data_root may name several data sets (a
  list or a comma list): the parameter holds their comma list.
  """
  data_root = layout.join_data_folders(data_root)
  runtime_data = tfx.dsl.experimental.RuntimeParameter(
      name=DATA_ROOT_PARAMETER, ptype=str, default=data_root)
  runtime_cross = None
  if cross_data_root:
    runtime_cross = tfx.dsl.experimental.RuntimeParameter(
        name=CROSS_DATA_ROOT_PARAMETER, ptype=str, default=cross_data_root)
  pipeline = pipeline_lib.create_pipeline(
      pipeline_name=layout.pipeline_name(task),
      pipeline_root=pipeline_root,
      data_root=runtime_data,
      task=task,
      serving_base=serving_base,
      run=run,
      training=training,
      gates=gates,
      cross_data_root=runtime_cross,
      beam_pipeline_args=beam_pipeline_args(cloud, pipeline_root),
      vertex_training=vertex_training(cloud),
      trainer_platform_config=trainer_platform_config(cloud))
  dag_runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
      config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
          default_image=cloud.image))
  # The folders given are the parameters' values in the job's runtime
  # config; a submission may override them.
  values = {DATA_ROOT_PARAMETER: data_root}
  if cross_data_root:
    values[CROSS_DATA_ROOT_PARAMETER] = cross_data_root
  job = dag_runner.run(pipeline, parameter_values=values, write_out=False)
  job = _add_fingerprint_hooks(job, cloud.engine)
  check_spec(job)
  fileio.makedirs(os.path.dirname(output_file) or ".")
  with fileio.open(output_file, "w") as f:
    f.write(json.dumps(job, indent=2, sort_keys=True))
  return output_file
