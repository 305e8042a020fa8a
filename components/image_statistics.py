"""ImageStatisticsGen: TFDV statistics of what the ingested images look like.

StatisticsGen describes the examples' features (label, source, sizes), not
the pixels. This component summarizes every ingested image in six numbers
(serving/server/image_summary.py: size, channels, brightness, contrast,
border brightness) and writes TFDV statistics of those summaries per
split, as a standard `ExampleStatistics` artifact (`Split-<split>/
FeatureStats.pb`, what StatisticsGen writes). `cxr skew` compares the train
split's with the summaries of served images computed by the same function,
under the comparators of schema/image_summary.pbtxt.

The summaries become tf.Examples and then TFDV's own Beam statistics
(tfx_bsl's TFExampleBeamRecord, tfdv.GenerateStatistics), so the training
side is measured with the same statistics generator as any TFX split.
An image that does not decode (ingestion kept only decodable ones, so
none should) is counted, not summarized; the counts are the artifact's
`image_counts` property.
"""

import json
import os
from typing import Any, Dict, List

from absl import logging
import apache_beam as beam
from apache_beam.metrics.metric import Metrics, MetricsFilter
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tfx import types
from tfx.components.statistics_gen import stats_artifact_utils
from tfx.components.util import tfxio_utils
from tfx.dsl.components.base import base_beam_component
from tfx.dsl.components.base import base_beam_executor
from tfx.dsl.components.base import executor_spec
from tfx.types import artifact_utils
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter
from tfx_bsl.public import tfxio

from schema import contract
from schema import layout
from serving.server import image_summary

_TELEMETRY = ["cxr", "ImageStatisticsGen"]
_METRICS_NAMESPACE = "cxr_image_statistics"
_RAW = "raw_record"


def summarized_counter(split: str) -> str:
  return f"summarized_{split}"


def undecodable_counter(split: str) -> str:
  return f"undecodable_{split}"


class _Summarize(beam.DoFn):
  """A serialized ingested tf.Example -> its image's summary tf.Example."""

  def __init__(self, split: str):
    super().__init__()
    self._split = split

  def setup(self):
    self._summarized = Metrics.counter(_METRICS_NAMESPACE,
                                       summarized_counter(self._split))
    self._undecodable = Metrics.counter(_METRICS_NAMESPACE,
                                        undecodable_counter(self._split))

  def process(self, record: bytes):
    example = tf.train.Example.FromString(record)
    image = example.features.feature[contract.IMAGE_KEY].bytes_list.value
    try:
      summary = image_summary.summarize(image[0] if image else b"")
    except ValueError:
      self._undecodable.inc()
      return
    self._summarized.inc()
    yield image_summary.as_example(summary)


def build_pipeline(pipeline: beam.Pipeline, examples: types.Artifact,
                   statistics: types.Artifact) -> None:
  """Every split of `examples`: read, summarize, TFDV statistics, write."""
  splits = artifact_utils.decode_split_names(examples.split_names)
  statistics.split_names = artifact_utils.encode_split_names(splits)
  summaries_io = tfxio.TFExampleBeamRecord(physical_format="inmem",
                                           telemetry_descriptors=_TELEMETRY)
  for split in splits:
    source = tfxio_utils.get_split_tfxio(
        examples=[examples], split=split, telemetry_descriptors=_TELEMETRY,
        read_as_raw_records=True, raw_record_column_name=_RAW)
    _ = (pipeline
         | f"Read[{split}]" >> source.RawRecordBeamSource()
         | f"Summarize[{split}]" >> beam.ParDo(_Summarize(split))
         | f"ToRecordBatches[{split}]" >> summaries_io.BeamSource()
         | f"Statistics[{split}]" >> tfdv.GenerateStatistics(
             tfdv.StatsOptions())
         | f"Write[{split}]" >> tfdv.WriteStatisticsToBinaryFile(
             os.path.join(artifact_utils.get_split_uri([statistics], split),
                          stats_artifact_utils.BINARY_PB_BASENAME)))


def _counter(result, name: str) -> int:
  found = result.metrics().query(
      MetricsFilter().with_namespace(_METRICS_NAMESPACE).with_name(name))
  return int(sum(c.committed or 0 for c in found["counters"]))


class Executor(base_beam_executor.BaseBeamExecutor):
  """Summarizes every image of every split and writes their statistics."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    examples = artifact_utils.get_single_instance(input_dict["examples"])
    statistics = artifact_utils.get_single_instance(
        output_dict["statistics"])
    pipeline = self._make_beam_pipeline()
    build_pipeline(pipeline, examples, statistics)
    result = pipeline.run()
    result.wait_until_finish()
    counts = {}
    for split in artifact_utils.decode_split_names(examples.split_names):
      counts[split] = _counter(result, summarized_counter(split))
      undecodable = _counter(result, undecodable_counter(split))
      if undecodable:
        counts[undecodable_counter(split)] = undecodable
        logging.warning("ImageStatisticsGen: %d %s images do not decode and "
                        "are left out of the statistics", undecodable, split)
    statistics.set_string_custom_property(layout.COUNTS_PROPERTY,
                                          json.dumps(counts))
    logging.info("ImageStatisticsGen: %s", counts)


class ImageStatisticsGenSpec(types.ComponentSpec):
  PARAMETERS = {}
  INPUTS = {
      "examples": ChannelParameter(type=standard_artifacts.Examples),
  }
  OUTPUTS = {
      "statistics": ChannelParameter(
          type=standard_artifacts.ExampleStatistics),
  }


class ImageStatisticsGen(base_beam_component.BaseBeamComponent):
  """TFDV statistics of the ingested images' summaries, per split."""

  SPEC_CLASS = ImageStatisticsGenSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)

  def __init__(self, examples: types.BaseChannel):
    super().__init__(spec=ImageStatisticsGenSpec(
        examples=examples,
        statistics=types.Channel(type=standard_artifacts.ExampleStatistics)))
