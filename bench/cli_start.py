"""How long `cxr` takes to start: --help, predict --help, and a predict call
that fails at once (nothing listens on the port), per checkout, alternated.

  .venv/bin/python bench/cli_start.py [--runs 5] [CHECKOUT ...]

Each command runs as `python -m cxr.cli ...` (`pipeline.cli` before the move) with the checkout first on
the path (default: this one), the checkouts taking turns, so a second
checkout (e.g. an older commit's `git worktree`) is measured side by side.
Prints a Markdown table of median wall seconds for BENCHMARKS.md.
"""

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def commands(image: str, port: int):
  return {
      "cxr --help": ["--help"],
      "cxr predict --help": ["predict", "--help"],
      "cxr predict (no server)": ["predict", image, "--server",
                                  f"127.0.0.1:{port}", "--model", "m",
                                  "--timeout", "1"],
  }


def seconds(checkout: str, args) -> float:
  env = dict(os.environ, PYTHONPATH=checkout)
  start = time.perf_counter()
  # The command line moved from pipeline/cli.py to cxr/cli.py.
  module = ("cxr.cli" if os.path.exists(os.path.join(checkout, "cxr", "cli.py"))
            else "pipeline.cli")
  subprocess.run([sys.executable, "-m", module, *args], cwd=checkout,
                 env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                 check=False)
  return time.perf_counter() - start


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("checkouts", nargs="*", default=[REPO])
  parser.add_argument("--runs", type=int, default=5)
  args = parser.parse_args()
  checkouts = [os.path.abspath(c) for c in args.checkouts]
  with tempfile.NamedTemporaryFile(suffix=".png") as image:
    image.write(b"\x89PNG\r\n\x1a\n")
    image.flush()
    table = commands(image.name, _free_port())
    times = {(c, name): [] for c in checkouts for name in table}
    for _ in range(args.runs):
      for name, cli_args in table.items():
        for checkout in checkouts:
          times[(checkout, name)].append(seconds(checkout, cli_args))
  header = " | ".join(os.path.basename(c) for c in checkouts)
  print(f"| command | {header} |")
  print("|---|" + "---|" * len(checkouts))
  for name in table:
    cells = " | ".join(f"{statistics.median(times[(c, name)]):.2f} s"
                       for c in checkouts)
    print(f"| {name} | {cells} |")
  print(f"(median of {args.runs} runs each, alternated; "
        f"{os.cpu_count()} cores)")


if __name__ == "__main__":
  main()
