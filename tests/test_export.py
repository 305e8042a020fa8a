"""Every model x task exports with its serving signatures and answers them."""

import io

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from components import models
from schema import contract
from serving.export import gradcam
from serving.export import pixels as pixels_lib
from serving.export import signatures
from tests import test_server

# The feature map Grad-CAM must explain: each architecture's last conv output.
GRADCAM_LAYERS = {"cnn": "conv4_1", "cnn_aug": "conv4_1",
                  "vgg16": "block5_conv3", "mobilenet_v2": "out_relu",
                  "resnet50_v2": "post_relu", "resnet_small": "block5_out"}

SIZE = test_server.SIZE  # the smallest the thesis CNN takes


@pytest.fixture(scope="module")
def transform_output():
  """A real Transform graph at SIZE px, written the way Transform writes it:
  the server tests', built once per process."""
  return test_server.transform_output()


def _png(h, w):
  buf = io.BytesIO()
  Image.fromarray(np.random.default_rng(h).integers(
      0, 255, (h, w), dtype=np.uint8)).save(buf, format="PNG")
  return buf.getvalue()


# The thesis CNN in both tasks; each transfer base in one task, in turn:
# the head (binary or 3-class) is the same layer on every base.
EXPORT_CASES = ([(contract.CNN, task) for task in contract.TASKS]
                + [(name, contract.TASKS[i % 2])
                   for i, name in enumerate(
                       m for m in models.MODELS if m != contract.CNN)])


@pytest.mark.parametrize("name,task", EXPORT_CASES)
def test_export_and_serve(name, task, transform_output, tmp_path):
  # An untrained model's Grad-CAM can be empty for every image of a class;
  # the seed fixes the draw so the test does not depend on luck.
  tf.keras.utils.set_random_seed(0)
  model = models.build_model(name, task, SIZE)
  models.compile_model(model, task, 5e-4)
  model.fit(np.zeros((2, SIZE, SIZE, 3), np.float32), np.array([0, 1]),
            epochs=1, verbose=0)
  signatures.export_serving_model(model, transform_output, str(tmp_path),
                                  task, SIZE)
  loaded = tf.saved_model.load(str(tmp_path))
  images = tf.constant([_png(40, 50), _png(300, 200)])
  out = loaded.signatures[signatures.SERVING_DEFAULT](images=images)
  classes = len(contract.CLASS_NAMES[task])
  assert out["probabilities"].shape == (2, classes)
  assert np.allclose(out["probabilities"].numpy().sum(axis=1), 1, atol=1e-5)
  names = [n.decode() for n in out["class_name"].numpy()]
  assert names == [contract.CLASS_NAMES[task][i]
                   for i in out["class_id"].numpy()]
  # Same numbers as the in-memory model on the same decoded pixels.
  pixels = [pixels_lib.decode_and_resize(i, SIZE) for i in images]
  direct = model.predict(tf.cast(tf.stack(pixels), tf.float32), verbose=0)
  exported = out["probabilities"].numpy()
  if classes == 2:
    exported = exported[:, 1:]
  assert np.allclose(direct, exported, atol=1e-5)

  _check_gradcam(model, name, task, loaded, images, pixels)


def _decisions(export_dir, images):
  loaded = tf.saved_model.load(str(export_dir))
  served = loaded.signatures[signatures.SERVING_DEFAULT](images=images)
  examples = tf.constant([tf.train.Example(features=tf.train.Features(
      feature={contract.IMAGE_KEY: tf.train.Feature(
          bytes_list=tf.train.BytesList(value=[i.numpy()]))}))
                          .SerializeToString() for i in images])
  scored = loaded.signatures[signatures.TF_EXAMPLE](examples=examples)
  cam = loaded.signatures[signatures.GRADCAM](
      images=images, class_index=tf.constant([], tf.int32),
      method=tf.constant("gradcam"))
  return served, scored, cam


