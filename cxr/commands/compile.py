"""`cxr compile --engine vertex|kubeflow --output pipeline.json ...`: the
pipeline as a KFP v2 job for Vertex AI Pipelines or Kubeflow Pipelines."""

import os
import sys

from schema import contract
from schema import settings

# The run settings that mean something on a cluster; the orchestrator and
# the local Beam mode do not.
RUN_FIELDS = ("models", "eval_percent", "patient_id_pattern", "views",
              "patient_salt", "enable_cache")


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      "compile", help="compile the pipeline for Vertex AI / Kubeflow",
      description="Compiles the pipeline `cxr run` runs into a KFP v2 job "
      "file for `cxr submit`. --data and --cross-data become the runtime "
      "parameters data_root and cross_data_root (a submission may change "
      "them; data_root takes a comma list of folders); models and training "
      "settings are fixed in the file, since "
      "TFX cannot make the Trainer's settings runtime parameters.")
  parser.add_argument("--output", required=True,
                      help="the job file to write (.json; local or gs://)")
  parser.add_argument("--pipeline-root", required=True,
                      help="where the cluster writes artifacts (gs://...)")
  parser.add_argument("--data", required=True, action="append",
                      help="data set folder the cluster reads (gs://...); "
                      "several, given again or as a comma list, are "
                      "ingested together. The default of the runtime "
                      "parameter data_root, which takes the same comma list")
  parser.add_argument("--cross-data", default=None,
                      help="a second data set every model is also "
                      "evaluated on; the default of cross_data_root")
  parser.add_argument("--serving-base", default=None,
                      help="where blessed models are pushed, "
                      "<model name>/<version>/ as TF Serving reads them "
                      "(default: PIPELINE_ROOT/serving)")
  parser.add_argument("--task", required=True, choices=contract.TASKS)
  settings.add_arguments(parser, settings.CloudSettings)
  settings.add_arguments(parser, settings.RunSettings, only=RUN_FIELDS)
  for cls in (settings.TrainingSettings, settings.GateSettings):
    settings.add_arguments(parser, cls)
  parser.set_defaults(func=main)


def main(args) -> int:
  try:
    cloud = settings.from_args(settings.CloudSettings, args)
    run = settings.from_args(settings.RunSettings, args)
    training = settings.from_args(settings.TrainingSettings, args)
    gates = settings.from_args(settings.GateSettings, args)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  # pylint: disable=g-import-not-at-top
  from kubeflow import v2_runner
  from schema import layout
  try:
    data_root = layout.join_data_folders(args.data)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  serving_base = args.serving_base or os.path.join(args.pipeline_root,
                                                   layout.SERVING_DIR)
  path = v2_runner.compile_pipeline(
      args.output, data_root=data_root, pipeline_root=args.pipeline_root,
      serving_base=serving_base, task=args.task, cloud=cloud, run=run,
      training=training, gates=gates, cross_data_root=args.cross_data)
  print(f"compiled {layout.pipeline_name(args.task)} for {cloud.engine}: "
        f"{path}")
  return 0
