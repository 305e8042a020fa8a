"""`cxr submit SPEC --engine vertex|kubeflow ...`: run a compiled pipeline
spec on Vertex AI Pipelines or Kubeflow Pipelines.

A failure prints one line on stderr and exits 2 when nothing was
submitted (bad spec or flags, no credentials, endpoint unreachable), 1 when
a job ran and failed (--wait).
"""

import argparse
import logging
import sys
import warnings

from kubeflow import submit as submit_lib

ENGINES = ("vertex", "kubeflow")


def _labels(text: str):
  """argparse type: KEY=VALUE pairs, checked (submit_lib.parse_labels)."""
  try:
    return submit_lib.parse_labels(text)
  except ValueError as e:
    raise argparse.ArgumentTypeError(str(e)) from e


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      "submit", help="run a compiled pipeline spec on Vertex AI or Kubeflow "
      "Pipelines")
  parser.add_argument("spec", metavar="SPEC",
                      help="pipeline spec JSON written by `cxr compile`")
  parser.add_argument("--engine", required=True, choices=ENGINES,
                      help="vertex: Vertex AI Pipelines; kubeflow: a Kubeflow "
                      "Pipelines endpoint (--host)")
  parser.add_argument("--project", help="Google Cloud project (vertex)")
  parser.add_argument("--region", help="Vertex AI region, e.g. us-central1 "
                      "(vertex)")
  parser.add_argument("--service-account",
                      help="identity the job runs as: a Google service "
                      "account e-mail (vertex) or a Kubernetes service "
                      "account (kubeflow)")
  parser.add_argument("--labels", type=_labels,
                      help="job labels KEY=VALUE[,KEY=VALUE...]: lowercase "
                      "letters, digits, '_', '-' (vertex)")
  parser.add_argument("--host", help="Kubeflow Pipelines API endpoint, e.g. "
                      "http://localhost:8080 (kubeflow)")
  parser.add_argument("--pipeline-root",
                      help="artifact root, e.g. gs://bucket/root (default: "
                      "the one compiled into the spec)")
  parser.add_argument("--wait", action="store_true",
                      help="wait for the run to finish; exit 1 if it fails")
  parser.set_defaults(func=main)


def _flag_errors(args) -> list:
  """What is missing or does not apply for the chosen engine."""
  if args.engine == "vertex":
    needed = {"--project": args.project, "--region": args.region}
    foreign = {"--host": args.host}
  else:
    needed = {"--host": args.host}
    foreign = {"--project": args.project, "--region": args.region,
               "--labels": args.labels}
  errors = [f"--engine {args.engine} needs {flag}"
            for flag, value in needed.items() if not value]
  errors += [f"{flag} does not apply to --engine {args.engine}"
             for flag, value in foreign.items() if value]
  return errors


def _quiet_libraries() -> None:
  """Keeps stderr for the one line a failure prints.

  The Vertex SDK reports progress (job name, console link) at INFO: to
  stdout. Other libraries' log records (google.auth's metadata-server
  warning, kfp's retried health checks) are dropped: a failure is reported
  once, by the error it ends in. Their FutureWarnings (Python and library
  versions) are not this command's business either.
  """
  vertex = logging.getLogger("google.cloud.aiplatform")
  if not vertex.handlers:
    vertex.addHandler(logging.StreamHandler(sys.stdout))
  vertex.propagate = False
  root = logging.getLogger()
  if not root.handlers:
    root.addHandler(logging.NullHandler())
  warnings.simplefilter("ignore", FutureWarning)
  warnings.simplefilter("ignore", DeprecationWarning)


def main(args) -> int:
  errors = _flag_errors(args)
  if errors:
    print(f"cxr submit: error: {'; '.join(errors)}", file=sys.stderr)
    return 2
  _quiet_libraries()
  try:
    if args.engine == "vertex":
      job = submit_lib.submit_vertex(
          args.spec, args.project, args.region,
          service_account=args.service_account, labels=args.labels,
          wait=args.wait, pipeline_root=args.pipeline_root)
      state = "finished" if args.wait else "submitted"
      print(f"Vertex AI pipeline job {state}: "
            f"{getattr(job, 'resource_name', job)}")
    else:
      run = submit_lib.submit_kubeflow(
          args.spec, args.host, wait=args.wait,
          service_account=args.service_account,
          pipeline_root=args.pipeline_root)
      state = "finished" if args.wait else "submitted"
      print(f"Kubeflow Pipelines run {state}: {run.run_id}")
  except submit_lib.SubmitError as e:
    print(f"cxr submit: {e}", file=sys.stderr)
    return e.exit_code
  return 0
