"""Ingestion over a zoo of odd-but-valid and bad files, symbolic links
included (bench/ingest_zoo.py): every entry is ingested or quarantined
with its reason, seen = ingested + quarantined = the entries made, and
nothing aborts the run."""

import collections

from bench import ingest_zoo


def test_every_entry_of_the_zoo_is_accounted_for(tmp_path):
  root = tmp_path / "zoo"
  root.mkdir()
  entries = ingest_zoo.build_zoo(str(root))
  assert len(entries) >= 25
  assert len({e.path for e in entries}) == len(entries)
  result = ingest_zoo.run_zoo(str(root), str(tmp_path / "out"))
  assert result["error"] is None, result["error"]
  wrong = [(entry.kind, entry.expected, outcome)
           for entry, outcome, ok in ingest_zoo.judge(entries, result)
           if not ok]
  assert wrong == []
  counts = result["counts"]
  expected = collections.Counter(
      e.expected == ingest_zoo.INGESTED for e in entries)
  assert counts["ingested"] == expected[True]
  assert counts["quarantined"] == expected[False]
  assert counts["seen"] == counts["ingested"] + counts["quarantined"] == len(
      entries)
