"""serving.client, `cxr predict`, `cxr serve`, REST: against serving.server."""

import base64
import datetime
import io
import ipaddress
import json
import os
import signal
import socket
import threading
import time
import urllib.error
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
import grpc
import numpy as np
from PIL import Image
import pytest

from bench import dicom_files
from cxr import cli
from schema import contract
from schema.settings import ServeSettings
from serving import client as serving_client
from serving import dicom
from serving import server
from serving.export import signatures
from tests.test_server import BINARY
from tests.test_server import export_test_model
from tests.test_server import png

HAS_GRADCAM = hasattr(signatures, "GRADCAM")
needs_gradcam = pytest.mark.skipif(
    not HAS_GRADCAM, reason="serving.signatures has no gradcam signature")


@pytest.fixture(scope="module")
def model_base(tmp_path_factory):
  base = str(tmp_path_factory.mktemp("serving"))
  export_test_model(base, BINARY, 1)
  return base


@pytest.fixture(scope="module")
def served(model_base):
  handle = server.start_server(
      model_base, ServeSettings(port=0, rest_port=0, poll_seconds=0.2))
  yield handle
  handle.stop()


def _unused_address() -> str:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return f"127.0.0.1:{s.getsockname()[1]}"


def test_client_predict_and_status(served):
  client = serving_client.Client(served.address)
  out = client.predict(BINARY, [png(40, 50), png(80, 60)])
  assert out["probabilities"].shape == (2, 2)
  assert out["class_id"].tolist() == out["probabilities"].argmax(1).tolist()
  assert client.status(BINARY) == {1: "AVAILABLE"}
  assert "serving_default" in client.signatures(BINARY)
  pinned = client.predict(BINARY, [png(40, 50)], version=1)
  np.testing.assert_allclose(pinned["probabilities"],
                             out["probabilities"][:1], atol=1e-6)


def test_client_errors_name_server_and_model(served):
  down = _unused_address()
  with pytest.raises(serving_client.ServerUnavailableError) as raised:
    serving_client.Client(down, timeout=10).predict(BINARY, [png(40, 50)])
  assert f"cannot reach the model server at {down} for model " \
      f"'{BINARY}'" in str(raised.value)
  assert "\n" not in str(raised.value)

  client = serving_client.Client(served.address)
  with pytest.raises(serving_client.ModelNotFoundError) as raised:
    client.predict("no_such_model", [png(40, 50)])
  assert str(raised.value) == (
      f"model 'no_such_model' not found on {served.address}: Servable not "
      "found for request: Latest(no_such_model)")
  with pytest.raises(serving_client.ModelNotFoundError) as raised:
    client.status(BINARY, version=5)
  assert f"model '{BINARY}' version 5 not found" in str(raised.value)

  with pytest.raises(serving_client.DeadlineExceededError) as raised:
    serving_client.Client(served.address, timeout=1e-4).predict(
        BINARY, [png(40, 50)])
  assert f"{served.address} did not answer within 0.0001 s" in str(
      raised.value)

  with pytest.raises(serving_client.ClientError) as raised:
    client.predict(BINARY, [b"not an image"])
  assert raised.value.code.name == "INVALID_ARGUMENT"
  assert "not a JPEG or PNG image" in str(raised.value)


def test_cxr_predict_one_line_per_image(served, tmp_path, capsys):
  paths = []
  for i, (h, w) in enumerate([(40, 50), (120, 90)]):
    paths.append(str(tmp_path / f"xray{i}.png"))
    with open(paths[-1], "wb") as f:
      f.write(png(h, w))
  garbage = tmp_path / "notes.png"
  garbage.write_bytes(b"not an image")
  missing = str(tmp_path / "missing.jpeg")
  code = cli.main(["predict", paths[0], missing, str(garbage), paths[1],
                   "--server", served.address, "--model", BINARY])
  out, err = capsys.readouterr()
  assert code == 1  # some images could not be predicted
  rows = [line.split("\t") for line in out.splitlines()]
  assert [r[0] for r in rows] == paths
  expected = serving_client.Client(served.address).predict(
      BINARY, [png(40, 50), png(120, 90)])
  for row, probabilities in zip(rows, expected["probabilities"]):
    assert row[1] == contract.CLASS_NAMES["binary"][
        int(probabilities.argmax())]
    assert float(row[2]) == pytest.approx(probabilities.max(), abs=1e-4)
    assert row[3] == f"threshold {expected['threshold'][0]:.4f}"
  assert f"{missing}: cannot read: No such file or directory" in err
  assert f"{garbage}: rejected by the server: " in err
  assert "not a JPEG or PNG image" in err


