"""Ingestion fingerprints its folder when it runs, before the cache lookup:
through the local runners' driver and through the Vertex AI hook's command."""

import glob
import json
import os
import shutil
import subprocess
import sys

from google.protobuf import json_format
import pytest
from kfp.pipeline_spec import pipeline_spec_pb2
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from components import fingerprint_driver
from components import image_example_gen
from pipeline import synthetic
from schema import layout

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _add_image(data):
  """One more image beside the first training image."""
  image = sorted(glob.glob(str(data / "train" / "*" / "*")))[0]
  shutil.copy(image, os.path.join(os.path.dirname(image),
                                  "added-" + os.path.basename(image)))


def _run_hook(data_dir, output_file):
  """The hook's command as Vertex AI runs it, with an ExecutorInput that
  names the folder the way TFX's compiler writes parameters."""
  executor_input = pipeline_spec_pb2.ExecutorInput()
  executor_input.inputs.parameters["input_base"].string_value = data_dir
  executor_input.outputs.output_file = output_file
  env = dict(os.environ, PYTHONPATH=REPO)
  return subprocess.run(
      [sys.executable, "-m", fingerprint_driver.__name__,
       fingerprint_driver.INVOCATION_FLAG,
       json_format.MessageToJson(executor_input),
       "--direct_running_mode=in_memory"],
      env=env, capture_output=True, text=True, timeout=300, check=False)


def _hook_fingerprint(data_dir, output_file):
  done = _run_hook(data_dir, output_file)
  assert done.returncode == 0, done.stderr[-2000:]
  with open(output_file) as f:
    output = json.load(f)
  return output["parameterValues"][fingerprint_driver.INPUT_FINGERPRINT]


def test_the_hook_writes_the_folder_fingerprint_it_finds_now(tmp_path):
  data = tmp_path / "data"
  synthetic.generate(str(data), n=8, size=64, seed=1)
  first = _hook_fingerprint(str(data), str(tmp_path / "out" / "1.json"))
  assert first == layout.fingerprint(str(data))
  _add_image(data)
  second = _hook_fingerprint(str(data), str(tmp_path / "out" / "2.json"))
  assert second == layout.fingerprint(str(data)) != first


def test_the_hook_fails_clearly_on_a_missing_folder(tmp_path):
  done = _run_hook(str(tmp_path / "gone"), str(tmp_path / "out.json"))
  assert done.returncode != 0
  assert "not found" in done.stderr
  assert not (tmp_path / "out.json").exists()


def _ingest(data_dir, root):
  """A one-node pipeline, the local runner's own driver and cache; data_dir
  is a folder or a list of them."""
  example_gen = image_example_gen.ImageExampleGen(
      input_base=data_dir, task="binary", eval_percent=20)
  tfx.orchestration.LocalDagRunner().run(tfx.dsl.Pipeline(
      pipeline_name="fingerprint-test", pipeline_root=str(root / "root"),
      components=[example_gen], enable_cache=True,
      metadata_connection_config=(
          tfx.orchestration.metadata.sqlite_metadata_connection_config(
              str(root / "metadata.sqlite")))))
  config = metadata_store_pb2.ConnectionConfig()
  config.sqlite.filename_uri = str(root / "metadata.sqlite")
  # pylint: disable-next=g-import-not-at-top
  from ml_metadata import metadata_store
  store = metadata_store.MetadataStore(config)
  return sorted(a.uri for a in store.get_artifacts_by_type(
      tfx.types.standard_artifacts.Examples.TYPE_NAME))


def test_a_changed_folder_is_ingested_again_an_unchanged_one_is_cached(
    tmp_path):
  data = tmp_path / "data"
  synthetic.generate(str(data), n=40, size=64, seed=2)
  first = _ingest(str(data), tmp_path)
  assert len(first) == 1
  assert _ingest(str(data), tmp_path) == first  # cache hit
  _add_image(data)
  after = _ingest(str(data), tmp_path)
  assert len(after) == 2, after


def test_links_are_fingerprinted_as_what_they_name_not_followed(tmp_path):
  data = tmp_path / "data"
  synthetic.generate(str(data), n=8, size=64, seed=3)
  plain = layout.fingerprint(str(data))
  folder = os.path.dirname(sorted(glob.glob(str(data / "train" / "*" /
                                                 "*")))[0])
  os.symlink(str(tmp_path / "gone.png"), os.path.join(folder, "dangling.png"))
  os.symlink("..", os.path.join(folder, "up"))  # a loop
  with_links = layout.fingerprint(str(data))
  assert with_links not in (None, plain)
  assert layout.fingerprint(str(data)) == with_links
  os.remove(os.path.join(folder, "dangling.png"))
  os.symlink(str(tmp_path / "other.png"), os.path.join(folder, "dangling.png"))
  assert layout.fingerprint(str(data)) not in (with_links, plain)
  assert layout.fingerprint(str(tmp_path / "gone")) is None


def test_every_data_folder_is_fingerprinted(tmp_path):
  a, b = tmp_path / "a", tmp_path / "b"
  synthetic.generate(str(a), n=8, size=48, seed=5)
  synthetic.generate(str(b), n=8, size=48, seed=6)
  # One folder's is the folder's own, as before several were taken.
  assert fingerprint_driver.input_fingerprint(str(a)) == layout.fingerprint(
      str(a))
  both = f"{a},{b}"
  first = fingerprint_driver.input_fingerprint(both)
  assert first not in (layout.fingerprint(str(a)), layout.fingerprint(str(b)))
  _add_image(b)  # the second data set changes
  assert fingerprint_driver.input_fingerprint(both) != first
  with pytest.raises(FileNotFoundError, match="gone"):
    fingerprint_driver.input_fingerprint(f"{a},{tmp_path / 'gone'}")


def test_a_change_in_any_data_set_ingests_them_again(tmp_path):
  a, b = tmp_path / "a", tmp_path / "b"
  synthetic.generate(str(a), n=30, size=48, seed=7)
  synthetic.generate(str(b), n=30, size=48, seed=8)
  first = _ingest([str(a), str(b)], tmp_path)
  assert len(first) == 1
  assert _ingest([str(a), str(b)], tmp_path) == first  # cache hit
  _add_image(b)
  assert len(_ingest([str(a), str(b)], tmp_path)) == 2
