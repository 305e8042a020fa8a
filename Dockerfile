# The pipeline's image for Vertex AI Pipelines and Kubeflow Pipelines (CPU).
#
# Every component runs in it as
#   python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor
# and finds the project's packages (schema, serving, components, pipeline,
# kubeflow, cxr) installed in site-packages, not as a source tree.
# Dockerfile.gpu is the same on a CUDA base.
#
# The base is pinned by its exact tag; pin its digest too where it can be
# looked up (docker buildx imagetools inspect). Python 3.10: TFX 1.16
# supports 3.9-3.10.
FROM python:3.10.16-slim-bookworm

# crcmod and pyfarmhash (needed by Beam and TFX) ship no wheels for Linux
# and Python 3.10: pip compiles them.
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*

# TF_USE_LEGACY_KERAS=1: TFT 1.16 builds tf-keras models and Keras 3 cannot
# save the SavedModels the pipeline exports (schema/__init__.py sets it too,
# but only once the project is imported).
ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TF_USE_LEGACY_KERAS=1

# The project installed (not editable) with the pinned set; the source tree
# is removed so nothing but site-packages provides the packages.
# Where the build context is copied inside the image, for the install only.
ARG SOURCE_DIR=/tmp/cxr-src
COPY . ${SOURCE_DIR}
WORKDIR ${SOURCE_DIR}
RUN pip install --constraint constraints.txt . \
 && cd / && rm -rf "${SOURCE_DIR}"

# Not the source folder: `python -m` puts the working directory first on
# sys.path.
WORKDIR /
