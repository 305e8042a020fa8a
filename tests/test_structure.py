"""The house's structure: packages import in one direction, the serving
runtime knows only the contract, and the command line starts light."""

import ast
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("schema", "serving", "components", "pipeline", "kubeflow", "bench",
            "cxr")
# Top-level packages from the bottom of the house up: each may import only
# those below it.
ORDER = {package: level for level, package in enumerate(PACKAGES)}
SERVING_RUNTIME = ("serving/server", "serving/client.py",
                   "serving/tf_serving_config.py", "serving/dicom.py")
MAX_MODULE_LINES = 600


def _modules():
  for package in PACKAGES:
    for folder, _, names in os.walk(os.path.join(REPO, package)):
      for name in names:
        if name.endswith(".py"):
          path = os.path.join(folder, name)
          yield os.path.relpath(path, REPO), path


def _project_imports(path):
  """Top-level project modules a file imports, e.g. {'schema.contract'}."""
  with open(path, encoding="utf-8") as f:
    tree = ast.parse(f.read(), path)
  found = set()
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
      # `from serving import dicom` imports serving.dicom.
      names = [f"{node.module}.{alias.name}" for alias in node.names]
    else:
      continue
    found.update(n for n in names if n.split(".")[0] in ORDER)
  return found


def test_packages_import_downwards_only():
  upward = []
  for rel, path in _modules():
    own = rel.split(os.sep)[0]
    for name in _project_imports(path):
      if ORDER[name.split(".")[0]] > ORDER[own]:
        upward.append(f"{rel} imports {name}")
  assert not upward, upward


def test_the_serving_runtime_imports_only_the_contract():
  wrong = []
  for rel, path in _modules():
    if rel.startswith(SERVING_RUNTIME):
      wrong += [f"{rel} imports {name}" for name in _project_imports(path)
                if name.split(".")[0] != "schema"
                and not name.startswith(("serving.server", "serving.dicom"))]
  assert not wrong, wrong


def test_no_module_is_too_long():
  long = {}
  for rel, path in _modules():
    with open(path, encoding="utf-8") as f:
      lines = sum(1 for _ in f)
    if lines > MAX_MODULE_LINES:
      long[rel] = lines
  assert not long, long


HEAVY = ("tensorflow", "tfx", "tensorflow_model_analysis", "apache_beam",
         "matplotlib")


def _loaded_after(code: str):
  out = subprocess.run(
      [sys.executable, "-c", code + "\nimport sys\nprint(' '.join("
       "sorted(m for m in sys.modules if '.' not in m)))"],
      cwd=REPO, check=True, capture_output=True, text=True).stdout
  return set(out.split())


def test_the_command_line_parses_without_tensorflow():
  loaded = _loaded_after("from cxr import cli\ncli.build_parser()")
  assert not loaded & set(HEAVY), loaded & set(HEAVY)


@pytest.mark.parametrize("heavy", ["tfx", "tensorflow_model_analysis",
                                   "apache_beam", "matplotlib"])
def test_predict_loads_no_pipeline_machinery(heavy):
  loaded = _loaded_after("from cxr import cli\n"
                         "cli.build_parser()\n"
                         "from serving import client")
  assert heavy not in loaded


def test_ingestion_workers_load_no_other_component():
  # The DoFns' module is what each Beam worker imports to unpickle them.
  out = subprocess.run(
      [sys.executable, "-c", "import sys\n"
       "from components import image_ingestion\n"
       "print(' '.join(sorted(sys.modules)))"],
      cwd=REPO, check=True, capture_output=True, text=True).stdout.split()
  assert not [m for m in out if m == "tfx.components" or m.startswith((
      "tfx.components.", "tensorflow_transform", "tensorflow_model_analysis",
      "components.image_example_gen"))]
