"""What the latest run of a pipeline did, read back from ML Metadata.

Reads only the run's own records (executions of the latest `pipeline_run`
context, cached ones included), so a summary never mixes runs.
"""

import dataclasses
import json
import os
from typing import Dict, Iterator, List, Optional, Tuple

from google.protobuf import text_format
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
import tensorflow as tf
import tensorflow_data_validation as tfdv
import tensorflow_model_analysis as tfma
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.dsl.io import fileio
from tfx.types import standard_artifacts

from components import image_example_gen
from pipeline import eval_config
from schema import layout

# Metrics the one-line summaries show; the report shows every metric.
_HEADLINE = ("example_count", "binary_accuracy", "sparse_categorical_accuracy",
             "auc", "auc_pr", "loss", "precision", "recall", "specificity",
             eval_config.ACCURACY_AT_THRESHOLD, eval_config.RECALL_AT_THRESHOLD,
             eval_config.SPECIFICITY_AT_THRESHOLD,
             "specificity_at_sensitivity", "sensitivity_at_specificity")
# slice -> metric -> value, and the same for (lower, upper) 95% bounds.
Metrics = Dict[str, Dict[str, float]]
Intervals = Dict[str, Dict[str, Tuple[float, float]]]
# (metric name, lower bound) of a floor the Evaluator applied.
Floor = Tuple[str, float]
# Executions whose outputs are there: run now, or taken from the cache.
_DONE = (metadata_store_pb2.Execution.COMPLETE,
         metadata_store_pb2.Execution.CACHED)
# The same states by name, as RunSummary.states holds them.
DONE_STATES = tuple(metadata_store_pb2.Execution.State.Name(s) for s in _DONE)


def threshold_text(op: dict) -> str:
  """'0.7416 [0.6123, 0.8302 over eval resamples]': a history.json
  operating point's threshold, with its bootstrap range when it has one."""
  text = f"{op['threshold']:.4f}"
  if op.get("threshold_range"):
    low, high = op["threshold_range"]
    text += f" [{low:.4f}, {high:.4f} over eval resamples]"
  return text


