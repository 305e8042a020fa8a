"""Grad-CAM: target layers, colour map, overlay and class index checks.

The signature's heat maps are compared with an eager GradientTape reference
for every model x task in test_export.py; whether they point at the
synthetic lesions is measured by bench/gradcam_lesions.py (BENCHMARKS.md).
"""

import numpy as np
import pytest
import tensorflow as tf

from components import models
from pipeline import synthetic
from serving.export import gradcam

@pytest.mark.parametrize("name, size, layer", [
    ("cnn", 58, "conv4_1"), ("vgg16", 32, "block5_conv3"),
    ("mobilenet_v2", 32, "out_relu"), ("resnet50_v2", 32, "post_relu")])
def test_target_layer_is_the_last_conv_feature_map(name, size, layer):
  model = models.build_model(name, "binary", size)
  assert gradcam.find_target_layer(model) == layer


def test_a_layer_that_is_not_a_feature_map_is_refused():
  model = models.build_model("cnn", "binary", 58)
  with pytest.raises(ValueError, match="dense"):
    gradcam.gradcam_model(model, "dense")


def test_jet_matches_matplotlib():
  matplotlib = pytest.importorskip("matplotlib")
  values = np.linspace(0, 1, 1001, dtype=np.float32)
  ours = gradcam.jet(tf.constant(values)).numpy()
  theirs = matplotlib.colormaps["jet"](values)[:, :3]
  assert np.abs(ours - theirs).max() < 1e-6


def test_overlay_blends_the_heat_map_at_0_4():
  images = tf.fill([1, 4, 4, 3], tf.constant(100, tf.uint8))
  heatmap = tf.ones([1, 4, 4])  # jet(1) is dark red (0.5, 0, 0)
  blended = gradcam.overlay(images, heatmap).numpy()[0, 0, 0]
  assert list(blended) == [round(0.4 * 127.5 + 60), 60, 60]
  heatmap = tf.zeros([1, 4, 4])  # jet(0) is dark blue (0, 0, 0.5)
  blended = gradcam.overlay(images, heatmap).numpy()[0, 0, 0]
  assert list(blended) == [60, 60, round(0.4 * 127.5 + 60)]


def test_class_index_must_name_one_valid_class_per_image():
  model = models.build_model("cnn", "multiclass", 58)
  cam_model = gradcam.gradcam_model(model)
  images = tf.zeros([2, 58, 58, 3])
  _, class_id, _ = gradcam.gradcam(cam_model, images, tf.constant([2, 0]))
  assert list(class_id.numpy()) == [2, 0]
  with pytest.raises(tf.errors.InvalidArgumentError, match="one class per"):
    gradcam.gradcam(cam_model, images, tf.constant([1]))
  with pytest.raises(tf.errors.InvalidArgumentError, match="out of range"):
    gradcam.gradcam(cam_model, images, tf.constant([0, 3]))


def test_peak_in_boxes_scales_back_to_the_original_image():
  heatmap = np.zeros((10, 10), np.float32)
  heatmap[2, 7] = 1.0  # centre (7.5, 2.5) of 10 -> (75, 25) of 100 px
  assert synthetic.peak_in_boxes(heatmap, [[70, 20, 80, 30]], 100)
  assert not synthetic.peak_in_boxes(heatmap, [[20, 70, 30, 80]], 100)
  assert synthetic.peak_in_boxes(heatmap, [[0, 0, 5, 5], [74, 24, 76, 26]],
                                 100)


