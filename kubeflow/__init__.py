"""Kubeflow Pipelines / Vertex AI compilation of the pipeline."""

import schema  # noqa: F401  (first: it selects Keras 2 before TensorFlow loads)