@dataclasses.dataclass
class ModelResult:
  """One model's branch: Trainer -> Evaluator -> Pusher."""
  model: str
  metrics: Dict[str, Dict[str, float]]  # slice -> metric -> value
  blessed: Optional[bool]
  failed_thresholds: List[str]
  pushed_model: Optional[str]
  # Where the branch's artifacts are (None when the step did not complete).
  model_uri: Optional[str] = None  # Trainer's Model (serving model inside)
  model_run_uri: Optional[str] = None  # history.json, curves.png, logs
  evaluation_uri: Optional[str] = None  # TFMA output on the test split
  # Wall seconds of the branch's executions this run, by component
  # ("Trainer", "Evaluator", ...); a cached execution took no time.
  seconds: Dict[str, float] = dataclasses.field(default_factory=dict)
  # The same model on the --cross-data set, mapped to this task's labels.
  cross_metrics: Dict[str, Dict[str, float]] = dataclasses.field(
      default_factory=dict)
  cross_evaluation_uri: Optional[str] = None
  # 95% bootstrap intervals of the metrics above, where TFMA computed them.
  intervals: Intervals = dataclasses.field(default_factory=dict)
  cross_intervals: Intervals = dataclasses.field(default_factory=dict)
  # The blessing floors: (metric, floor) on the whole test split.
  floors: List[Floor] = dataclasses.field(default_factory=list)
  # history.json's calibration and operating point, when the Trainer wrote
  # them.
  calibration: Optional[dict] = None
  operating_point: Optional[dict] = None
  # What trained it and in which compute dtype (history.json).
  device: Optional[str] = None
  precision: Optional[str] = None

  def _shown(self, name: str, value: float, interval) -> str:
    if name == "example_count":
      return f"{name} {value:.0f}"
    text = f"{name} {value:.4f}"
    if interval is not None:
      text += f" [{interval[0]:.4f}, {interval[1]:.4f}]"
    return text

  def lines(self) -> List[str]:
    out = [f"  model {self.model}:"]
    if self.device:
      out.append(f"    trained on {self.device}, compute "
                 + ("float32" if self.precision in (None, "float32")
                    else f"mixed {self.precision}"))
    if self.operating_point:
      op = self.operating_point
      text = (f"    operating point: {op['rule']} on the eval split -> "
              f"threshold {threshold_text(op)} (eval sensitivity "
              f"{op['eval_sensitivity']:.4f}, specificity "
              f"{op['eval_specificity']:.4f})")
      if op.get("note"):
        text += f" NOTE: {op['note']}"
      if self.calibration and self.calibration["method"] != "none":
        text += (f"; temperature {self.calibration['temperature']:.3f} "
                 f"(eval ECE {self.calibration['before']['ece']:.4f} -> "
                 f"{self.calibration['after']['ece']:.4f})")
        if self.calibration.get("note"):
          text += f" NOTE: {self.calibration['note']}"
      out.append(text)
    # Overall first. A per-label slice holds one class: its accuracy is the
    # class's recall, and AUC, precision, recall, specificity are undefined.
    for slice_name, values in sorted(
        self.metrics.items(), key=lambda kv: (kv[0] != "Overall", kv[0])):
      bounds = self.intervals.get(slice_name, {})
      shown = ", ".join(
          self._shown(k, v, bounds.get(k) if slice_name == "Overall"
                      else None)
          for k, v in sorted(values.items())
          if (slice_name == "Overall" and (k in _HEADLINE or "classId" in k))
          or k in ("example_count", "loss") or "accuracy" in k)
      out.append(f"    test metrics [{slice_name}]: {shown}")
    cross = self.cross_metrics.get("Overall")
    if cross:
      bounds = self.cross_intervals.get("Overall", {})
      out.append("    cross-data metrics [Overall]: " + ", ".join(
          self._shown(k, v, bounds.get(k))
          for k, v in sorted(cross.items()) if k in _HEADLINE))
    if self.blessed is not None:
      out.append("    blessed: " + ("yes" if self.blessed else "NO"))
      out.extend(f"      failed: {f}" for f in self.failed_thresholds)
      out.extend(f"      uncertain: {u}" for u in self.uncertain_floors())
    out.append("    pushed model: "
               + (_short(self.pushed_model) if self.pushed_model else "none"))
    return out

  def uncertain_floors(self) -> List[str]:
    """The floors lying inside their metric's 95% interval: blessing went
    by the point estimate, which this test split cannot pin down."""
    out = []
    overall = self.intervals.get("Overall", {})
    for name, floor in self.floors:
      bounds = overall.get(name)
      if bounds is not None and bounds[0] <= floor <= bounds[1]:
        out.append(f"the floor {floor:g} on {name} lies inside its 95% "
                   f"interval [{bounds[0]:.4f}, {bounds[1]:.4f}]")
    return out


@dataclasses.dataclass
class RunSummary:
  pipeline_name: str
  run_id: str
  states: Dict[str, str]  # node id -> execution state
  image_counts: Dict[str, int]
  quarantine_csv: Optional[str]
  models: Dict[str, ModelResult]  # by model name, in pipeline order
  # The --cross-data set's ingestion, when the run had one.
  cross_image_counts: Dict[str, int] = dataclasses.field(default_factory=dict)
  # The training data sets: source -> folder, layout and split counts.
  sources: Dict[str, dict] = dataclasses.field(default_factory=dict)
  # Wall seconds of every node run now (not cached), by node id, from its
  # execution's creation to its last update in ML Metadata.
  seconds: Dict[str, float] = dataclasses.field(default_factory=dict)

  def lines(self) -> List[str]:
    c = self.image_counts
    out = [f"Pipeline {self.pipeline_name}, run {self.run_id}"]
    if c:
      out.append(
          f"  images: {c.get('ingested', 0)} ingested (train {c.get('train')}, "
          f"eval {c.get('eval')}, test {c.get('test')}), "
          f"{c.get('quarantined', 0)} quarantined"
          + (f" -> {_short(self.quarantine_csv)}" if c.get("quarantined")
             else ""))
      if c.get(layout.DICOM_COUNT):
        out.append(f"  {c[layout.DICOM_COUNT]} of them read from DICOM "
                   "files (16-bit PNG of the displayed pixels)")
      if c.get(layout.RESCALED_COUNT):
        out.append(f"  {c[layout.RESCALED_COUNT]} 16-bit PNGs held fewer "
                   "bits (e.g. 12) and were scaled by the bits they use")
      if c.get(layout.SPLIT_BY_IMAGE_COUNT):
        out.append(f"  {c[layout.SPLIT_BY_IMAGE_COUNT]} images had no "
                   "patient id and were split by image: a leakage risk")
    if len(self.sources) > 1:
      for source, info in self.sources.items():
        out.append(
            f"  data set {source} ({_short(info.get('folder', '?'))}): "
            f"train {info.get('train')}, eval {info.get('eval')}, test "
            f"{info.get('test')}"
            + (" (test carved by patient)" if info.get("test_carved")
               else ""))
    for result in self.models.values():
      out.extend(result.lines())
    not_done = {n: s for n, s in self.states.items() if s not in DONE_STATES}
    if not_done:
      out.append(f"  not completed: {not_done}")
    return out


