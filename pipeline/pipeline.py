"""The chest X-ray TFX pipeline: a pure factory, the same for every runner.

ImageExampleGen -> ImportSchemaGen -> StatisticsGen -> ExampleValidator ->
DataValidationGate -> Transform, shared; then one Trainer -> (Resolver)
Evaluator -> Pusher branch per model, with node ids `<Component>_<model>`.

User code is referred to by module path (`components.trainer.run_fn`), so the
installed package is the only thing a worker or container needs.
"""

import dataclasses
import os
from typing import List, Optional, Tuple

from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx
from tfx.dsl.components.base import executor_spec

from components import image_example_gen
from components import models as models_lib
from components import pusher as pusher_lib
from components import transform
from components import validation_gate
from pipeline import eval_config
import schema

TRANSFORM_FN = "components.transform.preprocessing_fn"
TRAINER_FN = "components.trainer.run_fn"


@dataclasses.dataclass(frozen=True)
class TrainingSettings:
  """What the Trainer and the Evaluator are asked to do."""
  models: Tuple[str, ...] = models_lib.MODELS  # the thesis's five
  image_size: int = transform.DEFAULT_IMAGE_SIZE
  epochs: int = 30
  batch_size: int = 32
  learning_rate: float = 5e-4
  seed: int = 42
  weights: str = "none"  # transfer models: imagenet, none, or a file path
  class_weight: str = "none"  # or "balanced"
  fine_tune_layers: int = 0  # > 0: a second phase on the top N base layers
  fine_tune_epochs: int = 10
  mixed_precision: str = ""  # "", "float16" or "bfloat16"
  xla: bool = False
  restore_best_epoch: bool = True
  gradcam_layer: str = ""  # "": the last convolutional feature map
  # Blessing floors on the test split. The binary ones sit below every
  # real-data cnn_aug run measured (AUC 0.968-0.977, sensitivity
  # 0.919-0.971 at 128 px, BENCHMARKS.md): a model under them is worse than
  # ten CPU epochs give. Accuracy gates both tasks (the thesis's 3-class
  # model reached 0.821).
  min_accuracy: float = 0.75
  min_auc: float = 0.95  # binary task
  min_recall: float = 0.90  # sensitivity, binary task


# TrainingSettings fields that are not the Trainer's (its custom_config).
_EVALUATION_SETTINGS = ("models", "min_accuracy", "min_auc", "min_recall")


# Node ids of the --cross-data branch: a second ExampleGen, and per model an
# Evaluator of the trained model on that data (the thesis's Table 4).
CROSS_EXAMPLE_GEN = "CrossImageExampleGen"
CROSS_EVALUATOR = "CrossEvaluator"


def serving_model_name(task: str, model: str) -> str:
  return f"cxr_{task}_{model}"


def node_id(component: str, model: str) -> str:
  """Id of a per-model node, e.g. Trainer_cnn_aug."""
  return f"{component}_{model}"


