"""`cxr submit`: a compiled spec to Vertex AI or Kubeflow Pipelines.

The client classes are fakes here, so no test reaches a cloud; the command
line's failures (no credentials, no endpoint, bad spec) run for real in a
subprocess, where they must end in one line and exit code 2.
"""

import json
import os
import subprocess
import sys
import time

import pytest

from cxr import cli
from kubeflow import submit
from kubeflow import v2_runner
from schema import settings

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SUBPROCESS_SECONDS = 30


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory):
  """A spec compiled as tests/test_kubeflow_compile.py compiles one."""
  return v2_runner.compile_pipeline(
      str(tmp_path_factory.mktemp("spec") / "cxr.json"),
      data_root="gs://bucket/chest_xray", pipeline_root="gs://bucket/root",
      serving_base="gs://bucket/serving", task="binary",
      cloud=settings.CloudSettings(image="example.com/cxr-tfx:latest",
                                   project="proj"),
      run=settings.RunSettings(models=("cnn",)))


class FakePipelineJob:
  """Records what aiplatform.PipelineJob would have been given."""
  made = []

  def __init__(self, **kwargs):
    self.kwargs = kwargs
    self.calls = []
    self.resource_name = "projects/p/locations/r/pipelineJobs/cxr-binary-1"
    FakePipelineJob.made.append(self)

  def submit(self, **kwargs):
    self.calls.append(("submit", kwargs))

  def run(self, **kwargs):
    self.calls.append(("run", kwargs))


class FailingPipelineJob(FakePipelineJob):

  def run(self, **kwargs):
    raise RuntimeError("Job failed with:\ncode: 9\nmessage: a task failed")


def test_vertex_submit_builds_the_pipeline_job(spec_path):
  FakePipelineJob.made.clear()
  job = submit.submit_vertex(
      spec_path, "my-project", "europe-west4",
      service_account="runner@my-project.iam.gserviceaccount.com",
      labels={"team": "cxr"}, job_class=FakePipelineJob)
  assert FakePipelineJob.made == [job]
  with open(spec_path) as f:
    spec = json.load(f)
  assert job.kwargs == {
      "display_name": "cxr-binary", "template_path": spec_path,
      "pipeline_root": None, "enable_caching": None,
      "project": "my-project", "location": "europe-west4",
      # The compiler's own labels stay; the caller's are added.
      "labels": {**spec["labels"], "team": "cxr"}}
  assert spec["labels"]["tfx_runner"] == "kubeflow_v2"
  assert job.calls == [
      ("submit",
       {"service_account": "runner@my-project.iam.gserviceaccount.com"})]


def test_vertex_wait_runs_the_job_to_its_end(spec_path):
  job = submit.submit_vertex(spec_path, "p", "us-central1", wait=True,
                             pipeline_root="gs://other/root",
                             job_class=FakePipelineJob)
  assert job.calls == [("run", {"service_account": None, "sync": True})]
  assert job.kwargs["pipeline_root"] == "gs://other/root"


def test_a_failed_vertex_run_is_exit_code_1(spec_path):
  with pytest.raises(submit.SubmitError) as raised:
    submit.submit_vertex(spec_path, "p", "us-central1", wait=True,
                         job_class=FailingPipelineJob)
  assert raised.value.exit_code == 1
  assert "\n" not in str(raised.value)
  assert "a task failed" in str(raised.value)


class FakeKfpClient:
  """Records the calls kfp.Client would have received; reads the package
  with KFP's own loader while it exists."""
  made = []
  final_state = "SUCCEEDED"

  def __init__(self, host):
    self.host = host
    self.calls = []
    FakeKfpClient.made.append(self)

  def create_run_from_pipeline_package(self, pipeline_file, **kwargs):
    # pylint: disable-next=g-import-not-at-top
    from kfp.client import client as kfp_client
    # pylint: disable-next=protected-access
    self.package = kfp_client._extract_pipeline_yaml(pipeline_file)
    self.calls.append(("create", os.path.basename(pipeline_file), kwargs))
    return type("Result", (), {"run_id": "run-1"})()

  def wait_for_run_completion(self, run_id, timeout):
    self.calls.append(("wait", run_id))
    return type("Run", (), {"run_id": run_id, "state": self.final_state})()


