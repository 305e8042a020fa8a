"""The benchmarks run (at a tiny size, so they don't rot) and `cxr bench`
reads and records their ratios. Their figures are not tested: speed is
measured in benchmarks, never asserted in tests."""

from concurrent import futures
import subprocess
import sys

import pytest

import bench
from cxr import cli
from cxr.commands import bench as bench_command

_CXR_BENCH_SMOKE = ("import sys\nfrom cxr import cli\n"
                    "sys.exit(cli.main(['bench', sys.argv[1], '--smoke']))")


@pytest.fixture(scope="module")
def smoke_runs():
  """{name: finished `cxr bench NAME --smoke`}, two at a time: a smoke run
  is mostly a child process importing and starting up, and two of them
  overlap on two cores."""
  def run(name):
    return subprocess.run([sys.executable, "-c", _CXR_BENCH_SMOKE, name],
                          capture_output=True, text=True, timeout=600,
                          check=False)
  with futures.ThreadPoolExecutor(2) as pool:
    return dict(zip(bench.BENCHMARKS, pool.map(run, bench.BENCHMARKS)))


@pytest.mark.parametrize("name", list(bench.BENCHMARKS))
def test_every_benchmark_runs_and_ends_with_its_ratio(name, smoke_runs):
  run = smoke_runs[name]
  assert run.returncode == 0, run.stderr[-3000:]
  lines = run.stdout.splitlines()
  assert bench_command.ratio_of(lines) is not None, lines[-5:]
  assert any(l.startswith("target ") for l in lines), lines[-5:]
  assert any(l.startswith("cores: ") for l in lines), lines[:5]


def test_arguments_after_the_double_dash_reach_the_benchmark(monkeypatch):
  ran = []
  monkeypatch.setattr(bench_command, "run_one",
                      lambda name, args: (ran.append(args) or 1, []))
  for argv in (["bench", "scale", "--", "--rounds", "2"],
               ["bench", "scale", "--record", "F", "--", "--rounds", "2"],
               ["bench", "scale", "--record", "--", "--rounds", "2"]):
    assert cli.main(argv) == 1
  assert ran == [["--rounds", "2"]] * 3
  with pytest.raises(SystemExit):
    cli.main(["bench", "scale", "--rounds", "2"])


def test_ratio_is_read_from_the_last_line_only():
  assert bench_command.ratio_of(["ratio: 2", "x: 1", "ratio: 1.5", ""]) == 1.5
  assert bench_command.ratio_of(["ratio: 2", "done"]) is None
  assert bench_command.ratio_of([]) is None


def test_record_replaces_one_benchmarks_part(tmp_path):
  path = tmp_path / "BENCHMARKS.md"
  path.write_text("# Benchmarks\n\nintro\n\n## Older study\n\nkept\n")
  bench_command.record(str(path), "input", "### `input`\n\nfirst")
  bench_command.record(str(path), "latency", "### `latency`\n\nother")
  bench_command.record(str(path), "input", "### `input`\n\nsecond")
  text = path.read_text()
  assert text.count(bench_command.SECTION) == 1
  assert "first" not in text and text.count("second") == 1
  assert text.index("second") < text.index("other") < text.index(
      "## Older study")
  assert text.endswith("## Older study\n\nkept\n")


def test_smoke_runs_are_never_recorded(tmp_path, capsys):
  path = tmp_path / "BENCHMARKS.md"
  path.write_text("# Benchmarks\n")
  assert cli.main(["bench", "gradcam", "--smoke", "--record",
                   str(path)]) == 2
  assert "never recorded" in capsys.readouterr().err
  assert path.read_text() == "# Benchmarks\n"
