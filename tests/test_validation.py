"""Curated schemas against real data, the gate's message on anomalies, and
a run that the gate stops before Transform."""

import glob
import os

from ml_metadata.proto import metadata_store_pb2
from PIL import Image
import pytest
import tensorflow_data_validation as tfdv
from tfx.types import artifact_utils
from tfx.types import standard_artifacts

from components import validation_gate
from cxr import cli
from pipeline import summary
from pipeline import synthetic
import schema
from schema import contract
from schema import layout
from tests.conftest import REAL_BINARY, REAL_MULTICLASS, _need
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


def _size_domain(task):
  loaded = tfdv.load_schema_text(schema.schema_path(task))
  return {side: tfdv.get_feature(loaded, side).int_domain
          for side in ("height", "width")}


@pytest.mark.parametrize("root", [REAL_BINARY, REAL_MULTICLASS],
                         ids=os.path.basename)
def test_every_real_image_is_inside_the_schema_size_domain(root):
  """The size bounds stop images far off, not the real X-rays we have."""
  domains = {task: _size_domain(task) for task in contract.TASKS}
  sizes = []
  for path in glob.glob(os.path.join(_need(root), "**", "*"),
                        recursive=True):
    if path.lower().endswith((".jpeg", ".jpg", ".png")):
      with Image.open(path) as image:
        sizes.append(dict(zip(("width", "height"), image.size)))
  assert len(sizes) > 1000
  for domain in domains.values():
    for side, bounds in domain.items():
      values = [s[side] for s in sizes]
      assert bounds.min <= min(values) and max(values) <= bounds.max, side


def _node_states(metadata):
  """{node id: [execution state names]} of every run in a metadata store."""
  store = summary.open_store(metadata)
  states = {}
  for execution in store.get_executions():
    node = next(c.name.split(".", 1)[1]
                for c in store.get_contexts_by_execution(execution.id)
                if c.type == "node")
    states.setdefault(node, []).append(
        metadata_store_pb2.Execution.State.Name(execution.last_known_state))
  return states


def test_images_far_off_the_expected_size_stop_the_run_before_transform(
    tmp_path, capsys):
  data, out = str(tmp_path / "data"), str(tmp_path / "out")
  synthetic.generate(data, n=24, size=48, seed=3)
  with Image.open(glob.glob(os.path.join(REAL_BINARY, "train", "NORMAL",
                                         "*.jpeg"))[0]) as real:
    # A real X-ray as a thumbnail, and a valid but absurd strip of pixels.
    real.convert("L").resize((20, 24)).save(
        os.path.join(data, "train", "NORMAL", "IM-9001-0001.jpeg"))
  Image.new("L", (20000, 40), 128).save(
      os.path.join(data, "train", "PNEUMONIA", "person9001_virus_1.jpeg"))

  code = cli.main(["run", "--data", data, "--task", contract.BINARY,
                   "--output", out, "--models", contract.CNN, "--epochs",
                   "1", "--image-size", "32", "--no-intervals"])

  assert code == 1
  message = capsys.readouterr().err
  assert "do not match the data schema" in message
  assert ("feature 'height': Out-of-range values - Unexpectedly small "
          "value: 24.") in message
  assert "Unexpectedly small value: 20." in message  # width
  assert "Unexpectedly large value: 20000." in message  # width
  states = _node_states(layout.output_paths(out).metadata)
  # Both images were read, not quarantined: it is the schema that stopped
  # the run, at the gate, and nothing after it ran.
  assert states["ExampleValidator"] == ["COMPLETE"]
  assert states["DataValidationGate"] == ["FAILED"]
  assert "Transform" not in states
  assert not any(node.startswith(layout.TRAINER) for node in states)


def test_gate_stops_on_a_missing_feature(binary_statistics, tmp_path):
  # The same real statistics without the patient ids ingestion writes.
  statistics = type(binary_statistics)()
  statistics.CopyFrom(binary_statistics)
  features = statistics.datasets[0].features
  kept = [f for f in features if f.path.step != ["patient_id"]]
  assert len(kept) == len(features) - 1
  del features[:]
  features.extend(kept)
  artifact = _anomalies_artifact(statistics, "binary", tmp_path)
  with pytest.raises(validation_gate.DataAnomaliesError,
                     match="feature 'patient_id': Column dropped"):
    validation_gate.check_anomalies(artifact)
