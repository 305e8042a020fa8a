"""`cxr bench NAME|all`: run the project's benchmarks (bench/__init__.py).

Each benchmark runs in its own Python process (`python -m bench.NAME`), so
one benchmark's threads, caches and memory never weigh on the next. Its
output is echoed as it comes; the last line is `ratio: X`. With --record,
the benchmark's part of BENCHMARKS.md (between `<!-- bench:NAME -->` and
`<!-- /bench:NAME -->`, under "Benchmarks of record") is rewritten with
the output, the target and whether it was met.
"""

import datetime
import os
import re
import subprocess
import sys
from typing import List, Optional, Tuple

SECTION = "## Benchmarks of record"
_RATIO = re.compile(r"^ratio: ([-+0-9.eE]+|nan|inf)\s*$")


def register(subparsers) -> None:
  import bench  # pylint: disable=g-import-not-at-top  (names only, no TF)
  parser = subparsers.add_parser(
      "bench", help="run a benchmark (or all) side by side; last line "
      "`ratio: X`", description="Benchmarks: " + "; ".join(
          f"{name}: {b.contenders} (target {b.target})"
          for name, b in bench.BENCHMARKS.items()))
  parser.add_argument("name", choices=list(bench.BENCHMARKS) + ["all"])
  parser.add_argument("--smoke", action="store_true",
                      help="tiny sizes: checks the benchmark runs, its "
                      "figures mean nothing (never recorded)")
  parser.add_argument("--record", nargs="?", metavar="FILE",
                      const=os.path.join(_repo(), "BENCHMARKS.md"),
                      help="rewrite the benchmark's part of FILE (default: "
                      "the repository's BENCHMARKS.md)")
  parser.add_argument("args", nargs="*", help="passed on to the benchmark "
                      "(after --)")
  parser.set_defaults(func=main, passed_on="args")


def _repo() -> str:
  return os.path.dirname(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))))


def run_one(name: str, args: List[str]) -> Tuple[int, List[str]]:
  """Runs bench.NAME in a child process, echoing its output."""
  env = dict(os.environ)
  env["PYTHONPATH"] = os.pathsep.join(
      [_repo()] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
  env.setdefault("TF_USE_LEGACY_KERAS", "1")
  env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  child = subprocess.Popen([sys.executable, "-m", f"bench.{name}", *args],
                           stdout=subprocess.PIPE, text=True, env=env)
  lines = []
  for line in child.stdout:
    sys.stdout.write(line)
    sys.stdout.flush()
    lines.append(line.rstrip("\n"))
  return child.wait(), lines


def ratio_of(lines: List[str]) -> Optional[float]:
  """The ratio a benchmark's output ends with, or None."""
  last = next((l for l in reversed(lines) if l.strip()), "")
  match = _RATIO.match(last)
  return float(match.group(1)) if match else None


def record(path: str, name: str, text: str) -> None:
  """Replaces (or adds) the benchmark's part of the Markdown file."""
  start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
  block = f"{start}\n{text.rstrip()}\n{end}"
  with open(path, encoding="utf-8") as f:
    content = f.read()
  if start in content and end in content:
    before, rest = content.split(start, 1)
    content = before + block + rest.split(end, 1)[1]
  else:
    if SECTION not in content:
      heading = content.find("\n## ")
      at = heading + 1 if heading >= 0 else len(content)
      content = (content[:at] + SECTION + "\n\n`make bench` runs them all "
                 "and rewrites this part; `cxr bench NAME --record` one.\n\n"
                 + content[at:])
    # After the section's last block, or right below its heading.
    at = content.index(SECTION)
    section_end = content.find("\n## ", at + len(SECTION))
    section_end = len(content) if section_end < 0 else section_end + 1
    content = (content[:section_end].rstrip("\n") + "\n\n" + block + "\n\n"
               + content[section_end:])
  with open(path, "w", encoding="utf-8") as f:
    f.write(content)


def main(args) -> int:
  import bench  # pylint: disable=g-import-not-at-top
  names = list(bench.BENCHMARKS) if args.name == "all" else [args.name]
  if args.smoke and args.record:
    print("error: a --smoke run is never recorded", file=sys.stderr)
    return 2
  failed = []
  for name in names:
    benchmark = bench.BENCHMARKS[name]
    code, lines = run_one(name, (["--smoke"] if args.smoke else [])
                          + args.args)
    ratio = ratio_of(lines)
    if code or ratio is None:
      print(f"error: benchmark {name} "
            + (f"exited {code}" if code else "printed no `ratio: X` last"),
            file=sys.stderr)
      failed.append(name)
      continue
    verdict = "met" if benchmark.met(ratio) else "missed"
    print(f"target {benchmark.target}: {verdict}")
    if args.record:
      today = datetime.date.today().isoformat()
      record(args.record, name, "\n".join(
          [f"### `{name}`, {today}", "",
           f"{benchmark.contenders}. Target {benchmark.target}: **{verdict}** "
           f"(ratio {ratio:.4g}).", ""] + lines))
    print(f"ratio: {ratio:.4g}", flush=True)
  return 1 if failed else 0
