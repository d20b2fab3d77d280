"""The numbers the docs show are the ones committed next to them.

The performance table (``docs/performance.md``) must quote a committed results file of a *complete full* run, and every
ratio in it (``0.98x``) must be one that file holds (a target's value or a row's speed against
its reference, rounded as the table rounds). A quick or partial run writes a file of its own and
cannot replace that evidence (``benchmarks.run.results_name``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from benchmarks.run import results_name

REPO = Path(__file__).resolve().parents[1]
RATIO = re.compile(r"(\d+\.\d+)x")


def _performance_section() -> str:
    """The docs' performance page up to its first sub-section (the W1-W6 table and its text)."""
    text = (REPO / "docs" / "performance.md").read_text()
    end = text.find("\n## ")  # the later sections quote their own files
    return text[: end if end > 0 else len(text)]


def _table_and_cited_file() -> tuple[list[str], Path]:
    section = _performance_section()
    before_table = section[: section.index("\n|")]
    cited = re.findall(r"`(benchmarks/results/[\w.-]+\.json)`", before_table)
    assert cited, "the performance table's introduction names no results file"
    rows = [line for line in section.splitlines() if line.startswith("| W")]
    assert rows, "no performance table found"
    return rows, REPO / cited[-1]


def test_the_table_quotes_a_committed_complete_full_run():
    _, path = _table_and_cited_file()
    assert path.name == "full.json", path
    meta = json.loads(path.read_text())["meta"]
    assert meta["mode"] == "full" and meta["complete"] is True
    assert not meta["args"].get("only") and not meta["args"].get("contenders")
    assert meta["git"]["commit"] and meta["date"]


def test_every_ratio_in_the_table_is_in_the_cited_file():
    rows, path = _table_and_cited_file()
    result = json.loads(path.read_text())
    held = {f"{t['value']:.2f}" for t in result["targets"] if t.get("value") is not None}
    held |= {f"{r['speed_vs_ref']:.2f}" for r in result["results"] if r.get("speed_vs_ref")}
    quoted = [(row.split("|")[1].strip(), ratio) for row in rows for ratio in RATIO.findall(row)]
    assert len(quoted) >= 20  # the table quotes ratios; an empty parse must not pass
    missing = [(workload, ratio) for workload, ratio in quoted if ratio not in held]
    assert not missing, f"ratios the README quotes that {path.name} does not hold: {missing}"


def test_only_a_complete_full_run_writes_full_json():
    assert results_name("full", None, None) == "full.json"
    assert results_name("quick", None, None) == "quick.json"
    assert results_name("full", "W2,W1", None) == "full-W1-W2.json"
    assert results_name("full", None, "ours,raw") == "full-all-some.json"
    assert results_name("quick", "W9", None) == "quick-W9.json"
