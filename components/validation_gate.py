"""DataValidationGate: stops the run when ExampleValidator found anomalies.

ExampleValidator records anomalies but never blocks what follows it. This
component runs before Transform and fails with a message a person can act
on: which split, which feature, what TFDV says, and where the schema lives.
"""

import os

from tfx import v1 as tfx
from tfx.types import artifact_utils

from schema import layout


class DataAnomaliesError(RuntimeError):
  """The ingested data does not match the curated schema."""


def describe_anomalies(anomalies_artifact) -> str:
  """Human-readable anomalies of every split; empty when there are none."""
  from tensorflow_data_validation.utils import anomalies_util  # pylint: disable=g-import-not-at-top
  lines = []
  for split in artifact_utils.decode_split_names(
      anomalies_artifact.split_names):
    path = os.path.join(
        artifact_utils.get_split_uri([anomalies_artifact], split),
        layout.ANOMALIES_FILE)
    anomalies = anomalies_util.load_anomalies_binary(path)
    for feature, info in sorted(anomalies.anomaly_info.items()):
      lines.append(f"  split {split}, feature '{feature}': "
                   f"{info.short_description} - {info.description}")
    if anomalies.HasField("dataset_anomaly_info"):
      info = anomalies.dataset_anomaly_info
      lines.append(f"  split {split}, whole data set: "
                   f"{info.short_description} - {info.description}")
  return "\n".join(lines)


def check_anomalies(anomalies_artifact) -> None:
  """Raises DataAnomaliesError if ExampleValidator found any anomaly."""
  found = describe_anomalies(anomalies_artifact)
  if found:
    raise DataAnomaliesError(
        "The ingested images do not match the data schema, so training was "
        "stopped before it started:\n" + found + "\n"
        "Fix the data (see the ingestion component's quarantine.csv for "
        "files it could not read), or, if the change is intended, update "
        "the curated schema in schema/<task>/schema.pbtxt.")


@tfx.dsl.components.component
def DataValidationGate(  # pylint: disable=invalid-name
    anomalies: tfx.dsl.components.InputArtifact[
        tfx.types.standard_artifacts.ExampleAnomalies]):
  """Fails the run if ExampleValidator found any anomaly."""
  check_anomalies(anomalies)
