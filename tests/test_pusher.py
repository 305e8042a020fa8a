"""components.pusher: a model TF Serving already serves is not pushed again."""

import os

from components import pusher


def _saved_model(root, weights=b"w1"):
  os.makedirs(os.path.join(root, "variables"), exist_ok=True)
  with open(os.path.join(root, "saved_model.pb"), "wb") as f:
    f.write(b"graph")
  with open(os.path.join(root, "variables", "variables.data"), "wb") as f:
    f.write(weights)
  return str(root)


def test_the_latest_identical_version_is_found(tmp_path):
  model = _saved_model(tmp_path / "model")
  base = tmp_path / "serving" / "cxr_binary_cnn"
  assert pusher.served_copy(model, str(base)) is None  # nothing pushed yet
  _saved_model(base / "100")
  assert pusher.served_copy(model, str(base)) == str(base / "100")
  os.makedirs(base / ".staging-101")  # not a version: ignored
  assert pusher.served_copy(model, str(base)) == str(base / "100")


def test_other_bytes_or_files_or_an_older_match_are_not_the_same(tmp_path):
  model = _saved_model(tmp_path / "model")
  base = tmp_path / "serving"
  _saved_model(base / "100")
  _saved_model(base / "200", weights=b"w2")  # the latest differs
  assert pusher.served_copy(model, str(base)) is None
  _saved_model(base / "300")
  with open(base / "300" / "extra.txt", "w") as f:
    f.write("x")
  assert pusher.served_copy(model, str(base)) is None
  assert pusher.served_copy(model, None) is None
