"""Version labels: cxr promote / rollback, what TF Serving's config gets, and
cxr serve routing stable and canary requests, under load too."""

import base64
import json
import os
import urllib.error
import urllib.request

import grpc
from google.protobuf import text_format
import pytest
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.config import model_server_config_pb2

from cxr import cli
from schema import contract
from schema import layout
from schema.settings import ServeSettings
from serving import client as client_lib
from serving import server
from serving import tf_serving_config
from serving.server import version_labels
from tests.test_server import BINARY, POLL, RequestLoop, _push_copy
from tests.test_server import _request, _stub, png
# model_base: the test models, exported once per session (conftest.py).
from tests.test_server import model_base  # noqa: F401  pylint: disable=unused-import

STABLE, CANARY = contract.STABLE, contract.CANARY


@pytest.fixture
def base(tmp_path, model_base):
  """A serving folder with versions 1, 2 and 3 of the binary test model."""
  folder = tmp_path / "serving"
  for version in (1, 2, 3):
    _push_copy(os.path.join(model_base, BINARY, "1"), str(folder / BINARY),
               version)
  return str(folder)


def test_promote_and_rollback_keep_a_history(base):
  assert version_labels.read_labels(base) == {}
  assert version_labels.promote(base, BINARY, 1, STABLE) is None
  assert version_labels.promote(base, BINARY, 2, STABLE) == 1
  assert version_labels.promote(base, BINARY, 3, CANARY) is None
  assert version_labels.read_labels(base) == {BINARY: {STABLE: 2, CANARY: 3}}
  with open(os.path.join(base, layout.VERSION_LABELS_FILE)) as f:
    assert json.load(f) == {BINARY: {STABLE: [1, 2], CANARY: [3]}}
  # The canary had no version before: rolling it back withdraws it.
  assert version_labels.rollback(base, BINARY, CANARY) is None
  assert version_labels.rollback(base, BINARY, STABLE) == 1
  assert version_labels.read_labels(base) == {BINARY: {STABLE: 1}}
  with pytest.raises(version_labels.LabelError, match="no canary label"):
    version_labels.rollback(base, BINARY, CANARY)


@pytest.mark.parametrize("model,version,label,message", [
    (BINARY, 9, STABLE, "has no version 9"),
    ("nope", 1, STABLE, "has no version 1"),
    (BINARY, 1, "beta", "unknown label 'beta'"),
])
def test_promote_refuses_what_cannot_be_served(base, model, version, label,
                                               message):
  with pytest.raises(version_labels.LabelError, match=message):
    version_labels.promote(base, model, version, label)
  assert not os.path.exists(os.path.join(base, layout.VERSION_LABELS_FILE))


def test_rollback_refuses_a_version_no_longer_pushed(base):
  version_labels.promote(base, BINARY, 1, STABLE)
  version_labels.promote(base, BINARY, 2, STABLE)
  os.rename(os.path.join(base, BINARY, "1"), os.path.join(base, "gone"))
  with pytest.raises(version_labels.LabelError, match="no longer pushed"):
    version_labels.rollback(base, BINARY, STABLE)
  assert version_labels.read_labels(base) == {BINARY: {STABLE: 2}}


def _config(text):
  return text_format.Parse(text, model_server_config_pb2.ModelServerConfig())


def test_tf_serving_config_carries_the_labels(base, caplog):
  unlabelled = _config(tf_serving_config.models_config(base))
  policy = unlabelled.model_config_list.config[0].model_version_policy
  assert policy.latest.num_versions == 1
  version_labels.promote(base, BINARY, 1, STABLE)
  version_labels.promote(base, BINARY, 2, CANARY)
  model = _config(tf_serving_config.models_config(base)
                  ).model_config_list.config[0]
  # The labelled versions and the newest, each label on its version.
  assert list(model.model_version_policy.specific.versions) == [1, 2, 3]
  assert dict(model.version_labels) == {STABLE: 1, CANARY: 2}
  # A label on a version since removed is left out (TF Serving would wait
  # for it and open no port).
  os.rename(os.path.join(base, BINARY, "2"), os.path.join(base, "gone"))
  model = _config(tf_serving_config.models_config(base)
                  ).model_config_list.config[0]
  assert dict(model.version_labels) == {STABLE: 1}
  assert list(model.model_version_policy.specific.versions) == [1, 3]
  assert "Leaving out label canary" in caplog.text


