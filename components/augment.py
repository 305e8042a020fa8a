"""The thesis's augmentation as one random affine transform per image.

Keras's ImageDataGenerator settings of the thesis: rotation 40 degrees,
width/height shift 0.2, shear 0.2, zoom 0.3, horizontal flip, `nearest` fill.
Keras's preprocessing layers applied in sequence resample the image once per
layer; here the five are composed into one matrix per image and the whole
batch is resampled once, by the ImageProjectiveTransformV3 op behind those
layers (the speed difference is in BENCHMARKS.md).
"""

import math
import tensorflow as tf

ROTATION_DEG = 40.0
SHIFT = 0.2
# ImageDataGenerator's shear_range is an angle in degrees, so the thesis's
# 0.2 is a 0.2-degree shear; kept as Keras meant it.
SHEAR_DEG = 0.2
ZOOM = 0.3


def random_affine(batch: tf.Tensor, height: int, width: int,
                  seed=None) -> tf.Tensor:
  """[batch, 8] projective transforms mapping output to input pixels.

  seed: None draws from the global seed with stateful ops, repeatable only
  when the calls run in a fixed order; a [2] int tensor draws statelessly,
  the same transforms for the same seed wherever and whenever it runs.
  """
  seeds = None if seed is None else iter(tf.unstack(tf.random.split(seed, 7)))

  def uniform(low, high):
    if seeds is None:
      return tf.random.uniform([batch], low, high)
    return tf.random.stateless_uniform([batch], next(seeds), low, high)

  theta = uniform(-ROTATION_DEG, ROTATION_DEG) * (math.pi / 180)
  shear = uniform(-SHEAR_DEG, SHEAR_DEG) * (math.pi / 180)
  zoom_x = uniform(1 - ZOOM, 1 + ZOOM)
  zoom_y = uniform(1 - ZOOM, 1 + ZOOM)
  shift_x = uniform(-SHIFT, SHIFT) * width
  shift_y = uniform(-SHIFT, SHIFT) * height
  flip = tf.where(uniform(0, 1) < 0.5, -1.0, 1.0)

  cos, sin = tf.cos(theta), tf.sin(theta)
  sh_sin, sh_cos = tf.sin(shear), tf.cos(shear)
  # A = rotation @ shear @ zoom @ flip, applied about the image centre.
  a00 = cos * zoom_x * flip
  a01 = (-cos * sh_sin - sin * sh_cos) * zoom_y
  a10 = sin * zoom_x * flip
  a11 = (cos * sh_cos - sin * sh_sin) * zoom_y
  cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
  a02 = cx + shift_x - a00 * cx - a01 * cy
  a12 = cy + shift_y - a10 * cx - a11 * cy
  zeros = tf.zeros_like(a00)
  return tf.stack([a00, a01, a02, a10, a11, a12, zeros, zeros], axis=1)


def augment_images(images: tf.Tensor, seed=None) -> tf.Tensor:
  """[batch, H, W, C] pixels, uint8 or float -> float32 [batch, H, W, C],
  each image randomly transformed.

  The pixels are cast to float32 for the resampling, not before: bilinear
  weights on uint8 would truncate every pixel, and the gray test below
  reads a quarter of the bytes on uint8.

  seed: as in random_affine.
  """
  shape = tf.shape(images)
  height, width = images.shape[1], images.shape[2]
  transforms = random_affine(shape[0], height, width, seed)

  def resample(x):
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=tf.cast(x, tf.float32), transforms=transforms,
        output_shape=shape[1:3], fill_value=0.0, interpolation="BILINEAR",
        fill_mode="NEAREST")

  if images.shape[-1] != 3:
    return resample(images)
  # X-rays decode as one gray channel copied three times. The resampling
  # treats each channel alone, so resampling one and copying it gives the
  # same pixels at a third of the cost; a batch holding any colour image
  # is resampled whole. Gray is tested as two channel comparisons, a third
  # of the time of comparing all three with a broadcast first channel.
  is_gray = tf.logical_and(
      tf.reduce_all(tf.equal(images[..., 0], images[..., 1])),
      tf.reduce_all(tf.equal(images[..., 1], images[..., 2])))
  return tf.cond(is_gray,
                 lambda: tf.tile(resample(images[..., :1]), [1, 1, 1, 3]),
                 lambda: resample(images))
