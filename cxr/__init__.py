"""The `cxr` command line (cxr.cli) and the project's artifact types by the
names Vertex AI / Kubeflow know them.

KFP v2 names a custom artifact type `module.Class`, and TFX's container
entrypoint imports that name to rebuild the artifact, so
`cxr.ImageQuarantine` must import as exactly that. It loads on first use,
so that `cxr --help` does not load TFX.
"""

__all__ = ["ImageQuarantine"]


def __getattr__(name: str):
  if name == "ImageQuarantine":
    # pylint: disable=g-import-not-at-top
    from components.image_example_gen import ImageQuarantine
    return ImageQuarantine
  raise AttributeError(f"module 'cxr' has no attribute {name!r}")
