"""Model signatures and serving helpers."""

import os

# TFT 1.16 builds tf-keras models and Keras 3 cannot save SavedModels the way
# the pipeline needs: select Keras 2 before anything imports TensorFlow.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
