"""Chest X-ray pneumonia pipeline on TFX: install with the constraints file.

    pip install -c constraints.txt -e '.[test]'
"""

import setuptools

setuptools.setup(
    name="cxr-tfx",
    version="0.1.0",
    description=("TFX pipeline that detects pneumonia in chest X-rays and "
                 "serves its models through TF Serving"),
    python_requires=">=3.9,<3.11",
    packages=setuptools.find_packages(include=[
        f"{package}{sub}" for package in
        ("pipeline", "components", "schema", "serving", "kubeflow", "bench",
         "cxr")
        for sub in ("", ".*")]),
    package_data={"schema": ["*/schema.pbtxt", "image_summary.pbtxt"],
                  "pipeline.report": ["*.css"]},
    install_requires=[
        "tfx[kfp]==1.16.0",
        "tensorflow==2.16.2",
        "tf-keras==2.16.0",
        "tensorflow-serving-api==2.16.1",
        "grpcio",
        "prometheus-client",
        "pillow",
        # DICOM files (serving/dicom.py) and the plugins decoding their
        # compressed transfer syntaxes: JPEG, JPEG-LS, JPEG 2000, RLE.
        "pydicom",
        "pylibjpeg",
        "pylibjpeg-libjpeg",
        "pylibjpeg-openjpeg",
        "pylibjpeg-rle",
        "matplotlib",
        "numpy",
    ],
    # YAML: k8s manifests; pytest-timeout: no test can hang the suite.
    extras_require={"test": ["pytest", "pytest-timeout", "PyYAML"]},
    entry_points={"console_scripts": ["cxr = cxr.cli:main"]},
)
