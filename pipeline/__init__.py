"""Pipeline factory, runners and the `cxr` command line."""

import schema  # noqa: F401  (first: it selects Keras 2 before TensorFlow loads)