@pytest.mark.parametrize("task", contract.TASKS)
def test_the_served_decision_follows_the_exported_threshold(
    task, transform_output, tmp_path):
  tf.keras.utils.set_random_seed(3)
  model = models.build_model(contract.CNN, task, SIZE)
  images = tf.constant([_png(40 + 13 * i, 50 + 7 * i) for i in range(6)])
  # The model's own P(pneumonia) on the pixels serving decodes, which the
  # export must serve as well.
  direct = model.predict(tf.cast(tf.stack(
      [pixels_lib.decode_and_resize(i, SIZE) for i in images]), tf.float32),
                         verbose=0)
  p = direct[:, 0] if direct.shape[1] == 1 else 1 - direct[:, 0]
  assert len(set(p.tolist())) > 1, "the images must score differently"
  # A threshold between the images' scores splits them.
  threshold = float(np.median(p))
  signatures.export_serving_model(model, transform_output,
                                  str(tmp_path / "op"), task, SIZE,
                                  threshold=threshold)
  served, scored, cam = _decisions(tmp_path / "op", images)
  probabilities = served[contract.PROBABILITIES].numpy()
  served_p = served[contract.PNEUMONIA_PROBABILITY].numpy()
  np.testing.assert_allclose(served_p, 1 - probabilities[:, 0], atol=1e-6)
  np.testing.assert_allclose(served_p, p, atol=1e-5)
  expected = (served_p >= np.float32(threshold)).astype(np.int64)
  assert 0 < expected.sum() < len(expected)
  np.testing.assert_array_equal(served[contract.PNEUMONIA_DECISION], expected)
  np.testing.assert_allclose(served[contract.THRESHOLD], threshold)
  np.testing.assert_array_equal(scored[contract.PNEUMONIA_DECISION].numpy(),
                                expected[:, None].astype(np.float32))
  # The label TFMA scores the decision against: pneumonia of any kind.
  labelled = tf.constant([tf.train.Example(features=tf.train.Features(
      feature={contract.LABEL_KEY: tf.train.Feature(
          int64_list=tf.train.Int64List(value=[label]))})).SerializeToString()
                          for label in range(contract.class_count(task))]
                         + [b""])  # no label
  pneumonia = tf.saved_model.load(str(tmp_path / "op")).signatures[
      contract.PNEUMONIA_LABEL_SIGNATURE](examples=labelled)
  np.testing.assert_array_equal(
      pneumonia[contract.PNEUMONIA_LABEL].numpy()[:, 0],
      [0.0] + [1.0] * (contract.class_count(task) - 1) + [np.nan])
  if task == contract.BINARY:
    # The binary class is the decision, in serving_default and gradcam.
    np.testing.assert_array_equal(served[contract.CLASS_ID], expected)
    np.testing.assert_array_equal(cam[contract.CLASS_ID], expected)
  else:
    # 3-class keeps the arg-max class.
    np.testing.assert_array_equal(served[contract.CLASS_ID],
                                  probabilities.argmax(axis=1))


def _reference_maps(sub, head, image, class_id):
  """{method: map} for one image, written out eagerly with a GradientTape.

  sub: a Keras model with outputs [target feature map, the input of the
  model's output layer]; head: that Dense layer, whose logits are
  differentiated (before its sigmoid or softmax). Both methods weigh the
  same gradient, so one tape serves both.
  """
  with tf.GradientTape() as tape:
    feature_map, head_input = sub(tf.cast(image[None], tf.float32),
                                  training=False)
    z = tf.matmul(head_input, head.kernel) + head.bias
    if z.shape[-1] == 1:  # sigmoid: z for class 1, -z (logit of 1 - p) for 0
      score = z[0, 0] if class_id == 1 else -z[0, 0]
    else:
      score = z[0, class_id]
  grads = tape.gradient(score, feature_map)[0].numpy()
  # Each cell at its receptive field's centre (the geometry is checked
  # against real receptive fields in test_gradcam), linear in between.
  rows, cols = gradcam.feature_geometry(sub, sub.output_names[0])
  pixels = np.arange(SIZE)
  maps = {}
  # Grad-CAM weighs each channel by its mean gradient; HiResCAM keeps the
  # gradient at every location.
  for method, weights in (("gradcam", grads.mean(axis=(0, 1))),
                          ("hirescam", grads)):
    cam = np.maximum((feature_map[0].numpy() * weights).sum(-1), 0.0)
    cam = np.stack([np.interp(pixels, rows.start + rows.stride
                              * np.arange(rows.cells), column)
                    for column in cam.T], axis=1)
    cam = np.stack([np.interp(pixels, cols.start + cols.stride
                              * np.arange(cols.cells), row) for row in cam])
    maps[method] = cam / cam.max() if cam.max() > 0 else cam
  return maps


def _check_gradcam(model, name, task, loaded, images, pixels):
  """loaded: the exported SavedModel, as tf.saved_model.load gave it."""
  gradcam = loaded.signatures[signatures.GRADCAM]
  classes = len(contract.CLASS_NAMES[task])
  predicted = loaded.signatures[signatures.SERVING_DEFAULT](
      images=images)["class_id"].numpy()
  # The Python loader does not apply SignatureDef defaults (TF Serving
  # does); an empty class_index is the default: the predicted classes.
  out = gradcam(images=images, class_index=tf.constant([], tf.int32),
                method=tf.constant("gradcam"))
  assert np.array_equal(out["class_id"].numpy(), predicted)
  nonzero = {"gradcam": 0, "hirescam": 0}
  layer = model.get_layer(GRADCAM_LAYERS[name])
  sub = tf.keras.Model(model.inputs, [layer.output, model.layers[-1].input])
  for class_id in range(classes):
    expected = [_reference_maps(sub, model.layers[-1], p.numpy(), class_id)
                for p in pixels]
    for method in nonzero:
      out = gradcam(images=images,
                    class_index=tf.constant([class_id] * 2, tf.int32),
                    method=tf.constant(method))
      heatmap = out["heatmap"].numpy()
      assert heatmap.shape == (2, SIZE, SIZE) and heatmap.dtype == np.float32
      assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0
      for i in range(2):
        reference = expected[i][method]
        assert np.abs(heatmap[i] - reference).max() < 1e-4, (
            name, method, class_id, i)
        nonzero[method] += reference.max() > 0
        with Image.open(io.BytesIO(out["overlay_png"].numpy()[i])) as png:
          assert png.format == "PNG" and png.size == (SIZE, SIZE)
          assert png.mode == "RGB"
  assert all(nonzero.values()), (
      f"every reference map of a method was empty: {nonzero}")
  with pytest.raises(tf.errors.InvalidArgumentError, match="method must be"):
    gradcam(images=images, class_index=tf.constant([], tf.int32),
            method=tf.constant("scorecam"))
