"""The chest X-ray TFX pipeline: a pure factory, the same for every runner.

ImageExampleGen -> ImportSchemaGen -> StatisticsGen -> ExampleValidator ->
DataValidationGate -> Transform, shared, with ImageStatisticsGen beside them
(what the images look like, for `cxr skew`); then one Trainer -> (Resolver)
Evaluator -> Pusher branch per model, with node ids `<Component>_<model>`.

User code is referred to by module path (`components.trainer.run_fn`), so the
installed package is the only thing a worker or container needs.
"""

import os
from typing import Any, Dict, List, Optional, Sequence, Union

from google.protobuf import message
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec
from tfx.orchestration import data_types

from components import image_example_gen
from components import image_statistics
from components import pusher as pusher_lib
from components import transform
from components import validation_gate
from pipeline import eval_config
import schema
from schema import contract
from schema import layout
from schema import settings as settings_lib

TRANSFORM_FN = "components.transform.preprocessing_fn"
TRAINER_FN = "components.trainer.run_fn"
# Data folders: one, several (a list or a comma list), or a runtime
# parameter holding the comma list (set per compiled run).
DataRoot = Union[str, Sequence[str], data_types.RuntimeParameter]


def _trainer(model: str, task: str, training: settings_lib.TrainingSettings,
             transform_component, vertex_training: Optional[Dict[str, Any]],
             platform_config: Optional[message.Message]):
  """TFX's Trainer, or its Vertex AI extension with the same run_fn."""
  trainer_class = tfx.components.Trainer
  custom_config = settings_lib.trainer_custom_config(task, model, training)
  if vertex_training:
    trainer_class = tfx.extensions.google_cloud_ai_platform.Trainer
    custom_config.update(vertex_training)
  trainer = trainer_class(
      run_fn=TRAINER_FN,
      examples=transform_component.outputs["transformed_examples"],
      transform_graph=transform_component.outputs["transform_graph"],
      train_args=tfx.proto.TrainArgs(splits=[contract.TRAIN]),
      eval_args=tfx.proto.EvalArgs(splits=[contract.EVAL]),
      custom_config=custom_config,
  ).with_id(layout.node_id(layout.TRAINER, model))
  if platform_config is not None:
    trainer = trainer.with_platform_config(platform_config)
  return trainer


