"""ImageExampleGen: a TFX component from image folders to tf.Example TFRecords.

Outputs the standard `Examples` artifact (splits train, eval, test; GZIP
TFRecords as ExampleGen writes them) and an `ImageQuarantine` artifact holding
`quarantine.csv` (path, reason) for every input that could not be ingested.
Files seen = ingested + quarantined, always; the executor checks it.

`input_base` is one data set folder or several, a comma list
(schema.layout.data_folders); each is ingested under its own source name
(its folder's name, made distinct), and a patient is a (source, patient id)
pair. Each data set's own train/test folders are kept. The eval split is
carved from train by a stable hash of the patient id, never by image,
because Kermany patients have several images and an image-level split
leaks. A data set without a test folder gets its test split carved the
same way. Images whose patient nothing names (no CSV patient_id, no known
or --patient-id-pattern file name) are carved one by one, and counted.

A file may be a JPEG, a PNG or a DICOM file; a DICOM file is kept as the
16-bit PNG of its displayed pixels, its patient is its salted PatientID
hash, and its header fills the modality, view, bit depth, photometric and
manufacturer features (serving/dicom.py). Images in a view the run does not
take (`views`; lateral by default) are quarantined.

The launcher lists only each data set's top level (its folders and CSV
names); the files are listed, the CSVs read and the split carved on the Beam
workers (components/image_listing.py), so the submitted graph does not grow
with the data set. The Beam graph and its DoFns are in
components/image_ingestion.py, which the workers import; this module is the
TFX component around it.
"""

import json
import os
from typing import Any, Dict, List, Sequence, Union

from absl import logging
from tfx import types
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_component
from tfx.dsl.components.base import base_beam_executor
from tfx.dsl.components.base import executor_spec
from tfx.orchestration import data_types
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components import fingerprint_driver
from components import image_ingestion
from components import image_layouts
from components import image_listing
from schema import contract
from schema import layout
from schema import settings

SPLITS = contract.SPLITS
RESCALED = image_ingestion.RESCALED  # counter and count
SPLIT_BY_IMAGE = image_ingestion.SPLIT_BY_IMAGE  # counter and count
DICOM = image_ingestion.DICOM  # counter and count
# Salt of the patient hash that carves the eval split; another salt, another
# split.
DEFAULT_SPLIT_SALT = "cxr"


class ImageQuarantine(types.Artifact):
  """Inputs that were not ingested, as `quarantine.csv` (path, reason)."""
  # "namespace.Name", as KFP v2 custom artifact schema titles must be.
  TYPE_NAME = "cxr.ImageQuarantine"


class Executor(base_beam_executor.BaseBeamExecutor):
  """Finds each data set's folders, then lists, reads and checks with Beam."""

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    input_base = exec_properties["input_base"]
    roots = layout.data_folders(input_base)
    task = contract.check_task(exec_properties["task"])
    sources, notes = layout.source_names(roots,
                                         exec_properties["source"] or "")
    for note in notes:
      logging.warning("ImageExampleGen: %s", note)
    pattern = settings.check_patient_id_pattern(
        exec_properties.get("patient_id_pattern") or "")
    views = settings.parse_views(exec_properties.get("views") or ",".join(
        contract.FRONTAL_VIEWS))
    patient_salt = exec_properties.get("patient_salt") or ""
    eval_percent = int(exec_properties["eval_percent"])
    salt = exec_properties["split_salt"]
    examples = artifact_utils.get_single_instance(output_dict["examples"])
    quarantine = artifact_utils.get_single_instance(output_dict["quarantine"])

    # The top level only: the files are listed on the Beam workers.
    folders, layouts = [], []
    for root, source in zip(roots, sources):
      data_layout, found, ignored = image_layouts.plan_folders(
          root, source, pattern, patient_salt)
      for path in ignored:
        logging.warning("ImageExampleGen: ignoring %s (not part of the %s "
                        "layout)", path, data_layout)
      folders += found
      layouts.append(data_layout)

    pipeline = self._make_beam_pipeline()
    image_ingestion.build_pipeline(pipeline, folders, task, eval_percent,
                                   salt, examples, quarantine, views)
    result = pipeline.run()
    result.wait_until_finish()

    def count(name: str) -> int:
      return image_ingestion.counter(result, name)

    per_source = {}
    for root, source, data_layout in zip(roots, sources, layouts):
      per_source[source] = {
          "folder": root, "layout": data_layout,
          **{s: count(image_ingestion.source_counter(source, s))
             for s in SPLITS},
          "test_carved": bool(count(
              image_listing.test_carved_counter(source)))}
      if per_source[source]["test_carved"]:
        logging.warning("ImageExampleGen: %s has no test split; carved %d%% "
                        "of its patients for it", root, eval_percent)
    counts = {s: count(f"ingested_{s}") for s in SPLITS}
    counts["ingested"] = sum(counts[s] for s in SPLITS)
    counts["quarantined"] = count("quarantined")
    counts["seen"] = count(image_listing.SEEN)
    counts[RESCALED] = count(RESCALED)
    counts[SPLIT_BY_IMAGE] = count(SPLIT_BY_IMAGE)
    counts[DICOM] = count(DICOM)
    logging.info("ImageExampleGen: %s (%s layout, task %s): %s, by data "
                 "set %s", input_base, ",".join(layouts), task, counts,
                 per_source)
    if counts["seen"] != counts["ingested"] + counts["quarantined"]:
      raise RuntimeError(
          f"ImageExampleGen lost inputs: seen {counts['seen']}, ingested "
          f"{counts['ingested']}, quarantined {counts['quarantined']}")
    if counts["quarantined"]:
      logging.warning("ImageExampleGen: %d inputs quarantined; see %s",
                      counts["quarantined"],
                      os.path.join(quarantine.uri, layout.QUARANTINE_FILE))
    if counts[SPLIT_BY_IMAGE]:
      logging.warning(
          "ImageExampleGen: %d train images had no patient id and were "
          "split by image, a leakage risk (a labels CSV's patient_id "
          "column or --patient-id-pattern names their patients)",
          counts[SPLIT_BY_IMAGE])
    empty = [s for s in SPLITS if not counts[s]]
    if empty:
      raise ValueError(
          f"split(s) {empty} of {input_base} are empty after ingestion "
          f"({counts}); the eval split takes {eval_percent}% of the train "
          "patients, so it needs enough patients (raise eval_percent or add "
          "data)")

    examples_utils.set_payload_format(examples,
                                      example_gen_pb2.FORMAT_TF_EXAMPLE)
    examples_utils.set_file_format(examples, "tfrecords_gzip")
    for target in (examples, quarantine):
      target.set_string_custom_property(layout.COUNTS_PROPERTY,
                                        json.dumps(counts))
      target.set_string_custom_property(layout.SOURCES_PROPERTY,
                                        json.dumps(per_source))
      target.set_string_custom_property("layout", ",".join(layouts))
      target.set_string_custom_property("source", ",".join(sources))
      target.set_string_custom_property(
          fingerprint_driver.INPUT_FINGERPRINT,
          exec_properties.get(fingerprint_driver.INPUT_FINGERPRINT) or "")


