"""REST against careless and hostile clients: every client error is a 4xx
with one line, a silent connection cannot hold up others (TLS included),
and connections are capped."""

import base64
import http.client
import json
import socket
import ssl
import time

import pytest

from schema.settings import ServeSettings
from serving import server
from tests.test_client_cli import _self_signed
from tests.test_server import BINARY
from tests.test_server import export_test_model
from tests.test_server import png
from tests.test_server import POLL

TIMEOUT = 1.0  # the servers' rest_timeout_seconds here
CONNECTIONS = 4
PREDICT = f"/v1/models/{BINARY}:predict"


@pytest.fixture(scope="module")
def model_base(tmp_path_factory):
  base = str(tmp_path_factory.mktemp("serving"))
  export_test_model(base, BINARY, 1)
  return base


def _settings(**overrides):
  return ServeSettings(port=0, rest_port=0, poll_seconds=POLL,
                       rest_timeout_seconds=TIMEOUT,
                       max_connections=CONNECTIONS, **overrides)


@pytest.fixture(scope="module")
def rest(model_base):
  handle = server.start_server(model_base, _settings())
  yield handle
  handle.stop()


def _raw(port: int, data: bytes) -> bytes:
  """Sends raw bytes; the whole answer, until the server closes."""
  with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
    sock.sendall(data)
    chunks = []
    while chunk := sock.recv(65536):
      chunks.append(chunk)
  return b"".join(chunks)


def _post(port: int, body: bytes, path: str = PREDICT, headers=None):
  connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
  connection.request("POST", path, body=body, headers=headers or {})
  response = connection.getresponse()
  return response.status, json.loads(response.read())


def _images(*images) -> bytes:
  return json.dumps({"instances": [
      {"b64": base64.b64encode(i).decode()} for i in images]}).encode()


@pytest.mark.parametrize("length,status", [
    ("-1", 400), ("abc", 400), ("1e3", 400), (str(10**30), 429)])
def test_a_bad_content_length_is_refused(rest, length, status):
  answer = _raw(rest.rest_port, (
      f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n"
      "\r\n").encode() + b"{}")
  assert answer.startswith(f"HTTP/1.0 {status}".encode()), answer[:200]


def test_a_missing_content_length_is_refused(rest):
  answer = _raw(rest.rest_port,
                f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
  assert answer.startswith(b"HTTP/1.0 400"), answer[:200]
  assert b"Content-Length required" in answer


@pytest.mark.parametrize("body,path,message", [
    (b'{"instances": [{"b64": "not base64!"}]}', PREDICT, "base64"),
    # Not ASCII: base64 raised ValueError, a 500 (found by the fuzzer).
    (b'{"instances": [{"b64": "\\u00e9\\u00e9=="}]}', PREDICT, "base64"),
    (b"[" * 100_000, PREDICT, "nested"),
    # Parsed by json, but deeper than any tensor (found by the fuzzer: a 500).
    (b'{"instances": ' + b"[" * 600 + b"1" + b"]" * 600 + b"}", PREDICT,
     "nested"),
    (b'{"instances": []}', f"/v1/models/{BINARY}/versions/{10**30}:predict",
     "int64"),
    # An integer beyond int32: an OverflowError's 500 (found by the fuzzer).
    (json.dumps({"signature_name": "gradcam", "instances": [{
        "images": {"b64": base64.b64encode(png(40, 50)).decode()},
        "class_index": 10**30}]}).encode(), PREDICT, "input class_index"),
])
def test_malformed_requests_are_client_errors(rest, body, path, message):
  status, answer = _post(rest.rest_port, body, path)
  assert status == 400, answer
  assert message in answer["error"] and "Traceback" not in answer["error"]
  assert _post(rest.rest_port, _images(png(40, 50)))[0] == 200


def test_a_server_error_tells_the_client_nothing_of_its_insides(
    rest, monkeypatch):
  def broken(request):
    raise RuntimeError("secret detail of the server")
  monkeypatch.setattr(rest.repository, "predict", broken)
  status, answer = _post(rest.rest_port, _images(png(40, 50)))
  assert status == 500
  assert "secret" not in answer["error"]


def test_a_stalled_request_is_closed_after_the_timeout(rest):
  with socket.create_connection(("127.0.0.1", rest.rest_port),
                                timeout=30) as sock:
    sock.sendall(f"POST {PREDICT} HTTP/1.1\r\n".encode())  # then silence
    start = time.monotonic()
    assert sock.recv(65536) == b""  # closed by the server
    assert time.monotonic() - start < TIMEOUT + 5


def test_connections_beyond_the_cap_are_closed_and_service_resumes(rest):
  idle = [socket.create_connection(("127.0.0.1", rest.rest_port))
          for _ in range(CONNECTIONS)]
  try:
    time.sleep(0.3)  # let the server take them
    with socket.create_connection(("127.0.0.1", rest.rest_port),
                                  timeout=30) as extra:
      extra.sendall(f"GET /v1/models/{BINARY} HTTP/1.1\r\n\r\n".encode())
      assert extra.recv(65536) == b""
  finally:
    for sock in idle:
      sock.close()
  time.sleep(TIMEOUT)
  assert _post(rest.rest_port, _images(png(40, 50)))[0] == 200


def test_a_silent_tls_client_does_not_block_others(model_base, tmp_path):
  cert, key = _self_signed(tmp_path)
  handle = server.start_server(model_base, _settings(tls_cert=cert,
                                                     tls_key=key))
  try:
    context = ssl.create_default_context(cafile=cert)
    with socket.create_connection(("127.0.0.1", handle.rest_port)):
      # That connection never starts its handshake; another client is
      # answered at once, not after it.
      start = time.monotonic()
      connection = http.client.HTTPSConnection(
          "127.0.0.1", handle.rest_port, timeout=30, context=context)
      connection.request("GET", f"/v1/models/{BINARY}")
      response = connection.getresponse()
      assert response.status == 200, response.read()
      assert time.monotonic() - start < TIMEOUT
  finally:
    handle.stop()


@pytest.mark.parametrize("host,loopback", [
    ("127.0.0.1", True), ("::1", True), ("localhost", True),
    ("0.0.0.0", False), ("::", False), ("10.1.2.3", False),
    ("xray-server", False)])
def test_listening_beyond_loopback_is_recognised(host, loopback):
  # start_server warns when it serves such an address without TLS.
  assert server.is_loopback(host) is loopback


def test_serving_every_interface_without_tls_warns(model_base, caplog):
  handle = server.start_server(model_base, ServeSettings(
      host="0.0.0.0", port=0, poll_seconds=POLL))
  handle.stop()
  assert any("without TLS" in r.getMessage() and r.levelname == "WARNING"
             for r in caplog.records)