def test_kubeflow_creates_a_run_from_the_spec(spec_path):
  FakeKfpClient.made.clear()
  result = submit.submit_kubeflow(spec_path, "http://kfp.example:8080",
                                  client_class=FakeKfpClient)
  (client,) = FakeKfpClient.made
  assert client.host == "http://kfp.example:8080"
  assert result.run_id == "run-1"
  ((call, package, kwargs),) = client.calls
  assert call == "create" and package == "cxr-binary.yaml"
  # The data folder is a runtime parameter; KFP needs its value passed.
  assert kwargs["arguments"] == {"data_root": "gs://bucket/chest_xray"}
  assert kwargs["run_name"].startswith("cxr-binary ")
  # TFX keeps the root in runtimeConfig, which KFP's client does not read.
  assert kwargs["pipeline_root"] == "gs://bucket/root"
  assert kwargs["enable_caching"] is None
  assert kwargs["service_account"] is None
  assert client.package.pipeline_spec.pipeline_info.name == "cxr-binary"
  assert "Trainer_cnn" in client.package.pipeline_spec.root.dag.tasks


def test_kubeflow_wait_reports_how_the_run_ended(spec_path):
  FakeKfpClient.made.clear()
  run = submit.submit_kubeflow(spec_path, "http://kfp", wait=True,
                               client_class=FakeKfpClient)
  assert run.state == "SUCCEEDED"
  assert FakeKfpClient.made[0].calls[-1] == ("wait", "run-1")

  class Failing(FakeKfpClient):
    final_state = "FAILED"
  with pytest.raises(submit.SubmitError, match="ended FAILED") as raised:
    submit.submit_kubeflow(spec_path, "http://kfp", wait=True,
                           client_class=Failing)
  assert raised.value.exit_code == 1


def test_spec_files_are_checked_first(tmp_path, spec_path):
  cases = {"missing.json": None, "text.json": "not json",
           "other.json": json.dumps({"name": "x"}),
           "list.json": "[1, 2]"}
  expected = {"missing.json": "pipeline spec not found",
              "text.json": "is not a JSON pipeline spec",
              "other.json": "is not a compiled pipeline",
              "list.json": "is not a compiled pipeline"}
  for name, content in cases.items():
    if content is not None:
      (tmp_path / name).write_text(content)
    with pytest.raises(submit.SubmitError, match=expected[name]) as raised:
      submit.submit_kubeflow(str(tmp_path / name), "http://kfp",
                             client_class=FakeKfpClient)
    assert raised.value.exit_code == 2
  # A bare PipelineSpec (what KFP's own compiler writes) is taken.
  with open(spec_path) as f:
    bare = json.load(f)["pipelineSpec"]
  (tmp_path / "bare.json").write_text(json.dumps(bare))
  assert submit.load_spec(str(tmp_path / "bare.json"))["pipelineSpec"] == bare


def test_labels_follow_vertex_rules():
  assert submit.parse_labels("team=cxr, env=dev-1,empty=") == {
      "team": "cxr", "env": "dev-1", "empty": ""}
  for text, problem in (("team", "not KEY=VALUE"),
                        ("Team=cxr", "label key 'Team'"),
                        ("1team=cxr", "label key '1team'"),
                        ("team=CXR", "label value 'CXR'"),
                        ("team=a.b", "label value 'a.b'"),
                        ("k" * 64 + "=v", "at most 63"),
                        ("team=a,team=b", "given twice"),
                        (",", "no labels")):
    with pytest.raises(ValueError, match=problem):
      submit.parse_labels(text)


@pytest.mark.parametrize("argv, message", [
    (["--engine", "vertex"], "--engine vertex needs --project"),
    (["--engine", "vertex", "--project", "p"],
     "--engine vertex needs --region"),
    (["--engine", "kubeflow"], "--engine kubeflow needs --host"),
    (["--engine", "kubeflow", "--host", "http://kfp", "--labels", "a=b"],
     "--labels does not apply to --engine kubeflow"),
    (["--engine", "vertex", "--project", "p", "--region", "r", "--host",
      "http://kfp"], "--host does not apply to --engine vertex"),
])
def test_flags_the_engine_needs(spec_path, capsys, argv, message):
  assert cli.main(["submit", spec_path] + argv) == 2
  err = capsys.readouterr().err
  assert message in err and len(err.strip().splitlines()) == 1


