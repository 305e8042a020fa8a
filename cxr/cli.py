"""The `cxr` command line.

  cxr synth OUT_DIR [--n N --size S --seed K]    synthetic chest X-rays
  cxr run --data DIR --task binary|multiclass|both --output OUT [...]
  cxr models [--task binary|multiclass --image-size S]
  cxr summary --output OUT --task binary|multiclass
  cxr report OUT [--task binary|multiclass|both]
  cxr serve --model-base OUT/serving [--port P --rest-port P ...]
  cxr predict IMAGE... --server HOST:PORT --model NAME [--gradcam OUT_DIR]
  cxr promote OUT/serving MODEL VERSION --label stable|canary
  cxr rollback OUT/serving MODEL [--label stable|canary]
  cxr skew --training OUT --serving-logs DIR
  cxr compile --engine vertex|kubeflow --output JOB.json --image IMAGE ...
  cxr submit JOB.json --engine vertex --project P --region R [--labels k=v,...]
  cxr submit JOB.json --engine kubeflow --host URL [--wait]
  cxr bench NAME|all [--smoke] [--record [FILE]]

Each subcommand is a module of cxr/commands/ (see its __init__).
"""

import argparse
import importlib
import sys
from typing import List, Optional

COMMANDS = ("synth", "run", "models", "summary", "report", "serve",
            "predict", "promote", "rollback", "skew", "compile", "submit", "bench")


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="cxr", description="Chest X-ray pneumonia pipeline on TFX.")
  subparsers = parser.add_subparsers(dest="command", required=True)
  for name in COMMANDS:
    importlib.import_module(f"cxr.commands.{name}").register(subparsers)
  return parser


def main(argv: Optional[List[str]] = None) -> int:
  parser = build_parser()
  args, rest = parser.parse_known_args(argv)
  if rest and rest[0] == "--" and hasattr(args, "passed_on"):
    # argparse gives a positional `nargs="*"` its (empty) share as soon as
    # the positionals before it are read, so `cxr bench NAME --record --
    # ARGS` leaves ARGS over; they are the command's to pass on.
    setattr(args, args.passed_on, getattr(args, args.passed_on) + rest[1:])
  elif rest:
    parser.error(f"unrecognized arguments: {' '.join(rest)}")
  return args.func(args)


if __name__ == "__main__":
  sys.exit(main())