def test_a_peak_plateau_counts_at_its_innermost_pixel():
  # An outer cell's value held flat to the image edge (columns 7-9): the
  # evidence was measured at the cell's centre, column 7 -> 75 px, not at
  # the plateau's middle (85 px) nor at argmax's first pixel.
  heatmap = np.zeros((10, 10), np.float32)
  heatmap[4, 7:] = 1.0
  assert synthetic.peak_in_boxes(heatmap, [[70, 40, 80, 50]], 100)
  assert not synthetic.peak_in_boxes(heatmap, [[81, 40, 100, 50]], 100)
  # A corner cell's plateau: its innermost pixel (3, 3) -> 35 px.
  heatmap = np.zeros((10, 10), np.float32)
  heatmap[0:4, 0:4] = 1.0
  assert synthetic.peak_in_boxes(heatmap, [[30, 30, 40, 40]], 100)
  assert not synthetic.peak_in_boxes(heatmap, [[0, 0, 29, 29]], 100)
  # A blank map has no peak: never a hit, even with the box at its centre.
  assert not synthetic.peak_in_boxes(np.zeros((10, 10)), [[0, 0, 100, 100]],
                                     100)


def test_the_peak_of_each_upsampled_cell_is_its_receptive_field_centre():
  # The thesis CNN at 96 px: a 6 x 6 conv4_1 map whose cells sit at 24.5 ..
  # 64.5; light one cell at a time, upsample as the signature does, and the
  # peak must land within half a pixel of that cell's centre, the outer
  # cells included (their value is held flat out to the image edge).
  model = models.build_model("cnn_aug", "binary", 96)
  cam_model = gradcam.gradcam_model(model)
  rows, cols = (m.numpy() for m in gradcam.upsampling_matrices(cam_model))
  row_axis, col_axis = gradcam.feature_geometry(cam_model, "conv4_1")
  assert (row_axis.cells, col_axis.cells) == (6, 6)
  for i in range(6):
    for j in range(6):
      cells = np.full((6, 6), 0.2, np.float32)
      cells[i, j] = 1.0
      peak = synthetic.heatmap_peak(rows @ cells @ cols.T)
      assert abs(peak[0] - (row_axis.start + i * row_axis.stride)) <= 0.5
      assert abs(peak[1] - (col_axis.start + j * col_axis.stride)) <= 0.5


@pytest.mark.parametrize("name, size, axis", [
    # conv4_1 after unpadded 3x3 convs and three 2x2 pools (derived by hand)
    ("cnn", 96, gradcam.Axis(24.5, 8.0, 6)),
    # VGG16: 'same' convs, four 2x2 pools: an even tiling, as a resize assumes
    ("vgg16", 64, gradcam.Axis(7.5, 16.0, 4)),
])
def test_feature_geometry_of_the_explained_layer(name, size, axis):
  model = models.build_model(name, "binary", size)
  layer = gradcam.find_target_layer(model)
  assert gradcam.feature_geometry(model, layer) == (axis, axis)
  if name == "vgg16":
    assert axis == gradcam.uniform_axis(size, 4)


# Inputs large enough for a whole receptive field (about 490 px for the
# transfer bases) to fit around the central cell; the CNN's 50-px fields fit
# around several.
@pytest.mark.parametrize("name, size, all_cells", [
    ("cnn", 96, True), ("mobilenet_v2", 512, False),
    ("resnet50_v2", 512, False)])
