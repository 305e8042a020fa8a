"""The artifact types the project adds to TFX, importable by their type names.

KFP v2 names a custom artifact type `module.Class`, and TFX's container
entrypoint on Vertex AI / Kubeflow imports that name to rebuild the
artifact, so `cxr.ImageQuarantine` must import as exactly that.
"""

from components.image_example_gen import ImageQuarantine

__all__ = ["ImageQuarantine"]
