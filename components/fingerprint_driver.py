"""ImageExampleGen's driver: the data folders' fingerprint, taken at run time.

Caching must key on what the folder holds when the run starts, not on what
it held when the pipeline was built or compiled: a bucket changed under the
same path must re-run ingestion, an unchanged one must be a cache hit. The
driver runs before the cache lookup and sets the `input_fingerprint`
execution property to schema.layout.fingerprint of every folder of
input_base (one, or a comma list), through TFX's filesystem layer (local or
gs://). Two doors, one computation:

* The local runners (BeamDagRunner, LocalDagRunner) run `FingerprintDriver`,
  the component's DRIVER_CLASS, before they look up the cache.
* Vertex AI runs a task's `lifecycle.preCacheCheck` command before its cache
  lookup and takes the parameters the command writes as the task's own; TFX
  uses that hook for its FileBasedExampleGen
  (tfx/orchestration/kubeflow/v2/file_based_example_gen/driver.py), and
  kubeflow/v2_runner.py gives ImageExampleGen the same hook:
  `python -m components.fingerprint_driver --json_serialized_invocation_args
  {{$}}`.
"""

import argparse
import hashlib
import os
import sys
from typing import Any, Dict, List, Optional

from absl import logging
from kfp.pipeline_spec import pipeline_spec_pb2
from tfx.dsl.components.base import base_driver
from tfx.dsl.io import fileio
from tfx.orchestration.portable import data_types
from tfx.proto.orchestration import driver_output_pb2
from tfx.types import standard_component_specs

from google.protobuf import json_format
from schema import layout

INPUT_BASE = standard_component_specs.INPUT_BASE_KEY
INPUT_FINGERPRINT = "input_fingerprint"
# The flags TFX's KFP v2 container entrypoint and its ExampleGen driver take.
INVOCATION_FLAG = "--json_serialized_invocation_args"
INPUTS_SPEC_FLAG = "--json_serialized_inputs_spec_args"


def input_fingerprint(input_base: str) -> str:
  """The fingerprint of every folder of input_base, so that a change in any
  data set re-runs ingestion; a folder that is gone is an error here.

  One folder's is schema.layout.fingerprint's; several folders' is the hash
  of each folder's name and fingerprint, in order.
  """
  parts = []
  for folder in layout.data_folders(input_base):
    found = layout.fingerprint(folder) if fileio.isdir(folder) else None
    if found is None:
      raise FileNotFoundError(f"data folder {folder} not found or changing "
                              "while it was read")
    logging.info("ImageExampleGen: fingerprint of %s: %s", folder, found)
    parts.append((folder, found))
  if len(parts) == 1:
    return parts[0][1]
  return hashlib.sha256("".join(f"{folder}\0{found}\n" for folder, found
                                in parts).encode()).hexdigest()


class FingerprintDriver(base_driver.BaseDriver):
  """The local runners' door: sets input_fingerprint before the cache."""

  def run(self, execution_info: data_types.ExecutionInfo
          ) -> driver_output_pb2.DriverOutput:
    result = driver_output_pb2.DriverOutput()
    result.exec_properties[INPUT_FINGERPRINT].string_value = (
        input_fingerprint(execution_info.exec_properties[INPUT_BASE]))
    return result


def _exec_properties(executor_input: pipeline_spec_pb2.ExecutorInput,
                     inputs_spec_json: Optional[str]) -> Dict[str, Any]:
  # pylint: disable-next=g-import-not-at-top
  from tfx.orchestration.kubeflow.v2.container import (
      kubeflow_v2_entrypoint_utils)
  inputs_spec = None
  if inputs_spec_json:
    inputs_spec = pipeline_spec_pb2.ComponentInputsSpec()
    json_format.Parse(inputs_spec_json, inputs_spec,
                      ignore_unknown_fields=True)
  return kubeflow_v2_entrypoint_utils.parse_execution_properties(
      executor_input.inputs.parameter_values,
      executor_input.inputs.parameters, inputs_spec)


def pre_cache_check(executor_input: pipeline_spec_pb2.ExecutorInput,
                    inputs_spec_json: Optional[str] = None) -> str:
  """Vertex's door: writes the fingerprint as an ExecutorOutput parameter to
  the ExecutorInput's output file; returns the fingerprint."""
  exec_properties = _exec_properties(executor_input, inputs_spec_json)
  found = input_fingerprint(exec_properties[INPUT_BASE])
  output = pipeline_spec_pb2.ExecutorOutput()
  output.parameter_values[INPUT_FINGERPRINT].string_value = found
  output_file = executor_input.outputs.output_file
  fileio.makedirs(os.path.dirname(output_file))
  with fileio.open(output_file, "wb") as f:
    f.write(json_format.MessageToJson(output, sort_keys=True).encode())
  return found


def main(argv: List[str]) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument(INVOCATION_FLAG, dest="invocation", required=True,
                      help="the ExecutorInput ({{$}}) as JSON")
  parser.add_argument(INPUTS_SPEC_FLAG, dest="inputs_spec", default=None,
                      help="the component's ComponentInputsSpec as JSON")
  # Beam flags follow, as on every TFX container command; not used here.
  args, _ = parser.parse_known_args(argv)
  executor_input = pipeline_spec_pb2.ExecutorInput()
  json_format.Parse(args.invocation, executor_input,
                    ignore_unknown_fields=True)
  logging.set_verbosity(logging.INFO)
  pre_cache_check(executor_input, args.inputs_spec)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