def test_cxr_predict_takes_dicom_files(served, tmp_path, capsys):
  good = tmp_path / "IM0001"  # no extension, as PACS exports write them
  good.write_bytes(dicom_files.file_bytes(photometric="MONOCHROME1"))
  bad = tmp_path / "IM0002.dcm"
  bad.write_bytes(good.read_bytes()[:1000])
  code = cli.main(["predict", str(good), str(bad), "--server",
                   served.address, "--model", BINARY])
  out, err = capsys.readouterr()
  assert code == 1
  row, = [line.split("\t") for line in out.splitlines()]
  # Served as the 16-bit PNG ingestion makes of it.
  expected = serving_client.Client(served.address).predict(
      BINARY, [dicom.read(good.read_bytes()).png])
  assert row[0] == str(good)
  assert float(row[2]) == pytest.approx(
      expected["probabilities"].max(), abs=1e-4)
  assert f"{bad}: not sent: corrupt or truncated pixel data" in err


def test_cxr_predict_against_an_unknown_model(served, tmp_path, capsys):
  image = tmp_path / "xray.png"
  image.write_bytes(png(40, 50))
  code = cli.main(["predict", str(image), "--server", served.address,
                   "--model", "no_such_model"])
  out, err = capsys.readouterr()
  assert code == 1 and out == ""
  assert "model 'no_such_model' not found" in err
  assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_cxr_predict_without_a_server(tmp_path, capsys):
  image = tmp_path / "xray.png"
  image.write_bytes(png(40, 50))
  down = _unused_address()
  code = cli.main(["predict", str(image), "--server", down, "--model",
                   BINARY, "--timeout", "10"])
  out, err = capsys.readouterr()
  assert code == 1 and out == ""
  assert err.startswith(f"error: cannot reach the model server at {down}")
  assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_rest_predict_and_status(served):
  images = [png(40, 50), png(70, 80)]
  body = json.dumps({"signature_name": "serving_default", "instances": [
      {"b64": base64.b64encode(i).decode("ascii")} for i in images]})
  url = f"http://127.0.0.1:{served.rest_port}/v1/models/{BINARY}"
  with urllib.request.urlopen(urllib.request.Request(
      url + ":predict", data=body.encode(), method="POST")) as response:
    predictions = json.load(response)["predictions"]
  expected = serving_client.Client(served.address).predict(BINARY, images)
  assert [p["class_id"] for p in predictions] == expected["class_id"].tolist()
  np.testing.assert_allclose([p["probabilities"] for p in predictions],
                             expected["probabilities"], atol=1e-6)
  assert [p["class_name"] for p in predictions] == [
      n.decode() for n in expected["class_name"]]
  with urllib.request.urlopen(url) as response:
    assert json.load(response) == {"model_version_status": [{
        "version": "1", "state": "AVAILABLE",
        "status": {"error_code": "OK", "error_message": ""}}]}
  with pytest.raises(urllib.error.HTTPError) as raised:
    urllib.request.urlopen(url.replace(BINARY, "no_such_model") + ":predict",
                           data=body.encode())
  assert raised.value.code == 404
  assert json.load(raised.value) == {
      "error": "Servable not found for request: Latest(no_such_model)"}


@needs_gradcam
def test_gradcam_fills_class_index_from_the_signature_default(served):
  client = serving_client.Client(served.address)
  signature = client.signatures(BINARY)["gradcam"]
  assert "class_index" in signature.defaults
  images = [png(40, 50), png(90, 70)]
  out = client.gradcam(BINARY, images)  # no class_index sent
  assert out["class_id"].tolist() == out["probabilities"].argmax(1).tolist()
  assert out["heatmap"].shape[:1] == (2,) and out["heatmap"].ndim == 3
  assert out["heatmap"].dtype == np.float32
  assert 0 <= out["heatmap"].min() and out["heatmap"].max() <= 1
  explained = client.gradcam(BINARY, images, class_index=1)
  assert explained["class_id"].tolist() == [1, 1]
  assert "method" in signature.defaults
  named = client.gradcam(BINARY, images, method="hirescam")
  np.testing.assert_allclose(named["heatmap"], out["heatmap"], atol=1e-6)


@needs_gradcam
def test_gradcam_method_input(served):
  client = serving_client.Client(served.address)
  images = [png(40, 50), png(90, 70)]
  differs = []
  # The model is untrained: one class's map can be all zero (negative
  # evidence clipped) for both methods, and then the other class's is not,
  # since a binary model's two gradients are each other's negatives.
  for class_index in (0, 1):
    hires = client.gradcam(BINARY, images, class_index=class_index,
                           method="hirescam")
    plain = client.gradcam(BINARY, images, class_index=class_index,
                           method="gradcam")
    np.testing.assert_allclose(hires["probabilities"], plain["probabilities"],
                               atol=1e-6)
    assert 0 <= hires["heatmap"].min() and hires["heatmap"].max() <= 1
    differs.append(not np.allclose(hires["heatmap"], plain["heatmap"],
                                   atol=1e-3))
  # The exact values are test_export's; here: the method reaches the graph.
  assert any(differs)
  with pytest.raises(serving_client.ClientError) as raised:
    client.gradcam(BINARY, images, method="scorecam")
  assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
  assert "method must be one of" in raised.value.details