def _short(path: str) -> str:
  """Relative to the working folder when inside it, as a person typed it."""
  rel = os.path.relpath(path)
  return path if rel.startswith("..") else rel


def open_store(metadata_path: str) -> metadata_store.MetadataStore:
  """The ML Metadata store of a run folder, read-only."""
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = metadata_path
  config.sqlite.connection_mode = (
      metadata_store_pb2.SqliteMetadataSourceConfig.READONLY)
  return metadata_store.MetadataStore(config)


def _slice_name(slice_key) -> str:
  return tfma.slicer.stringify_slice_key(slice_key) or "Overall"


def within_range(name: str, lower: float, upper: float
                 ) -> Tuple[float, float]:
  """A metric's 95% bounds, clipped to [0, 1] for a proportion.

  TFMA's Poisson bootstrap gives the mean of the resamples plus or minus t
  standard errors, which can pass 1 for an AUC near its top; no resample's
  proportion can, so the bound shown is 1.
  """
  if name in eval_config.PROPORTIONS:
    return max(lower, 0.0), min(upper, 1.0)
  return lower, upper


def read_evaluation(evaluation_uri: str
                    ) -> Tuple[Metrics, Intervals, List[Floor]]:
  """(slice -> metric name -> value, slice -> metric name -> 95% bounds,
  the floors of its config) from an Evaluator output folder, read once.
  Metric names are unique across the model's outputs (eval_config names
  the operating point's apart)."""
  result = tfma.load_eval_result(evaluation_uri)
  metrics_out, intervals_out = {}, {}
  for slice_key, by_output in result.slicing_metrics:
    values, bounds = {}, {}
    for by_sub_key in by_output.values():
      # sub_key is "" or, for per-class metrics, e.g. "classId:2".
      for sub_key, metrics in by_sub_key.items():
        for name, value in metrics.items():
          key = f"{name} {sub_key}" if sub_key else name
          if "doubleValue" in value:
            values[key] = float(value["doubleValue"])
          elif "boundedValue" in value:
            bounded = value["boundedValue"]
            values[key] = float(bounded.get("value", 0.0))
            bounds[key] = within_range(
                name, float(bounded.get("lowerBound", 0.0)),
                float(bounded.get("upperBound", 0.0)))
    name = _slice_name(slice_key)
    metrics_out[name], intervals_out[name] = values, bounds
  return metrics_out, intervals_out, _floors(result.config)


def _floors(config: tfma.EvalConfig) -> List[Floor]:
  floors = []
  for spec in config.metrics_specs:
    for metric in spec.metrics:
      for per_slice in metric.per_slice_thresholds:
        value = per_slice.threshold.value_threshold
        if value.HasField("lower_bound"):
          name = (json.loads("{" + metric.config + "}").get("name")
                  if metric.config else None)
          floors.append((name or eval_config.default_metric_name(
              metric.class_name), value.lower_bound.value))
  return floors


def failed_thresholds(evaluation_uri: str) -> List[str]:
  """'metric on slice: value v, threshold t' for every failed validation."""
  result = tfma.load_validation_result(evaluation_uri)
  failed = []
  for slice_failure in result.metric_validations_per_slice:
    name = _slice_name(tfma.slicer.deserialize_slice_key(
        slice_failure.slice_key))
    for failure in slice_failure.failures:
      threshold = text_format.MessageToString(failure.metric_threshold,
                                              as_one_line=True)
      failed.append(f"{failure.metric_key.name} on {name} is "
                    f"{failure.metric_value.double_value.value:.4f}; "
                    f"threshold {threshold} {failure.message}".rstrip())
  return failed


