"""Training/serving skew of the images: `cxr skew`.

The training side is the statistics the run's ImageStatisticsGen wrote
of its train split's image summaries (components/image_statistics.py),
the serving side a `cxr serve` request log (serving/server/
request_log.py: images, or the summaries that stand in for them), whose
images are summarized by the same function (serving/server/
image_summary.py). TFDV's skew check compares the two statistics under
the curated comparators of schema/image_summary.pbtxt.
"""

import glob
import os
from typing import Dict, List, Tuple

import pandas as pd
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_serving.apis import prediction_log_pb2

import schema
from pipeline import summary
from schema import contract
from serving.server import image_summary

Rows = List[Dict[str, float]]


def training_statistics(output: str):
  """TFDV statistics of the image summaries of the run's train split;
  FileNotFoundError when the run has none."""
  return summary.image_statistics(output, contract.TRAIN)


def example_count(statistics) -> int:
  return int(statistics.datasets[0].num_examples)


def serving_rows(log_dir: str) -> Tuple[Rows, int]:
  """(summaries of every logged image, values that had none: emptied or
  undecodable)."""
  files = sorted(glob.glob(os.path.join(log_dir, "*.tfrecord")))
  if not files:
    raise FileNotFoundError(f"no request log (*.tfrecord) in {log_dir}")
  rows, missing = [], 0
  for record in tf.data.TFRecordDataset(files):
    log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
    images = log.predict_log.request.inputs.get(contract.IMAGES_INPUT)
    for value in images.string_val if images is not None else ():
      summary = image_summary.from_logged(value)
      if summary is None:
        missing += 1
      else:
        rows.append(summary)
  return rows, missing


def statistics(rows: Rows):
  """TFDV statistics of image summaries."""
  return tfdv.generate_statistics_from_dataframe(
      pd.DataFrame(rows, columns=list(contract.SUMMARY_FEATURES)))


def skew_anomalies(training_statistics, serving: Rows) -> Dict[str, str]:
  """{feature: TFDV's description} of every skew of the served summaries
  past its comparator."""
  summary_schema = tfdv.load_schema_text(schema.image_summary_schema_path())
  anomalies = tfdv.validate_statistics(
      training_statistics, summary_schema,
      serving_statistics=statistics(serving))
  return {name: f"{info.short_description}: {info.description}"
          for name, info in sorted(anomalies.anomaly_info.items())}
