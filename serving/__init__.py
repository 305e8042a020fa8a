"""Model signatures and serving helpers."""

import schema  # noqa: F401  (first: it selects Keras 2 before TensorFlow loads)