def summarize(metadata_path: str, pipeline_name: str) -> RunSummary:
  """Summary of the latest run of `pipeline_name` in the metadata store."""
  if not os.path.exists(metadata_path):
    raise FileNotFoundError(f"no ML Metadata at {metadata_path}")
  store = open_store(metadata_path)
  pipeline_ctx = store.get_context_by_type_and_name("pipeline", pipeline_name)
  if pipeline_ctx is None:
    raise ValueError(f"pipeline {pipeline_name} has never run here")
  executions = store.get_executions_by_context(pipeline_ctx.id)
  runs = {}
  for execution in executions:
    for ctx in store.get_contexts_by_execution(execution.id):
      if ctx.type == "pipeline_run":
        runs[ctx.id] = ctx
  run = max(runs.values(), key=lambda c: c.create_time_since_epoch)
  states, outputs, seconds = {}, {}, {}
  state_names = metadata_store_pb2.Execution.State.Name
  for execution in store.get_executions_by_context(run.id):
    node = next(c.name.split(".", 1)[1]
                for c in store.get_contexts_by_execution(execution.id)
                if c.type == "node")
    states[node] = state_names(execution.last_known_state)
    if execution.last_known_state == metadata_store_pb2.Execution.COMPLETE:
      seconds[node] = (execution.last_update_time_since_epoch
                       - execution.create_time_since_epoch) / 1000.0
    if execution.last_known_state not in _DONE:
      continue
    events = store.get_events_by_execution_ids([execution.id])
    ids = [e.artifact_id for e in events
           if e.type == metadata_store_pb2.Event.OUTPUT]
    for artifact in store.get_artifacts_by_id(ids):
      outputs[(node, store.get_artifact_types_by_id(
          [artifact.type_id])[0].name)] = artifact

  def output(node, artifact_type):
    """The node's output of a TFX artifact class, e.g. Examples."""
    return outputs.get((node, artifact_type.TYPE_NAME))

  examples = output(layout.EXAMPLE_GEN, standard_artifacts.Examples)
  quarantine = output(layout.EXAMPLE_GEN, image_example_gen.ImageQuarantine)
  def image_counts(artifact):
    if artifact is None:
      return {}
    return json.loads(artifact.custom_properties[
        layout.COUNTS_PROPERTY].string_value)

  counts = image_counts(examples)
  sources = {}
  if examples is not None and layout.SOURCES_PROPERTY in (
      examples.custom_properties):
    sources = json.loads(examples.custom_properties[
        layout.SOURCES_PROPERTY].string_value)
  cross_counts = image_counts(
      output(layout.CROSS_EXAMPLE_GEN, standard_artifacts.Examples))
  results = {}
  for node in states:
    model = layout.model_of_node(layout.TRAINER, node)
    if model is None:
      continue
    evaluator = layout.node_id(layout.EVALUATOR, model)
    evaluation = output(evaluator, standard_artifacts.ModelEvaluation)
    blessing = output(evaluator, standard_artifacts.ModelBlessing)
    pushed = output(layout.node_id(layout.PUSHER, model),
                    standard_artifacts.PushedModel)
    blessed = None
    if blessing is not None:
      blessed = bool(blessing.custom_properties["blessed"].int_value)
    pushed_path = None
    if pushed is not None and pushed.custom_properties["pushed"].int_value:
      pushed_path = pushed.custom_properties["pushed_destination"].string_value
    trained = output(node, standard_artifacts.Model)
    model_run = output(node, standard_artifacts.ModelRun)
    cross = output(layout.node_id(layout.CROSS_EVALUATOR, model),
                   standard_artifacts.ModelEvaluation)
    branch_seconds = {}
    for component in layout.BRANCH_COMPONENTS:
      node_seconds = seconds.get(layout.node_id(component, model))
      if node_seconds is not None:
        branch_seconds[component] = node_seconds
    metrics, intervals, floors = (read_evaluation(evaluation.uri)
                                  if evaluation else ({}, {}, []))
    cross_metrics, cross_intervals, _ = (read_evaluation(cross.uri) if cross
                                         else ({}, {}, []))
    results[model] = ModelResult(
        model=model,
        metrics=metrics,
        intervals=intervals,
        floors=floors,
        blessed=blessed,
        failed_thresholds=(failed_thresholds(evaluation.uri)
                           if evaluation and blessed is False else []),
        pushed_model=pushed_path,
        model_uri=trained.uri if trained else None,
        model_run_uri=model_run.uri if model_run else None,
        evaluation_uri=evaluation.uri if evaluation else None,
        seconds=branch_seconds,
        cross_metrics=cross_metrics,
        cross_intervals=cross_intervals,
        cross_evaluation_uri=cross.uri if cross else None)
    history = read_history(results[model]) or {}
    results[model].calibration = history.get("calibration")
    results[model].operating_point = history.get("operating_point")
    results[model].device = history.get("device")
    results[model].precision = (history.get("recipe")
                                or {}).get("mixed_precision")
  return RunSummary(
      pipeline_name=pipeline_name,
      run_id=run.name,
      states=states,
      image_counts=counts,
      quarantine_csv=(os.path.join(quarantine.uri, layout.QUARANTINE_FILE)
                      if quarantine is not None else None),
      models=results,
      cross_image_counts=cross_counts,
      sources=sources,
      seconds=seconds)