def test_feature_geometry_matches_the_receptive_field(name, size, all_cells):
  """The arithmetic against the pixels a feature cell actually depends on.

  With positive kernels, no biases, BatchNorm at its identity and a positive
  input no ReLU is ever cut, so a cell's gradient is nonzero over its whole
  receptive field (within the image). Max pooling would pass it to one input
  per window only, so the probe copy averages instead: the same windows,
  the same grid. An interior cell's field is symmetric about its centre.
  """
  rng = np.random.default_rng(0)

  def average_pooling(layer):
    if isinstance(layer, tf.keras.layers.MaxPooling2D):
      return tf.keras.layers.AveragePooling2D.from_config(layer.get_config())
    return layer.__class__.from_config(layer.get_config())

  original = models.build_model(name, "binary", size)
  layer = gradcam.find_target_layer(original)
  rows, cols = gradcam.feature_geometry(original, layer)
  model = tf.keras.models.clone_model(original,
                                      clone_function=average_pooling)
  for weight in model.weights:
    if "depthwise_kernel" in weight.name:
      # Mean half over the fan-in: each conv about halves its input, so
      # residual sums never reach ReLU6's cap (MobileNetV2) and nothing
      # underflows over ~50 layers.
      weight.assign(rng.uniform(0.25, 0.75, weight.shape)
                    / np.prod(weight.shape[:2]))
    elif "kernel" in weight.name:
      weight.assign(rng.uniform(0.25, 0.75, weight.shape)
                    / np.prod(weight.shape[:-1]))
    elif "bias" in weight.name or "beta" in weight.name:
      weight.assign(tf.zeros(weight.shape))
  feature = tf.keras.Model(model.inputs, model.get_layer(layer).output)
  images = tf.constant(rng.uniform(128, 255, (1, size, size, 3)), tf.float32)
  compared = 0
  centre = (round((size / 2 - rows.start) / rows.stride),
            round((size / 2 - cols.start) / cols.stride))
  cells = [centre]
  if all_cells:
    cells += [(1, 1), (rows.cells - 2, cols.cells - 2)]
  for i, j in cells:
    with tf.GradientTape() as tape:
      tape.watch(images)
      cell = tf.reduce_sum(feature(images, training=False)[:, i, j, :])
    support = np.abs(tape.gradient(cell, images).numpy()).sum((0, 3)) > 0
    ys, xs = np.nonzero(support)
    if ys.min() == 0 or xs.min() == 0 or ys.max() == size - 1 or (
        xs.max() == size - 1):
      continue  # the field runs off the image: its centre is not visible
    assert (ys.min() + ys.max()) / 2 == rows.start + i * rows.stride
    assert (xs.min() + xs.max()) / 2 == cols.start + j * cols.stride
    compared += 1
  assert compared, "every field ran off the image: nothing was compared"


def test_even_geometry_upsamples_as_an_image_resize():
  cam = np.random.default_rng(0).random((1, 4, 5)).astype(np.float32)
  rows = gradcam.uniform_axis(64, 4).interpolation(64)
  cols = gradcam.uniform_axis(80, 5).interpolation(80)
  ours = np.einsum("yi,bij,xj->byx", rows, cam, cols)
  resized = tf.image.resize(cam[..., None], [64, 80]).numpy()[..., 0]
  assert np.abs(ours - resized).max() < 1e-6


def test_a_saturated_prediction_still_gets_a_map():
  """p rounds to 1.0 in float32, so d p / d A is exactly 0; the logit's
  gradient is not, and does not depend on the output bias at all: the maps
  of a saturated model equal those of the same model unsaturated."""
  model = models.build_model("cnn", "binary", 58)
  cam_model = gradcam.gradcam_model(model)
  images = tf.random.stateless_uniform([4, 58, 58, 3], [1, 2], 0, 255)
  classes = tf.constant([0, 1, 0, 1])
  maps = {}
  for bias in (0.0, 60.0):
    model.get_layer("predictions").bias.assign([bias])
    _, _, maps[bias] = gradcam.gradcam(cam_model, images, classes,
                                       "hirescam")
  assert np.all(model(images).numpy() == 1.0)  # saturated at bias 60
  assert maps[0.0].numpy().max() == 1.0, "no evidence at all: nothing shown"
  np.testing.assert_allclose(maps[60.0], maps[0.0], atol=1e-6)


def test_the_output_layer_must_be_a_dense_sigmoid_or_softmax():
  inputs = tf.keras.Input((58, 58, 3))
  x = tf.keras.layers.Conv2D(4, 3, name="conv")(inputs)
  x = tf.keras.layers.Flatten()(x)
  outputs = tf.keras.layers.Dense(2, name="linear_head")(x)
  with pytest.raises(ValueError, match="linear_head"):
    gradcam.gradcam_model(tf.keras.Model(inputs, outputs), "conv")
