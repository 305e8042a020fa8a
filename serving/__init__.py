"""Serving: the exported model's interface (export/: signatures, Grad-CAM,
pixels), and the serving runtime (server/, client.py, tf_serving_config.py),
which serves any SavedModel by its SignatureDefs and imports nothing of the
project but schema/."""

import schema  # noqa: F401  (first: it selects Keras 2 before TensorFlow loads)