def evaluated_examples_uri(metadata_path: str,
                           evaluation_uri: str) -> Optional[str]:
  """URI of the Examples artifact the Evaluator that wrote `evaluation_uri`
  read, i.e. the images its test metrics are about (lineage in MLMD)."""
  store = open_store(metadata_path)
  artifacts = store.get_artifacts_by_uri(evaluation_uri)
  if not artifacts:
    return None
  producers = [e.execution_id for e in store.get_events_by_artifact_ids(
      [a.id for a in artifacts]) if e.type == metadata_store_pb2.Event.OUTPUT]
  inputs = [e.artifact_id for e in store.get_events_by_execution_ids(producers)
            if e.type == metadata_store_pb2.Event.INPUT]
  for artifact in store.get_artifacts_by_id(inputs):
    type_name = store.get_artifact_types_by_id([artifact.type_id])[0].name
    if type_name == standard_artifacts.Examples.TYPE_NAME:
      return artifact.uri
  return None


def _newest_output(output: str, node: str, key: str, what: str) -> str:
  """The folder of a node's newest output under a run's output folder
  (outputs are numbered by execution); FileNotFoundError when there is
  none."""
  runs = fileio.glob(os.path.join(layout.output_paths(output).pipeline_root,
                                  node, key, "*"))
  if not runs:
    raise FileNotFoundError(f"no {what} under {output}: run "
                            "`cxr run --output` there first")
  return max(runs, key=lambda r: int(os.path.basename(r)))


def ingested_examples(output: str, split: str) -> Iterator[tf.train.Example]:
  """The tf.Examples of one split of the newest ingest under a run's output
  folder (ImageExampleGen's newest execution); FileNotFoundError when the
  run ingested nothing."""
  newest = _newest_output(output, layout.EXAMPLE_GEN, "examples",
                          "ingested examples")
  files = sorted(fileio.glob(os.path.join(newest, f"Split-{split}", "*")))
  for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
    yield tf.train.Example.FromString(record.numpy())


def image_statistics(output: str, split: str):
  """TFDV statistics (DatasetFeatureStatisticsList) of the image summaries
  of one split, from the newest ImageStatisticsGen under a run's output
  folder; FileNotFoundError when the run has none."""
  newest = _newest_output(output, layout.IMAGE_STATISTICS_GEN, "statistics",
                          "image statistics (ImageStatisticsGen)")
  path = os.path.join(newest, f"Split-{split}",
                      stats_artifact_utils.BINARY_PB_BASENAME)
  if not fileio.exists(path):
    raise FileNotFoundError(f"no {split} split in the image statistics "
                            f"{newest}")
  return tfdv.load_stats_binary(path)


def read_history(result: ModelResult) -> Optional[dict]:
  """The Keras history the model's Trainer wrote (None when there is none).

  Besides Keras's per-epoch metrics it holds the epochs' seconds, the
  device and the exported epoch.
  """
  if not result.model_run_uri:
    return None
  path = os.path.join(result.model_run_uri, layout.HISTORY_FILE)
  if not fileio.exists(path):
    return None
  with fileio.open(path) as f:
    return json.load(f)