class ImageExampleGenSpec(types.ComponentSpec):
  PARAMETERS = {
      # One folder, or several as a comma list (schema.layout).
      "input_base": ExecutionParameter(type=str),
      "task": ExecutionParameter(type=str),
      "source": ExecutionParameter(type=str),
      # Absent when not given, so that runs without it keep their cache.
      "patient_id_pattern": ExecutionParameter(type=str, optional=True),
      "eval_percent": ExecutionParameter(type=int),
      "split_salt": ExecutionParameter(type=str),
      # The view positions taken, a comma list (settings.parse_views).
      "views": ExecutionParameter(type=str),
      # Salt of the hashed DICOM PatientIDs; absent: each data set's own
      # (image_layouts.default_patient_salt).
      "patient_salt": ExecutionParameter(type=str, optional=True),
      # Set at run time by the driver (components/fingerprint_driver.py)
      # before the cache lookup: a changed folder is a new execution, not a
      # cache hit on the old one.
      fingerprint_driver.INPUT_FINGERPRINT: ExecutionParameter(
          type=str, optional=True),
  }
  INPUTS = {}
  OUTPUTS = {
      "examples": ChannelParameter(type=standard_artifacts.Examples),
      "quarantine": ChannelParameter(type=ImageQuarantine),
  }


class ImageExampleGen(base_beam_component.BaseBeamComponent):
  """Ingests chest X-ray folders (Kaggle binary or 3-class layout each)."""

  SPEC_CLASS = ImageExampleGenSpec
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
  DRIVER_CLASS = fingerprint_driver.FingerprintDriver

  def __init__(self, input_base: Union[str, Sequence[str],
                                       data_types.RuntimeParameter],
               task: str, source: str = "",
               eval_percent: int = settings.RunSettings().eval_percent,
               split_salt: str = DEFAULT_SPLIT_SALT,
               patient_id_pattern: str = "",
               views: Sequence[str] = settings.RunSettings().views,
               patient_salt: str = ""):
    """Args:
      input_base: the data set folder (local or gs://), several as a list or
        a comma list, or a runtime parameter holding them.
      task: `binary` or `multiclass`; sets the `label` feature.
      source: data set names stored in the examples, a comma list, one per
        folder (default: the folders' names, made distinct).
      eval_percent: percent of train patients carved out as the eval split.
      split_salt: salt of the patient hash; change it for another split.
      patient_id_pattern: regular expression naming the patient in file
        names no other rule reads (settings.RunSettings).
      views: the view positions taken (contract.VIEW_POSITIONS); images in
        others are quarantined.
      patient_salt: salt of the hashed DICOM PatientIDs (default: each data
        set's folder).
    """
    contract.check_task(task)
    # The same bounds as the settings', whatever built this component.
    views = settings.RunSettings(eval_percent=eval_percent,
                                 patient_id_pattern=patient_id_pattern,
                                 views=tuple(views)).views
    if not isinstance(input_base, data_types.RuntimeParameter):
      input_base = layout.join_data_folders(
          [input_base] if isinstance(input_base, str) else input_base)
    spec = ImageExampleGenSpec(
        input_base=input_base, task=task, source=source,
        patient_id_pattern=patient_id_pattern or None,
        views=",".join(views), patient_salt=patient_salt or None,
        eval_percent=eval_percent, split_salt=split_salt,
        examples=types.Channel(type=standard_artifacts.Examples),
        quarantine=types.Channel(type=ImageQuarantine))
    super().__init__(spec=spec)

