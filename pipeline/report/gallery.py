"""The Grad-CAM gallery: per class, one correctly classified test image and
the model's own explanation of it, from the model's gradcam signature."""

import io
import os
from typing import Dict, List

from absl import logging
from PIL import Image
import tensorflow as tf
from tfx.dsl.io import fileio
from tfx.utils import path_utils

from pipeline import summary as summary_lib
from pipeline.report import document as doc
from schema import contract

# Test images scanned per model for a correctly classified one per class.
GRADCAM_SCAN_LIMIT = 256
_GRADCAM_BATCH = 16
_THUMBNAIL_PX = 320
# Where an Examples artifact keeps its test split.
_TEST_SPLIT_DIR = "Split-test"


def _thumbnail(encoded: bytes, path: str) -> None:
  with Image.open(io.BytesIO(encoded)) as image:
    image = image.convert("L" if image.mode in ("L", "I;16", "I") else "RGB")
    image.thumbnail((_THUMBNAIL_PX, _THUMBNAIL_PX))
    image.save(path, format="PNG")


def gradcam_gallery(model_dir: str, examples_uri: str, task: str,
                    images_dir: str, prefix: str,
                    scan_limit: int = GRADCAM_SCAN_LIMIT
                    ) -> List[doc.GradcamCard]:
  """One correctly classified test image per class, with its Grad-CAM.

  Scans Split-test in file order (at most `scan_limit` images) and asks the
  model's own `gradcam` signature to explain its predicted class; writes
  PREFIX_<class>_original.png and PREFIX_<class>_gradcam.png.
  """
  class_names = contract.CLASS_NAMES[task]
  files = sorted(fileio.glob(os.path.join(examples_uri, _TEST_SPLIT_DIR,
                                          "*")))
  if not files:
    note = f"no test split under {examples_uri}"
    return [doc.GradcamCard(name, note=note) for name in class_names]
  loaded = tf.saved_model.load(model_dir)  # kept alive while we call it
  explain = loaded.signatures[contract.GRADCAM]
  spec = {contract.IMAGE_KEY: tf.io.FixedLenFeature([], tf.string),
          contract.LABEL_KEY: tf.io.FixedLenFeature([], tf.int64),
          contract.FILE_NAME_KEY: tf.io.FixedLenFeature(
              [], tf.string, default_value="")}
  dataset = tf.data.TFRecordDataset(files, compression_type="GZIP")
  found: Dict[int, doc.GradcamCard] = {}
  scanned = 0
  for batch in dataset.take(scan_limit).batch(_GRADCAM_BATCH):
    parsed = tf.io.parse_example(batch, spec)
    scanned += int(batch.shape[0])
    labels = parsed[contract.LABEL_KEY].numpy()
    # Only images of classes still missing are worth a forward pass.
    wanted = [i for i, label in enumerate(labels) if int(label) not in found]
    if not wanted:
      continue
    images = tf.gather(parsed[contract.IMAGE_KEY], wanted)
    inputs = {contract.IMAGES_INPUT: images,
              contract.CLASS_INDEX_INPUT: tf.constant([], tf.int32)}
    if contract.METHOD_INPUT in explain.structured_input_signature[1]:
      # Python's loader does not fill SignatureDef defaults, and a model
      # exported without the method input takes none.
      inputs[contract.METHOD_INPUT] = tf.constant(
          contract.DEFAULT_GRADCAM_METHOD)
    outputs = explain(**inputs)
    class_ids = outputs[contract.CLASS_ID].numpy()
    probabilities = outputs[contract.PROBABILITIES].numpy()
    for row, i in enumerate(wanted):
      label = int(labels[i])
      if label in found or int(class_ids[row]) != label:
        continue
      name = class_names[label]
      original = f"{prefix}_{name}_original.png"
      overlay = f"{prefix}_{name}_gradcam.png"
      _thumbnail(images[row].numpy(), os.path.join(images_dir, original))
      with open(os.path.join(images_dir, overlay), "wb") as f:
        f.write(outputs[contract.OVERLAY_PNG][row].numpy())
      file_name = parsed[contract.FILE_NAME_KEY][i].numpy()
      found[label] = doc.GradcamCard(
          class_name=name,
          original=f"{doc.IMAGES_DIR}/{original}",
          overlay=f"{doc.IMAGES_DIR}/{overlay}",
          file_name=file_name.decode("utf-8", "replace"),
          probability=float(probabilities[row, label]))
    if len(found) == len(class_names):
      break
  return [found.get(c, doc.GradcamCard(
      name, note=f"no correctly classified {name} image among the first "
      f"{scanned} test images"))
          for c, name in enumerate(class_names)]


def gradcam_blocks(task: str, name: str, result: summary_lib.ModelResult,
                   metadata_path: str, images_dir: str) -> list:
  """The gallery of a model's branch, or a note saying why there is none."""
  if not result.model_uri or not result.evaluation_uri:
    return [doc.Para("No Grad-CAM: the model was not trained and evaluated "
                     "in this run.", css="note")]
  examples = summary_lib.evaluated_examples_uri(metadata_path,
                                                result.evaluation_uri)
  if examples is None:
    return [doc.Para("No Grad-CAM: the Evaluator's test examples are not in "
                     "ML Metadata.", css="note")]
  model_dir = path_utils.serving_model_path(result.model_uri)
  logging.info("Grad-CAM gallery of %s (%s)", name, task)
  try:
    cards = gradcam_gallery(model_dir, examples, task, images_dir,
                            f"{task}_{name}")
  except KeyError:
    return [doc.Para(f"No Grad-CAM: {name} was exported without the "
                     f"{contract.GRADCAM} signature (re-run the pipeline to "
                     "export it).", css="note")]
  except (tf.errors.OpError, OSError) as e:
    # One model's failure should not cost the whole report.
    logging.exception("Grad-CAM of %s failed", name)
    return [doc.Para(f"No Grad-CAM: it failed for {name}: {e}", css="note")]
  return [doc.Gallery(name, cards),
          doc.Para(f"Each overlay is the model's own {contract.GRADCAM} "
                   f"signature ({contract.DEFAULT_GRADCAM_METHOD}): the jet "
                   "heat map of the evidence for the predicted (here: true) "
                   "class, blended over the model's input.")]