def _model_branch(model: str, task: str, trainer, gates:
                  settings_lib.GateSettings, example_gen, serving_base: str,
                  cross_example_gen=None, confidence_intervals: bool = True):
  """Trainer -> Evaluator (baseline: this model's latest blessed) -> Pusher.

  With cross_example_gen, a CrossEvaluator also scores the trained model on
  the other data set's test split; it has no thresholds and gates nothing.
  """

  # Only this branch's models and blessings: another model's blessing is no
  # baseline for this one.
  model_resolver = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model,
                            producer_component_id=trainer.id),
      model_blessing=tfx.dsl.Channel(
          type=tfx.types.standard_artifacts.ModelBlessing,
          producer_component_id=layout.node_id(layout.EVALUATOR, model)),
  ).with_id(layout.node_id(layout.RESOLVER, model))

  # Blessing is judged on the data set's own test split, never seen in
  # training or model selection.
  evaluator = tfx.components.Evaluator(
      examples=example_gen.outputs["examples"],
      model=trainer.outputs["model"],
      baseline_model=model_resolver.outputs["model"],
      example_splits=[contract.TEST],
      eval_config=eval_config.make_eval_config(
          task, gates, confidence_intervals=confidence_intervals),
  ).with_id(layout.node_id(layout.EVALUATOR, model))
  nodes = [trainer, model_resolver, evaluator]
  if cross_example_gen is not None:
    nodes.append(tfx.components.Evaluator(
        examples=cross_example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        example_splits=[contract.TEST],
        eval_config=eval_config.make_eval_config(
            task, thresholds=False,
            confidence_intervals=confidence_intervals),
    ).with_id(layout.node_id(layout.CROSS_EVALUATOR, model)))

  pusher = tfx.components.Pusher(
      model=trainer.outputs["model"],
      model_blessing=evaluator.outputs["blessing"],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(
              base_directory=os.path.join(
                  serving_base, layout.serving_model_name(task, model)))),
      # TFX's Pusher, but a model already served is not pushed again.
      custom_executor_spec=executor_spec.ExecutorClassSpec(pusher_lib.Executor),
  ).with_id(layout.node_id(layout.PUSHER, model))
  return nodes + [pusher]


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    data_root: DataRoot,
    task: str,
    serving_base: str,
    run: settings_lib.RunSettings = settings_lib.RunSettings(),
    training: settings_lib.TrainingSettings = settings_lib.TrainingSettings(),
    gates: settings_lib.GateSettings = settings_lib.GateSettings(),
    cross_data_root: Optional[DataRoot] = None,
    metadata_connection_config: Optional[
        metadata_store_pb2.ConnectionConfig] = None,
    beam_pipeline_args: Optional[List[str]] = None,
    vertex_training: Optional[Dict[str, Any]] = None,
    trainer_platform_config: Optional[message.Message] = None,
) -> tfx.dsl.Pipeline:
  """Builds the pipeline; nothing runs and no file is touched here.

  data_root, cross_data_root: folders, or runtime parameters holding them.
  data_root may name several data sets, all ingested by the one
  ImageExampleGen, each under its own source: the pipeline's shape does not
  change with their number. cross_data_root is a second data set (either
  layout) every model is also
  evaluated on, its labels read in this task's terms (the thesis's
  cross-data-set accuracy). Ingestion fingerprints each folder when it runs
  (components/fingerprint_driver.py), so caching follows the folder's files.
  vertex_training: the custom_config entries of TFX's Vertex AI Trainer
  extension (`ai_platform_*`: region, training job args with the worker
  pool and its accelerator); given, each Trainer runs as a Vertex AI
  custom training job. trainer_platform_config: the Trainer task's
  resources on Kubeflow (a KFP ResourceSpec, e.g. its accelerator).
  """
  example_gen = image_example_gen.ImageExampleGen(
      input_base=data_root, task=task, eval_percent=run.eval_percent,
      patient_id_pattern=run.patient_id_pattern, views=run.views,
      patient_salt=run.patient_salt,
  ).with_id(layout.EXAMPLE_GEN)
  cross_example_gen = None
  if cross_data_root:
    # The same reader maps the labels: 3-class ids 1 and 2 are pneumonia for
    # the binary task; Kermany file names give bacterial/viral for 3-class.
    cross_example_gen = image_example_gen.ImageExampleGen(
        input_base=cross_data_root, task=task, eval_percent=run.eval_percent,
        patient_id_pattern=run.patient_id_pattern, views=run.views,
        patient_salt=run.patient_salt,
    ).with_id(layout.CROSS_EXAMPLE_GEN)
  schema_importer = tfx.components.ImportSchemaGen(
      schema_file=schema.schema_path(task))
  statistics_gen = tfx.components.StatisticsGen(
      examples=example_gen.outputs["examples"],
      schema=schema_importer.outputs["schema"])
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs["statistics"],
      schema=schema_importer.outputs["schema"])
  gate = validation_gate.DataValidationGate(
      anomalies=example_validator.outputs["anomalies"])
  image_statistics_gen = image_statistics.ImageStatisticsGen(
      examples=example_gen.outputs["examples"]).with_id(
          layout.IMAGE_STATISTICS_GEN)

  transform_component = tfx.components.Transform(
      examples=example_gen.outputs["examples"],
      schema=schema_importer.outputs["schema"],
      preprocessing_fn=TRANSFORM_FN,
      splits_config=tfx.proto.SplitsConfig(
          analyze=[contract.TRAIN], transform=list(contract.SPLITS)),
      custom_config=transform.make_custom_config(training.image_size,
                                                 training.resize),
      # Statistics of serialized pixels say nothing a person can use.
      disable_statistics=True)
  transform_component.add_upstream_node(gate)

  branches = []
  for model in run.models:
    trainer = _trainer(model, task, training, transform_component,
                       vertex_training, trainer_platform_config)
    branches += _model_branch(model, task, trainer, gates, example_gen,
                              serving_base, cross_example_gen,
                              run.confidence_intervals)

  return tfx.dsl.Pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      components=([example_gen, schema_importer, statistics_gen,
                   example_validator, gate, image_statistics_gen,
                   transform_component]
                  + ([cross_example_gen] if cross_example_gen else [])
                  + branches),
      enable_cache=run.enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=beam_pipeline_args or [])
