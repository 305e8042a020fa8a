"""Every model x task exports with its serving signatures and answers them."""

import io

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata
from tensorflow_transform.tf_metadata import schema_utils

from components import image_layouts
from components import models
from components import transform
from serving import signatures

SIZE = 58  # the smallest the thesis CNN takes


@pytest.fixture(scope="module")
def transform_output(tmp_path_factory):
  """A real Transform graph at SIZE px, written the way Transform writes it."""
  root = tmp_path_factory.mktemp("tft")
  metadata = dataset_metadata.DatasetMetadata(
      schema_utils.schema_from_feature_spec({
          "image": tf.io.FixedLenFeature([1], tf.string),
          "label": tf.io.FixedLenFeature([1], tf.int64)}))
  with tft_beam.Context(temp_dir=str(root / "tmp")):
    transform_fn = (([{"image": [_png(20, 30)], "label": [0]}], metadata)
                    | tft_beam.AnalyzeDataset(
                        lambda inputs: transform.preprocessing_fn(
                            inputs, {"image_size": SIZE})))
    _ = transform_fn | tft_beam.WriteTransformFn(str(root / "graph"))
  return tft.TFTransformOutput(str(root / "graph"))


def _png(h, w):
  buf = io.BytesIO()
  Image.fromarray(np.random.default_rng(h).integers(
      0, 255, (h, w), dtype=np.uint8)).save(buf, format="PNG")
  return buf.getvalue()


@pytest.mark.parametrize("task", image_layouts.TASKS)
@pytest.mark.parametrize("name", models.MODELS)
def test_export_and_serve(name, task, transform_output, tmp_path):
  model = models.build_model(name, task, SIZE)
  models.compile_model(model, task, 5e-4)
  model.fit(np.zeros((2, SIZE, SIZE, 3), np.float32), np.array([0, 1]),
            epochs=1, verbose=0)
  signatures.export_serving_model(model, transform_output, str(tmp_path),
                                  task, SIZE)
  loaded = tf.saved_model.load(str(tmp_path))
  images = tf.constant([_png(40, 50), _png(300, 200)])
  out = loaded.signatures[signatures.SERVING_DEFAULT](images=images)
  classes = len(image_layouts.CLASS_NAMES[task])
  assert out["probabilities"].shape == (2, classes)
  assert np.allclose(out["probabilities"].numpy().sum(axis=1), 1, atol=1e-5)
  names = [n.decode() for n in out["class_name"].numpy()]
  assert names == [image_layouts.CLASS_NAMES[task][i]
                   for i in out["class_id"].numpy()]
  # Same numbers as the in-memory model on the same decoded pixels.
  pixels = [transform.decode_and_resize(i, SIZE) for i in images]
  direct = model.predict(tf.cast(tf.stack(pixels), tf.float32), verbose=0)
  exported = out["probabilities"].numpy()
  if classes == 2:
    exported = exported[:, 1:]
  assert np.allclose(direct, exported, atol=1e-5)
