"""Ingestion's Beam graph: list, carve, read and check, write.

The DoFns the workers run live here, apart from the TFX component
(components/image_example_gen.py): a worker unpickling them imports this
module, and through the component's module it would also import all of
`tfx.components` (Transform, Trainer, Evaluator and their libraries):
start-up time and memory in every worker process that reading an image
never uses.

Counters (namespace image_listing.METRICS_NAMESPACE): ingested_SPLIT and
ingested_SPLIT:SOURCE per ingested image, quarantined per quarantine.csv
line, and the RESCALED, SPLIT_BY_IMAGE and DICOM counts; the executor reads
them back with `counter`.
"""

import csv
import dataclasses
import io
import os
from typing import Sequence, Tuple

from absl import logging
import apache_beam as beam
from apache_beam.metrics.metric import Metrics, MetricsFilter
from tfx import types
from tfx.dsl.io import fileio
from tfx.types import artifact_utils

from components import image_examples
from components import image_layouts
from components import image_listing
from schema import contract
from schema import layout
from serving import dicom

SPLITS = contract.SPLITS
RESCALED = layout.RESCALED_COUNT  # counter and count
SPLIT_BY_IMAGE = layout.SPLIT_BY_IMAGE_COUNT  # counter and count
DICOM = layout.DICOM_COUNT  # counter and count
_METRICS_NAMESPACE = image_listing.METRICS_NAMESPACE


def _csv_line(path: str, reason: str) -> str:
  buf = io.StringIO()
  csv.writer(buf, lineterminator="").writerow([path, reason])
  return buf.getvalue()


def _printable(path: str, reason: str) -> Tuple[str, str]:
  """A quarantine entry Beam can encode: str elements travel as UTF-8, which
  a file name that is not UTF-8 (a link's target too) is not."""
  return image_layouts.printable(path), image_layouts.printable(reason)


class _CsvLine(beam.DoFn):
  """(path, reason) -> a quarantine.csv line, counted."""

  def __init__(self):
    self._quarantined = Metrics.counter(_METRICS_NAMESPACE, "quarantined")

  def process(self, element):
    self._quarantined.inc()
    yield _csv_line(*element)


class ReadAndCheck(beam.DoFn):
  """Reads one listed file; emits (split, serialized tf.Example) or quarantine."""

  QUARANTINE = "quarantine"

  def __init__(self, task: str, views: Sequence[str]):
    self._task = task
    self._views = tuple(views)
    self._ingested = {s: Metrics.counter(_METRICS_NAMESPACE, f"ingested_{s}")
                      for s in SPLITS}
    self._bad = Metrics.counter(_METRICS_NAMESPACE, "quarantined_on_read")
    self._rescaled = Metrics.counter(_METRICS_NAMESPACE, RESCALED)
    self._by_image = Metrics.counter(_METRICS_NAMESPACE, SPLIT_BY_IMAGE)
    self._dicom = Metrics.counter(_METRICS_NAMESPACE, DICOM)

  def process(self, element):
    record, split = element
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    try:
      if image_layouts.is_special_file(record.path):
        raise image_examples.BadImage(
            "not a regular file (a FIFO, socket or device): not read")
      with fileio.open(record.path, "rb") as f:
        raw = f.read()
      data, attributes = image_examples.as_image(raw)
      image_examples.check_view(attributes, self._views)
      shape = image_examples.check_image(data)
      bits = image_examples.bits_in_use(data)
    except (image_examples.BadImage, tf.errors.OpError, OSError) as e:
      self._bad.inc()
      reason = e.message if isinstance(e, tf.errors.OpError) else str(e)
      yield beam.pvalue.TaggedOutput(self.QUARANTINE, _printable(
          record.path, reason))
      return
    if bits is not None and bits < 16:
      logging.info("ImageExampleGen: %s is a 16-bit PNG using %d bits; "
                   "scaled by those", record.path, bits)
      self._rescaled.inc()
    if dicom.is_dicom(raw):
      self._dicom.inc()
    elif bits is not None:
      # A 16-bit PNG file's bits_stored is the bits its samples use.
      attributes = dataclasses.replace(attributes, bits_stored=bits)
    example = image_examples.make_example(record, data, self._task, shape,
                                          attributes)
    self._ingested[split].inc()
    Metrics.counter(_METRICS_NAMESPACE,
                    source_counter(record.source, split)).inc()
    # A test folder's images keep the data set's own split; the train pool
    # is carved here, by patient when one is named.
    if record.split == contract.TRAIN and not record.patient_known:
      self._by_image.inc()
    yield split, example.SerializeToString()


def source_counter(source: str, split: str) -> str:
  """The counter of a data set's ingested images in one split."""
  return f"ingested_{split}:{source}"


def counter(result, name: str) -> int:
  """A counter's committed total in a finished run."""
  found = result.metrics().query(
      MetricsFilter().with_namespace(_METRICS_NAMESPACE).with_name(name))
  return int(sum(c.committed or 0 for c in found["counters"]))


def build_pipeline(pipeline: beam.Pipeline,
                   folders: Sequence[image_layouts.Folder], task: str,
                   eval_percent: int, salt: str,
                   examples: types.Artifact,
                   quarantine: types.Artifact,
                   views: Sequence[str] = contract.FRONTAL_VIEWS) -> None:
  """Lists, carves, reads and checks on the workers; writes both outputs.

  The graph holds the folders of image_layouts.plan_folders (of every data
  set, each with its source), never a file path, so its size does not grow
  with the data sets.
  """
  examples.split_names = artifact_utils.encode_split_names(list(SPLITS))
  listed = (pipeline
            | "ListOnWorkers" >> image_listing.ListImages(folders, task)
            | "RecordOrQuarantined" >> beam.Partition(
                lambda x, _: int(not isinstance(x, image_layouts.ImageRecord)),
                2))
  checked = (
      listed[0]
      | "CarveSplits" >> image_listing.CarveSplits(eval_percent, salt)
      | "Spread" >> beam.Reshuffle()
      | "ReadAndCheck" >> beam.ParDo(ReadAndCheck(task, views))
      .with_outputs(ReadAndCheck.QUARANTINE, main="examples"))
  by_split = checked.examples | "BySplit" >> beam.Partition(
      lambda kv, _: SPLITS.index(kv[0]), len(SPLITS))
  for split, pcoll in zip(SPLITS, by_split):
    _ = (pcoll
         | f"Serialized[{split}]" >> beam.Values()
         | f"Write[{split}]" >> beam.io.WriteToTFRecord(
             os.path.join(artifact_utils.get_split_uri([examples], split),
                          "data_tfrecord"),
             file_name_suffix=".gz"))
  _ = ((checked[ReadAndCheck.QUARANTINE],
        listed[1] | "ListedQuarantine" >> beam.Map(
            lambda q: _printable(q.path, q.reason)))
       | "AllQuarantined" >> beam.Flatten()
       | "CsvLines" >> beam.ParDo(_CsvLine())
       | "WriteQuarantine" >> beam.io.WriteToText(
           os.path.join(quarantine.uri, layout.QUARANTINE_FILE),
           shard_name_template="", header="path,reason"))
