"""Curated schemas against real data, and the gate's message on anomalies."""

import glob
import os

import pytest
import tensorflow_data_validation as tfdv
from tfx.types import artifact_utils
from tfx.types import standard_artifacts

from components import validation_gate
import schema
from schema import layout
from tests.test_image_example_gen import run_executor


def _anomalies_artifact(statistics, task, root):
  """What ExampleValidator writes: one SchemaDiff.pb per split."""
  artifact = standard_artifacts.ExampleAnomalies()
  artifact.uri = str(root)
  artifact.split_names = artifact_utils.encode_split_names(["train"])
  anomalies = tfdv.validate_statistics(
      statistics, tfdv.load_schema_text(schema.schema_path(task)))
  split_dir = artifact_utils.get_split_uri([artifact], "train")
  os.makedirs(split_dir)
  with open(os.path.join(split_dir, layout.ANOMALIES_FILE), "wb") as f:
    f.write(anomalies.SerializeToString())
  return artifact


@pytest.fixture(scope="module")
def binary_statistics(real_binary_subset, tmp_path_factory):
  examples, _, _ = run_executor(real_binary_subset,
                                str(tmp_path_factory.mktemp("ingest")),
                                "binary")
  files = glob.glob(os.path.join(examples.uri, "Split-train", "*.gz"))
  options = tfdv.StatsOptions(schema=tfdv.load_schema_text(
      schema.schema_path("binary")))
  return tfdv.generate_statistics_from_tfrecord(files[0],
                                                stats_options=options)


def test_real_data_matches_the_curated_schema(binary_statistics, tmp_path):
  artifact = _anomalies_artifact(binary_statistics, "binary", tmp_path)
  assert validation_gate.describe_anomalies(artifact) == ""
  validation_gate.check_anomalies(artifact)  # does not raise


def test_gate_stops_with_a_readable_message(binary_statistics, tmp_path):
  # Binary-task data checked against the 3-class schema: label_name holds
  # "pneumonia", which that schema does not allow.
  artifact = _anomalies_artifact(binary_statistics, "multiclass", tmp_path)
  with pytest.raises(validation_gate.DataAnomaliesError) as raised:
    validation_gate.check_anomalies(artifact)
  message = str(raised.value)
  assert "split train, feature 'label_name'" in message
  assert "pneumonia" in message
  assert "schema/<task>/schema.pbtxt" in message
