"""The container images (Dockerfile, Dockerfile.gpu) and what they install.

Docker does not run here: the Dockerfiles are read as text, and the wheel
`pip install .` puts in the image is built and installed into a folder,
where the runtime's entry points must import without the source tree.
"""

import fnmatch
import importlib.metadata
import os
import re
import shlex
import shutil
import subprocess
import sys
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCKERFILES = ("Dockerfile", "Dockerfile.gpu")
PACKAGES = ("schema", "serving", "components", "pipeline", "kubeflow", "cxr")
# TFX's KFP v2 container entrypoint: every component's command in the spec.
ENTRYPOINT = "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"
INSTRUCTIONS = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY",
                "ENTRYPOINT", "VOLUME", "USER", "WORKDIR", "ARG", "ONBUILD",
                "STOPSIGNAL", "HEALTHCHECK", "SHELL"}


def parse_dockerfile(text: str):
  """[(INSTRUCTION, arguments)] with continuation lines joined; ValueError
  on a line that is no instruction."""
  instructions, pending = [], ""
  for number, line in enumerate(text.splitlines(), 1):
    stripped = line.strip()
    if not pending and (not stripped or stripped.startswith("#")):
      continue
    if pending and stripped.startswith("#"):
      continue  # comments inside a continued instruction are dropped
    pending += " " + stripped
    if pending.endswith("\\"):
      pending = pending[:-1]
      continue
    word, _, rest = pending.strip().partition(" ")
    if word.upper() not in INSTRUCTIONS:
      raise ValueError(f"line {number}: {word!r} is no Dockerfile "
                       "instruction")
    instructions.append((word.upper(), " ".join(rest.split())))
    pending = ""
  if pending:
    raise ValueError("the last instruction continues past the end")
  return instructions


def _env(instructions):
  """ENV settings, both `ENV K=V K2=V2` and `ENV K V` forms."""
  env = {}
  for word, rest in instructions:
    if word != "ENV":
      continue
    parts = shlex.split(rest)
    if parts and "=" not in parts[0]:
      env[parts[0]] = " ".join(parts[1:])
    else:
      env.update(p.split("=", 1) for p in parts)
  return env


def _pip_installs(instructions):
  """Every `pip install ...` command (as argument lists) in RUN lines."""
  commands = []
  for word, rest in instructions:
    if word != "RUN":
      continue
    for command in re.split(r"&&|;|\|\|", rest):
      args = shlex.split(command)
      for i in range(len(args) - 1):
        if (os.path.basename(args[i]) in ("pip", "pip3")
            or args[i:i + 2] == ["-m", "pip"]) and "install" in args[i:i + 3]:
          commands.append(args)
          break
  return commands


@pytest.fixture(params=DOCKERFILES)
def dockerfile(request):
  with open(os.path.join(REPO, request.param), encoding="utf-8") as f:
    return request.param, parse_dockerfile(f.read())


def test_the_parser_refuses_what_is_not_a_dockerfile():
  with pytest.raises(ValueError, match="no Dockerfile instruction"):
    parse_dockerfile("FROM python:3.10.16-slim\npip install .\n")
  with pytest.raises(ValueError, match="continues past the end"):
    parse_dockerfile("FROM python:3.10.16-slim\nRUN true \\\n")
  assert parse_dockerfile("# c\nFROM a:1.2.3\nRUN a \\\n  # c\n  && b\n") == [
      ("FROM", "a:1.2.3"), ("RUN", "a && b")]


def test_base_images_are_pinned_by_exact_tag(dockerfile):
  name, instructions = dockerfile
  bases = [rest.split()[0] for word, rest in instructions if word == "FROM"]
  assert bases, f"{name} has no FROM"
  for image in bases:
    if "@sha256:" in image:
      continue
    repository, _, tag = image.rpartition(":")
    assert repository and "/" not in tag, f"{name}: {image} has no tag"
    # An exact release (3.10.16, 12.3.2), not a moving one (latest, 3.10).
    assert re.search(r"\d+\.\d+\.\d+", tag), f"{name}: {image} is not exact"


def test_python_is_3_10(dockerfile):
  name, instructions = dockerfile
  text = " ".join(rest for word, rest in instructions
                  if word in ("FROM", "RUN"))
  versions = set(re.findall(r"python:?(3\.\d+)", text))
  assert versions == {"3.10"}, f"{name} names Python {versions}"


def test_keras_2_is_selected(dockerfile):
  name, instructions = dockerfile
  assert _env(instructions).get("TF_USE_LEGACY_KERAS") == "1", name


def test_every_pip_install_uses_the_constraints(dockerfile):
  name, instructions = dockerfile
  installs = _pip_installs(instructions)
  assert installs, f"{name} installs nothing with pip"
  for args in installs:
    constrained = any(
        a in ("--constraint", "-c") and b.endswith("constraints.txt")
        for a, b in zip(args, args[1:])) or any(
            a.startswith("--constraint=") and a.endswith("constraints.txt")
            for a in args)
    assert constrained, f"{name}: {' '.join(args)}"


def test_the_project_is_installed_not_editable(dockerfile):
  name, instructions = dockerfile
  project = [args for args in _pip_installs(instructions) if "." in args]
  assert project, f"{name} does not pip install the project (.)"
  for args in project:
    assert not {"-e", "--editable"} & set(args), f"{name}: {' '.join(args)}"
  # `python -m` puts the working directory first on sys.path: it must not
  # be a source tree that shadows site-packages.
  workdirs = [rest for word, rest in instructions if word == "WORKDIR"]
  assert workdirs and workdirs[-1] == "/", f"{name} ends in {workdirs}"