def test_bad_labels_are_a_usage_error(spec_path, capsys):
  with pytest.raises(SystemExit) as raised:
    cli.main(["submit", spec_path, "--engine", "vertex", "--project", "p",
              "--region", "r", "--labels", "Team=x"])
  assert raised.value.code == 2
  assert "argument --labels: label key 'Team'" in capsys.readouterr().err


def _cxr_submit(tmp_path, *argv, **env_extra):
  """`cxr submit ...` in a clean environment: no Google credentials, no
  gcloud configuration, no metadata server (google-auth's NO_GCE_CHECK; the
  metadata host points at a closed port should anything still ask it)."""
  gcloud = tmp_path / "gcloud"
  gcloud.mkdir(exist_ok=True)
  env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"),
         "HOME": str(tmp_path), "CLOUDSDK_CONFIG": str(gcloud),
         "NO_GCE_CHECK": "true", "GCE_METADATA_HOST": "127.0.0.1:1",
         "GCE_METADATA_IP": "127.0.0.1:1", "PYTHONPATH": REPO, **env_extra}
  start = time.monotonic()
  done = subprocess.run([sys.executable, "-m", "cxr.cli", "submit", *argv],
                        cwd=tmp_path, env=env, capture_output=True,
                        text=True, timeout=SUBPROCESS_SECONDS)
  return done, time.monotonic() - start


def _assert_one_clear_line(done, *phrases):
  assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
  lines = done.stderr.strip().splitlines()
  assert len(lines) == 1, done.stderr[-2000:]
  assert "Traceback" not in done.stderr
  for phrase in phrases:
    assert phrase in lines[0], lines[0]


def test_vertex_without_credentials(tmp_path, spec_path):
  done, _ = _cxr_submit(tmp_path, spec_path, "--engine", "vertex",
                        "--project", "p", "--region", "us-central1")
  _assert_one_clear_line(done, "no Google Cloud credentials",
                         "gcloud auth application-default login")


def test_vertex_with_a_missing_credentials_file(tmp_path, spec_path):
  missing = str(tmp_path / "no-such-key.json")
  done, _ = _cxr_submit(tmp_path, spec_path, "--engine", "vertex",
                        "--project", "p", "--region", "us-central1",
                        GOOGLE_APPLICATION_CREDENTIALS=missing)
  _assert_one_clear_line(done, "no Google Cloud credentials", missing)


def test_kubeflow_without_an_endpoint(tmp_path, spec_path):
  done, seconds = _cxr_submit(tmp_path, spec_path, "--engine", "kubeflow",
                              "--host", "http://127.0.0.1:1")
  _assert_one_clear_line(done, "could not reach Kubeflow Pipelines at "
                         "http://127.0.0.1:1", "Connection refused", "--host")
  assert seconds < SUBPROCESS_SECONDS


def test_a_file_that_is_no_spec(tmp_path):
  (tmp_path / "notes.json").write_text('{"pipeline": "cxr"}')
  done, _ = _cxr_submit(tmp_path, str(tmp_path / "notes.json"), "--engine",
                        "kubeflow", "--host", "http://127.0.0.1:1")
  _assert_one_clear_line(done, "is not a compiled pipeline", "pipelineSpec")


def test_the_command_line_parses_without_the_cloud_clients():
  code = ("from cxr import cli\ncli.build_parser()\nimport sys\n"
          "print(' '.join(sorted(sys.modules)))")
  loaded = set(subprocess.run([sys.executable, "-c", code], cwd=REPO,
                              check=True, capture_output=True, text=True,
                              timeout=SUBPROCESS_SECONDS).stdout.split())
  assert not {"kfp", "kfp_server_api", "google.cloud.aiplatform",
              "google.auth"} & loaded
