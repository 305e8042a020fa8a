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
from serving import gradcam

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