def _constraint(package: str) -> str:
  with open(os.path.join(REPO, "constraints.txt"), encoding="utf-8") as f:
    for line in f:
      if line.lower().startswith(package.lower() + "=="):
        return line.strip().split("==")[1]
  raise AssertionError(f"{package} not in constraints.txt")


def test_the_gpu_image_matches_tensorflows_cuda():
  with open(os.path.join(REPO, "Dockerfile.gpu"), encoding="utf-8") as f:
    instructions = parse_dockerfile(f.read())
  base = next(rest for word, rest in instructions if word == "FROM")
  match = re.fullmatch(r"nvidia/cuda:(\d+)\.(\d+)\.\d+-(.+)", base)
  assert match, base
  # The pins TensorFlow's `and-cuda` extra makes (the installed metadata).
  pins = {}
  for requirement in importlib.metadata.requires("tensorflow"):
    found = re.match(r"(nvidia-[a-z-]+cu12) ?==([\d.]+).*and-cuda",
                     requirement)
    if found:
      pins[found.group(1)] = found.group(2)
  cuda = pins["nvidia-cuda-runtime-cu12"].split(".")[:2]
  assert [match.group(1), match.group(2)] == cuda, (base, cuda)
  cudnn = re.search(r"cudnn(\d+)", match.group(3))
  if cudnn:  # a base with cuDNN must carry the one TensorFlow wants
    assert cudnn.group(1) == pins["nvidia-cudnn-cu12"].split(".")[0], base
  tensorflow = _constraint("tensorflow")
  gpu_installs = [a for args in _pip_installs(instructions) for a in args
                  if a.startswith("tensorflow[and-cuda]")]
  assert gpu_installs == [f"tensorflow[and-cuda]=={tensorflow}"], (
      gpu_installs, tensorflow)


def test_dockerignore_keeps_out_the_bulk_and_in_the_project():
  with open(os.path.join(REPO, ".dockerignore"), encoding="utf-8") as f:
    patterns = [line.strip() for line in f
                if line.strip() and not line.startswith("#")]
  for bulky in (".venv", "build", ".git"):
    assert bulky in patterns, bulky
  for needed in PACKAGES + ("setup.py", "constraints.txt"):
    ignored = [p for p in patterns if fnmatch.fnmatch(needed, p)]
    assert not ignored, f"{needed} is ignored by {ignored}"


def _runtime_files():
  """Every module of the project and the data files beside them that the
  pipeline reads at run time (serving/'s deployment configs are read by
  TF Serving and Kubernetes, not by Python)."""
  modules, data = set(), set()
  for package in PACKAGES:
    for folder, subfolders, names in os.walk(os.path.join(REPO, package)):
      subfolders[:] = [s for s in subfolders if s != "__pycache__"]
      for name in names:
        rel = os.path.relpath(os.path.join(folder, name), REPO)
        rel = rel.replace(os.sep, "/")
        if name.endswith(".py"):
          modules.add(rel)
        elif not name.endswith(".pyc") and package != "serving":
          data.add(rel)
  return modules, data


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
  """The wheel `pip install .` builds, from a copy of the sources (setup.py
  builds in place)."""
  root = tmp_path_factory.mktemp("wheel")
  source = root / "src"
  source.mkdir()
  for name in ("setup.py", "README.md") + PACKAGES:
    path = os.path.join(REPO, name)
    if os.path.isdir(path):
      shutil.copytree(path, source / name,
                      ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    elif os.path.exists(path):
      shutil.copy(path, source / name)
  subprocess.run(
      [sys.executable, "-m", "pip", "wheel", "--no-deps",
       "--no-build-isolation", "--quiet", "-w", str(root / "dist"),
       str(source)], check=True, capture_output=True, text=True, timeout=300)
  (built,) = (root / "dist").glob("*.whl")
  return built


def test_the_wheel_holds_every_module_and_data_file(wheel):
  with zipfile.ZipFile(wheel) as archive:
    names = set(archive.namelist())
    entry_points = next(archive.read(n).decode() for n in names
                        if n.endswith(".dist-info/entry_points.txt"))
  modules, data = _runtime_files()
  assert {"schema/binary/schema.pbtxt", "schema/multiclass/schema.pbtxt",
          "pipeline/report/style.css"} <= data
  assert not modules - names, sorted(modules - names)
  assert not data - names, sorted(data - names)
  assert "cxr = cxr.cli:main" in entry_points


def test_the_installed_project_runs_without_its_source_tree(wheel, tmp_path):
  """The wheel installed into a folder, imported from elsewhere: the TFX
  entrypoint, every component module and the data files load from there."""
  site = tmp_path / "site"
  subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps",
                  "--quiet", "--target", str(site), str(wheel)],
                 check=True, capture_output=True, text=True, timeout=300)
  code = f"""
import importlib, os, pkgutil
import {ENTRYPOINT}
import components, schema
from pipeline.report import html
site = {str(site)!r}
for module in pkgutil.walk_packages(components.__path__, 'components.'):
  importlib.import_module(module.name)
for module in (components, schema, html):
  assert module.__file__.startswith(site), module.__file__
for task in ('binary', 'multiclass'):
  assert os.path.isfile(schema.schema_path(task))
assert os.path.isfile(html._STYLE_SHEET), html._STYLE_SHEET
print('ok')
"""
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env["PYTHONPATH"] = str(site)
  done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 0 and done.stdout.strip() == "ok", (
      done.stderr[-3000:])