def test_cxr_promote_rewrites_tf_servings_config_in_place(base, capsys):
  tf_serving_config.write_models_config(base, container_base="gs://b/m")
  assert cli.main(["promote", base, BINARY, "2", "--label", STABLE]) == 0
  assert f"{BINARY}: stable -> version 2" in capsys.readouterr().out
  with open(os.path.join(base, layout.MODELS_CONFIG_FILE)) as f:
    model = _config(f.read()).model_config_list.config[0]
  assert model.base_path == f"gs://b/m/{BINARY}"  # its base kept
  assert dict(model.version_labels) == {STABLE: 2}
  assert cli.main(["rollback", base, BINARY]) == 0
  assert f"{BINARY}: stable -> removed" in capsys.readouterr().out
  with open(os.path.join(base, layout.MODELS_CONFIG_FILE)) as f:
    model = _config(f.read()).model_config_list.config[0]
  assert not model.version_labels
  assert model.model_version_policy.latest.num_versions == 1
  assert cli.main(["promote", base, BINARY, "7", "--label", CANARY]) == 1
  assert "has no version 7" in capsys.readouterr().err


def _labelled(label, model=BINARY):
  request = _request(model, images=[png(40, 50)])
  request.model_spec.version_label = label
  return request


def test_cxr_serve_routes_labels_over_grpc_and_rest(base):
  version_labels.promote(base, BINARY, 1, STABLE)
  version_labels.promote(base, BINARY, 3, CANARY)
  handle = server.start_server(base, ServeSettings(
      port=0, rest_port=0, poll_seconds=POLL))
  try:
    # The labelled version 1 is served besides the newest.
    assert handle.repository.models() == {BINARY: (1, 3)}
    stub = _stub(handle.address)
    for label, version in ((STABLE, 1), (CANARY, 3)):
      response = stub.Predict(_labelled(label), timeout=60)
      assert response.model_spec.version.value == version
    assert stub.Predict(_request(), timeout=60).model_spec.version.value == 3
    with pytest.raises(grpc.RpcError) as raised:
      stub.Predict(_labelled("beta"), timeout=60)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Unrecognized servable version label: beta" in \
        raised.value.details()
    # REST, as TF Serving's /labels/ paths.
    rest = f"http://127.0.0.1:{handle.rest_port}/v1/models/{BINARY}"
    code, status = _http(f"{rest}/labels/{STABLE}")
    assert code == 200
    assert [s["version"] for s in status["model_version_status"]] == ["1"]
    code, answer = _http(f"{rest}/labels/{CANARY}:predict", {
        "instances": [{"b64": base64.b64encode(png(40, 50)).decode()}]})
    assert code == 200 and len(answer["predictions"]) == 1
    assert _http(f"{rest}/labels/beta")[0] == 400
    # The client and cxr predict's --label.
    with client_lib.Client(handle.address, timeout=60,
                           label=CANARY) as client:
      assert client.status(BINARY) == {3: "AVAILABLE"}
    with client_lib.Client(handle.address, timeout=60,
                           label=STABLE) as client:
      assert client.status(BINARY) == {1: "AVAILABLE"}
  finally:
    handle.stop()


def _http(url, document=None):
  """(status code, JSON answer) of a GET, or of a POST of `document`."""
  data = None if document is None else json.dumps(document).encode()
  try:
    with urllib.request.urlopen(url, data=data, timeout=60) as answer:
      return answer.status, json.load(answer)
  except urllib.error.HTTPError as e:
    return e.code, json.load(e)


def test_promote_and_rollback_under_load_fail_no_request(base):
  version_labels.promote(base, BINARY, 1, STABLE)
  handle = server.start_server(base, ServeSettings(port=0,
                                                   poll_seconds=POLL))
  loop = RequestLoop(handle.address, _labelled(STABLE))
  try:
    loop.wait_for_version(1)
    assert cli.main(["promote", base, BINARY, "2", "--label", STABLE]) == 0
    loop.wait_for_version(2)
    assert cli.main(["rollback", base, BINARY]) == 0
    loop.wait_for_version(1)
  finally:
    loop.stop()
    handle.stop()
  assert loop.failures == []
  # Each switch happened once, in order: 1, then 2, then 1 again.
  switches = [v for i, v in enumerate(loop.versions)
              if i == 0 or loop.versions[i - 1] != v]
  assert switches == [1, 2, 1]
