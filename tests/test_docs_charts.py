"""The performance page's charts are the committed results files, drawn by benchmarks/charts.py.

The script is deterministic (no dates, fixed SVG ids, text as text), so re-rendering the committed
results must give the committed SVGs byte for byte: a chart edited by hand, or results changed
without ``make docs``/``make bench`` redrawing them, fails here. The data each chart plotted is
also checked against the results files themselves, not against the script's own reading.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="the docs extra (matplotlib) is not installed")

from benchmarks import charts

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
IMAGES = ROOT / "docs" / "images"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("charts")
    return out, charts.render(out)


def test_committed_charts_are_the_results_redrawn(rendered) -> None:
    out, _ = rendered
    names = sorted(p.name for p in out.glob("*.svg"))
    assert names == ["w1-w6-ratios.svg", "w7-memory.svg", "w8.svg"]
    for name in names:
        assert (IMAGES / name).read_bytes() == (out / name).read_bytes(), (
            f"docs/images/{name} differs from what benchmarks/charts.py draws from the results "
            "files: run `make docs` and commit the charts"
        )


def test_ratio_chart_plots_the_runs_own_targets(rendered) -> None:
    _, plotted = rendered
    full = json.loads((RESULTS / "full.json").read_text())
    targets = {t["name"]: t["value"] for t in full["targets"]}
    bars = {(r.workload, r.peer): r for r in plotted["ratios"]}
    # the README's headline ratios, read from the file, each drawn once
    for name, workload, peer in [
        ("W1 4096 x 64KiB ours vs obstore", "W1 4096 x 64KiB", "obstore"),
        ("W2 4096 x 64KiB ours vs s3fs", "W2 4096 x 64KiB", "s3fs"),
        ("W3 keys: ours vs obstore", "W3 keys", "obstore"),
    ]:
        assert bars[(workload, peer)].value == pytest.approx(targets[name])
    cpu = bars[("W6 cpu/PUT (4096 x 64KiB)", "obstore")]
    assert cpu.inverted and cpu.value == pytest.approx(
        1 / targets["W6 cpu/PUT (4096 x 64KiB) ours vs obstore"]
    )
    # only this project's default contender, never ours-helpers/ours-xarray/ours-nomd5 rows
    ours_rows = [n for n in targets if " ours vs " in n and not n.startswith(" ")]
    assert len(plotted["ratios"]) == len([n for n in ours_rows if "memory" not in n])


def test_w7_and_w8_charts_plot_the_files(rendered) -> None:
    _, plotted = rendered
    files = sorted(RESULTS.glob("w7-*-full.json"))
    growth = {
        (row["contender"], row["objects"]): row["growth_mb"]
        for f in files
        for row in json.loads(f.read_text())["results"]
        if row.get("median_s") is not None
    }
    drawn = {(name, n): g for name, pts in plotted["w7"].items() for n, g, _ in pts}
    assert drawn == growth and ("walk", 5_000_000) in drawn
    w8 = json.loads((RESULTS / "w8-full.json").read_text())
    assert [r["objects"] for r in plotted["w8"]] == [r["objects"] for r in w8["rows"] if r["ok"]]
    assert plotted["w8"][0]["copy"] == w8["summary"]["copy_wall"]["a"]