@needs_gradcam
def test_cxr_predict_gradcam_writes_png_overlays(served, tmp_path, capsys):
  paths = []
  for i in range(2):
    paths.append(str(tmp_path / f"xray{i}.jpeg"))
    Image.open(io.BytesIO(png(60 + i, 50))).convert("RGB").save(paths[-1])
  out_dir = tmp_path / "cams"
  assert cli.main(["predict", *paths, "--server", served.address, "--model",
                   BINARY, "--gradcam", str(out_dir)]) == 0
  rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
  assert [r[0] for r in rows] == paths
  for row, i in zip(rows, range(2)):
    assert row[1] in contract.CLASS_NAMES["binary"]
    assert row[3] == str(out_dir / f"xray{i}_gradcam.png")
    with Image.open(row[3]) as overlay:
      assert overlay.format == "PNG"
      overlay.load()  # decodes the whole image


def _self_signed(directory) -> tuple:
  """A certificate for 127.0.0.1 and its key, as PEM files."""
  key = ec.generate_private_key(ec.SECP256R1())
  name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
  now = datetime.datetime.now(datetime.timezone.utc)
  cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
          .public_key(key.public_key())
          .serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=1))
          .not_valid_after(now + datetime.timedelta(hours=1))
          .add_extension(x509.SubjectAlternativeName(
              [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
          .sign(key, hashes.SHA256()))
  cert_path, key_path = directory / "cert.pem", directory / "key.pem"
  cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
  key_path.write_bytes(key.private_bytes(
      serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
      serialization.NoEncryption()))
  return str(cert_path), str(key_path)


def test_tls(model_base, tmp_path):
  cert, key = _self_signed(tmp_path)
  handle = server.start_server(
      model_base, ServeSettings(port=0, tls_cert=cert, tls_key=key))
  try:
    client = serving_client.Client(handle.address, tls_ca=cert)
    assert client.status(BINARY) == {1: "AVAILABLE"}
    assert client.predict(BINARY, [png(40, 50)])["class_id"].shape == (1,)
    with pytest.raises(serving_client.ServerUnavailableError):
      serving_client.Client(handle.address, timeout=5).status(BINARY)
  finally:
    handle.stop()


def test_cxr_serve_until_sigterm(model_base, caplog):
  """cxr serve answers, then stops on SIGTERM and returns 0.

  The test's own harmless handlers take any SIGTERM or SIGINT that arrives
  while cxr serve has none installed (before it starts, after it stops,
  or if it fails to bind), so no signal can end the test session; every
  wait has a deadline.
  """
  address = _unused_address()
  answers, errors, stray = [], [], []
  returned = threading.Event()

  def note_stray(signum, _):
    stray.append(signum)

  def call_then_terminate():
    try:
      client = serving_client.Client(address, timeout=5)
      deadline = time.monotonic() + 60
      while time.monotonic() < deadline and not returned.is_set():
        try:
          answers.append(client.predict(BINARY, [png(40, 50)]))
          break
        except serving_client.ServerUnavailableError:
          time.sleep(0.2)
    except Exception as e:  # pylint: disable=broad-except
      errors.append(e)
    finally:
      # cxr serve's SIGTERM handler ends it; without one (a regression),
      # SIGINT does, which the main thread turns into a failed assertion.
      handled = signal.getsignal(signal.SIGTERM) is not note_stray
      answers.append(handled)
      if not returned.is_set():
        os.kill(os.getpid(), signal.SIGTERM if handled else signal.SIGINT)

  previous = {s: signal.signal(s, note_stray)
              for s in (signal.SIGTERM, signal.SIGINT)}
  thread = threading.Thread(target=call_then_terminate)
  try:
    thread.start()
    # In the main thread, where Python runs signal handlers.
    try:
      code = cli.main(["serve", "--model-base", model_base, "--port",
                       address.rsplit(":", 1)[1]])
    except KeyboardInterrupt:
      code = "stopped by SIGINT"
    finally:
      returned.set()
    thread.join(timeout=30)
  finally:
    for signum, handler in previous.items():
      signal.signal(signum, handler)
  assert not errors, errors
  assert code == 0, code
  assert answers[0]["class_id"].shape == (1,)
  assert answers[-1] is True, "cxr serve did not handle SIGTERM"
  assert f"model {BINARY} version 1 loaded from" in caplog.text
