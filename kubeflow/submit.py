"""Submits a compiled pipeline spec to Vertex AI Pipelines or to Kubeflow
Pipelines.

The spec is the JSON file kubeflow/v2_runner.py writes: TFX's
KubeflowV2DagRunner writes a PipelineJob (`pipelineSpec`, `runtimeConfig`
with the pipeline root, `labels`, `displayName`); a bare PipelineSpec
(`pipelineInfo`, `root`, ...) is taken too. The client libraries are
imported when a submission runs, and their classes can be handed in, so
tests reach no cloud.

Every failure is raised as SubmitError, whose message is one line saying
what failed and what to do: exit_code 2 when no job was created (bad spec,
no credentials, endpoint unreachable or refusing), 1 when a job ran and
failed (--wait).
"""

import datetime
import json
import os
import re
import tempfile
from typing import Any, Dict, Mapping, Optional

# Vertex AI's label rules (the Vertex SDK checks the same): lowercase
# letters, digits, '_' and '-'; a key starts with a letter; at most 63
# characters each and 64 labels.
_LABEL_KEY = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_LABEL_VALUE = re.compile(r"[a-z0-9_-]{0,63}")
MAX_LABELS = 64

_LOGIN_HINT = ("run `gcloud auth application-default login`, or set "
               "GOOGLE_APPLICATION_CREDENTIALS to a service account key file")


class SubmitError(Exception):
  """A submission failed; the message is one line for a person."""

  def __init__(self, message: str, exit_code: int = 2):
    super().__init__(" ".join(message.split()))
    self.exit_code = exit_code


def _one_line(error: BaseException) -> str:
  """The error's message on one line; for urllib3's retries, the last
  connection error without the connection object's repr."""
  import urllib3  # pylint: disable=g-import-not-at-top
  if isinstance(error, urllib3.exceptions.MaxRetryError) and error.reason:
    error = error.reason
  text = re.sub(r"^<[^>]*>: ", "", " ".join(str(error).split()))
  return text or type(error).__name__


def parse_labels(text: str) -> Dict[str, str]:
  """'team=cxr,env=dev' -> {'team': 'cxr', 'env': 'dev'}, checked against
  Vertex AI's label rules; ValueError names the offending pair."""
  labels = {}
  for pair in (p.strip() for p in text.split(",")):
    if not pair:
      continue
    key, sep, value = pair.partition("=")
    key, value = key.strip(), value.strip()
    if not sep:
      raise ValueError(f"label {pair!r} is not KEY=VALUE")
    if not _LABEL_KEY.fullmatch(key):
      raise ValueError(
          f"label key {key!r}: must start with a lowercase letter and hold "
          "only lowercase letters, digits, '_' and '-', at most 63 "
          "characters")
    if not _LABEL_VALUE.fullmatch(value):
      raise ValueError(
          f"label value {value!r} of {key!r}: only lowercase letters, "
          "digits, '_' and '-', at most 63 characters")
    if key in labels:
      raise ValueError(f"label {key!r} is given twice")
    labels[key] = value
  if not labels:
    raise ValueError(f"no labels in {text!r}; expected KEY=VALUE[,...]")
  if len(labels) > MAX_LABELS:
    raise ValueError(f"{len(labels)} labels; Vertex AI takes at most "
                     f"{MAX_LABELS}")
  return labels


def load_spec(spec_path: str) -> Dict[str, Any]:
  """The spec as a PipelineJob dict ({'pipelineSpec': ..., 'runtimeConfig':
  ...}), or SubmitError saying why the file is not one."""
  if not os.path.isfile(spec_path):
    raise SubmitError(f"pipeline spec not found: {spec_path}")
  try:
    with open(spec_path, encoding="utf-8") as f:
      spec = json.load(f)
  except (UnicodeDecodeError, json.JSONDecodeError) as e:
    raise SubmitError(f"{spec_path} is not a JSON pipeline spec ({e}); "
                      "write one with `cxr compile`") from e
  if isinstance(spec, dict) and "pipelineSpec" not in spec and (
      "pipelineInfo" in spec and "root" in spec):
    spec = {"pipelineSpec": spec, "runtimeConfig": {}}
  pipeline = spec.get("pipelineSpec") if isinstance(spec, dict) else None
  name = (pipeline.get("pipelineInfo") or {}).get("name") if isinstance(
      pipeline, dict) else None
  if not name or "root" not in pipeline:
    raise SubmitError(
        f"{spec_path} is not a compiled pipeline: expected a PipelineJob "
        "JSON with 'pipelineSpec' (as `cxr compile` writes) or a "
        "PipelineSpec with 'pipelineInfo' and 'root'")
  spec.setdefault("runtimeConfig", {})
  return spec


def pipeline_name(spec: Mapping[str, Any]) -> str:
  return spec["pipelineSpec"]["pipelineInfo"]["name"]


def _credentials_or_connection_error(error: BaseException, where: str,
                                     hint: str) -> Optional[SubmitError]:
  """SubmitError for a missing credential or an unreachable endpoint
  (hint: what to check then), or None for other errors."""
  # pylint: disable=g-import-not-at-top
  from google.auth import exceptions as auth_errors
  import requests
  import urllib3
  if isinstance(error, auth_errors.DefaultCredentialsError):
    return SubmitError(f"no Google Cloud credentials for {where} "
                       f"({_one_line(error)}); {_LOGIN_HINT}")
  if isinstance(error, auth_errors.RefreshError):
    return SubmitError(f"Google Cloud credentials were refused by {where} "
                       f"({_one_line(error)}); {_LOGIN_HINT}")
  if isinstance(error, (auth_errors.TransportError, urllib3.exceptions.
                        HTTPError, requests.exceptions.ConnectionError,
                        ConnectionError)):
    return SubmitError(f"could not reach {where} ({_one_line(error)}); "
                       f"{hint}")
  return None