def _model_branch(model: str, task: str, settings: TrainingSettings,
                  transform_component, example_gen, serving_base: str,
                  cross_example_gen=None):
  """Trainer -> Evaluator (baseline: this model's latest blessed) -> Pusher.

  With cross_example_gen, a CrossEvaluator also scores the trained model on
  the other data set's test split; it has no thresholds and gates nothing.
  """
  trainer = tfx.components.Trainer(
      run_fn=TRAINER_FN,
      examples=transform_component.outputs["transformed_examples"],
      transform_graph=transform_component.outputs["transform_graph"],
      train_args=tfx.proto.TrainArgs(splits=["train"]),
      eval_args=tfx.proto.EvalArgs(splits=["eval"]),
      custom_config=dict(
          task=task, model=model,
          **{k: v for k, v in dataclasses.asdict(settings).items()
             if k not in _EVALUATION_SETTINGS}),
  ).with_id(node_id("Trainer", model))

  # Only this branch's models and blessings: another model's blessing is no
  # baseline for this one.
  model_resolver = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model,
                            producer_component_id=trainer.id),
      model_blessing=tfx.dsl.Channel(
          type=tfx.types.standard_artifacts.ModelBlessing,
          producer_component_id=node_id("Evaluator", model)),
  ).with_id(node_id("latest_blessed_model_resolver", model))

  # Blessing is judged on the data set's own test split, never seen in
  # training or model selection.
  evaluator = tfx.components.Evaluator(
      examples=example_gen.outputs["examples"],
      model=trainer.outputs["model"],
      baseline_model=model_resolver.outputs["model"],
      example_splits=["test"],
      eval_config=eval_config.make_eval_config(
          task, settings.min_accuracy, settings.min_auc, settings.min_recall),
  ).with_id(node_id("Evaluator", model))
  nodes = [trainer, model_resolver, evaluator]
  if cross_example_gen is not None:
    nodes.append(tfx.components.Evaluator(
        examples=cross_example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        example_splits=["test"],
        eval_config=eval_config.make_eval_config(task, thresholds=False),
    ).with_id(node_id(CROSS_EVALUATOR, model)))

  pusher = tfx.components.Pusher(
      model=trainer.outputs["model"],
      model_blessing=evaluator.outputs["blessing"],
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(
              base_directory=os.path.join(
                  serving_base, serving_model_name(task, model)))),
      # TFX's Pusher, but a model already served is not pushed again.
      custom_executor_spec=executor_spec.ExecutorClassSpec(pusher_lib.Executor),
  ).with_id(node_id("Pusher", model))
  return nodes + [pusher]


def create_pipeline(
    pipeline_name: str,
    pipeline_root: str,
    data_root: str,
    task: str,
    serving_base: str,
    settings: TrainingSettings = TrainingSettings(),
    eval_percent: int = 10,
    input_fingerprint: Optional[str] = None,
    cross_data_root: Optional[str] = None,
    cross_input_fingerprint: Optional[str] = None,
    metadata_connection_config: Optional[
        metadata_store_pb2.ConnectionConfig] = None,
    beam_pipeline_args: Optional[List[str]] = None,
    enable_cache: bool = True,
) -> tfx.dsl.Pipeline:
  """Builds the pipeline; nothing runs and no file is touched here.

  cross_data_root: a second data set (either layout) every model is also
  evaluated on, its labels read in this task's terms (the thesis's
  cross-data-set accuracy).
  """
  models_lib.check_model_names(settings.models)
  example_gen = image_example_gen.ImageExampleGen(
      input_base=data_root, task=task, eval_percent=eval_percent,
      input_fingerprint=input_fingerprint)
  cross_example_gen = None
  if cross_data_root:
    # The same reader maps the labels: 3-class ids 1 and 2 are pneumonia for
    # the binary task; Kermany file names give bacterial/viral for 3-class.
    cross_example_gen = image_example_gen.ImageExampleGen(
        input_base=cross_data_root, task=task, eval_percent=eval_percent,
        input_fingerprint=cross_input_fingerprint,
    ).with_id(CROSS_EXAMPLE_GEN)
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

  transform_component = tfx.components.Transform(
      examples=example_gen.outputs["examples"],
      schema=schema_importer.outputs["schema"],
      preprocessing_fn=TRANSFORM_FN,
      splits_config=tfx.proto.SplitsConfig(
          analyze=["train"], transform=["train", "eval", "test"]),
      custom_config={"image_size": settings.image_size},
      # Statistics of serialized pixels say nothing a person can use.
      disable_statistics=True)
  transform_component.add_upstream_node(gate)

  branches = []
  for model in settings.models:
    branches += _model_branch(model, task, settings, transform_component,
                              example_gen, serving_base, cross_example_gen)

  return tfx.dsl.Pipeline(
      pipeline_name=pipeline_name,
      pipeline_root=pipeline_root,
      components=([example_gen, schema_importer, statistics_gen,
                   example_validator, gate, transform_component]
                  + ([cross_example_gen] if cross_example_gen else [])
                  + branches),
      enable_cache=enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=beam_pipeline_args or [])
