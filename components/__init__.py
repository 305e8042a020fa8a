"""TFX components and user code (Transform, Trainer) of the chest X-ray pipeline."""

import schema  # noqa: F401  (first: it selects Keras 2 before TensorFlow loads)