def submit_vertex(spec_path: str, project: str, region: str,
                  service_account: Optional[str] = None,
                  labels: Optional[Mapping[str, str]] = None,
                  wait: bool = False, pipeline_root: Optional[str] = None,
                  job_class=None):
  """Creates a Vertex AI PipelineJob from the spec and submits it; returns
  the job. wait: run it to the end (a failed run raises SubmitError, exit
  code 1). Caching is the spec's own (enable_caching=None)."""
  spec = load_spec(spec_path)
  # The spec's labels (TFX version, runner) are kept; the caller's win.
  all_labels = {**spec.get("labels", {}), **(labels or {})}
  if len(all_labels) > MAX_LABELS:
    raise SubmitError(f"{len(all_labels)} labels with the spec's own; Vertex "
                      f"AI takes at most {MAX_LABELS}")
  where = f"Vertex AI (project {project}, region {region})"
  if job_class is None:
    # pylint: disable=g-import-not-at-top
    from google.cloud import aiplatform
    aiplatform.init(project=project, location=region)
    job_class = aiplatform.PipelineJob
  # pylint: disable-next=g-import-not-at-top
  from google.api_core import exceptions as api_errors
  try:
    job = job_class(display_name=pipeline_name(spec), template_path=spec_path,
                    pipeline_root=pipeline_root, enable_caching=None,
                    labels=all_labels or None, project=project,
                    location=region)
    if not wait:
      job.submit(service_account=service_account)
      return job
    try:
      job.run(service_account=service_account, sync=True)
    except RuntimeError as e:
      # run() raises RuntimeError when the job ends in a failed state.
      raise SubmitError(f"the pipeline job failed on {where}: "
                        f"{_one_line(e)}", exit_code=1) from e
    return job
  except api_errors.GoogleAPICallError as e:
    raise SubmitError(f"{where} refused the pipeline job: "
                      f"{_one_line(e)}") from e
  except SubmitError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    known = _credentials_or_connection_error(
        e, where, "check the network and --region")
    if known is None:
      raise
    raise known from e


# TFX writes the runtime config's values typed (pipeline spec 2.0).
_TYPED_VALUES = {"stringValue": str, "intValue": int, "doubleValue": float}


def runtime_arguments(runtime: Dict[str, Any]) -> Dict[str, Any]:
  """The job's runtime parameter values (e.g. data_root) as plain values,
  which KFP's client takes as the run's arguments."""
  values = dict(runtime.get("parameterValues") or {})
  for name, typed in (runtime.get("parameters") or {}).items():
    kind, value = next(iter(typed.items()))
    values.setdefault(name, _TYPED_VALUES[kind](value))
  return values


def submit_kubeflow(spec_path: str, host: str, wait: bool = False,
                    service_account: Optional[str] = None,
                    pipeline_root: Optional[str] = None,
                    client_class=None):
  """Creates a Kubeflow Pipelines run from the spec; returns the run (with
  wait, the finished run: a run that did not succeed raises SubmitError,
  exit code 1).

  KFP 2.5's client takes only a PipelineSpec in a .yaml (or archive) file,
  so the spec's `pipelineSpec` is written to one (JSON is YAML), and its
  pipeline root, which TFX keeps in runtimeConfig, is passed along.
  """
  spec = load_spec(spec_path)
  name = pipeline_name(spec)
  runtime = spec["runtimeConfig"]
  root = pipeline_root or runtime.get("gcsOutputDirectory")
  where = f"Kubeflow Pipelines at {host}"
  # pylint: disable=g-import-not-at-top
  if client_class is None:
    import kfp
    client_class = kfp.Client
  import kfp_server_api
  # pylint: enable=g-import-not-at-top
  try:
    client = client_class(host=host)
    with tempfile.TemporaryDirectory() as folder:
      package = os.path.join(folder, f"{name}.yaml")
      with open(package, "w", encoding="utf-8") as f:
        json.dump(spec["pipelineSpec"], f)
      result = client.create_run_from_pipeline_package(
          package, arguments=runtime_arguments(runtime),
          run_name=f"{name} {datetime.datetime.now():%Y-%m-%d %H-%M-%S}",
          pipeline_root=root, enable_caching=None,
          service_account=service_account)
    if not wait:
      return result
    run = client.wait_for_run_completion(result.run_id,
                                         timeout=datetime.timedelta.max)
  except kfp_server_api.ApiException as e:
    raise SubmitError(f"{where} answered {e.status} {e.reason}; check "
                      "--host and access to it") from e
  except TimeoutError as e:
    # The client's health check gives up with TimeoutError.
    raise SubmitError(f"{where} did not answer ({_one_line(e)}); check "
                      "--host") from e
  except Exception as e:  # pylint: disable=broad-except
    known = _credentials_or_connection_error(
        e, where, "check --host and that the endpoint is up")
    if known is None:
      raise
    raise known from e
  state = str(getattr(run, "state", "") or "unknown")
  if state.upper() != "SUCCEEDED":
    raise SubmitError(f"run {result.run_id} of {name} ended {state} on "
                      f"{where}", exit_code=1)
  return run
