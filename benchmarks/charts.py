"""The performance page's charts, drawn from the committed results files (never by hand).

    python -m benchmarks.charts [--out docs/images]

Reads ``benchmarks/results/full.json`` (W1-W6: this project's speed against each peer and the
raw clients, as the run's own targets computed it), every ``benchmarks/results/w7-*-full.json``
(W7: memory growth and time against the object count) and ``benchmarks/results/w8-full.json``
(W8: objects and times of a plain against a converting copy), and writes one SVG per chart.
``make bench`` runs it after a run and ``make docs`` before every build; the output is
byte-for-byte deterministic for the same files (no dates, a fixed SVG id salt, text kept as
text), so ``tests/test_docs_charts.py`` re-renders them and compares with the committed ones.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
OUT = ROOT / "docs" / "images"
log = logging.getLogger("benchmarks.charts")

STYLE = {
    "svg.hashsalt": "swiftzarr_batch",  # ids in the SVG from this salt, not from random
    "svg.fonttype": "none",  # text stays text: smaller, searchable, independent of font files
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
}
PEER_COLOURS = {
    "raw": "#7f7f7f",
    "raw-lean": "#7f7f7f",
    "zarr-swiftstore": "#1f77b4",
    "s3fs": "#ff7f0e",
    "obstore": "#2ca02c",
    "swiftclient": "#9467bd",
    "swift-cli": "#8c564b",
}
# a target's name: '<what> ours vs <peer>' (this project's default contender only)
OURS_VS = re.compile(r"^(?P<what>.+?):? ours vs (?P<peer>.+)$")
RAW_NAMES = {"raw": "raw client (aiohttp)", "raw-lean": "raw client (http1)"}


@dataclass(frozen=True)
class Ratio:
    """One bar: this project against one peer on one workload (higher is better)."""

    workload: str
    peer: str
    value: float
    inverted: bool  # True: a CPU ratio (lower is better) drawn as its inverse


def ratios(full: dict[str, Any]) -> list[Ratio]:
    """The W1-W6 ratios of a full run, from its own targets, this project's default contender."""
    rows: list[Ratio] = []
    for target in full["targets"]:
        name = target["name"]
        match = OURS_VS.match(name)
        if match is None or target.get("value") is None or name.startswith(" "):
            continue
        what, peer = match["what"].strip(), match["peer"].strip()
        if "memory" in what:
            continue
        cpu = what.startswith("W6")
        value = float(target["value"])
        rows.append(Ratio(what, RAW_NAMES.get(peer, peer), 1 / value if cpu else value, cpu))
    return rows


def _peer_colour(peer: str) -> str:
    for key, colour in PEER_COLOURS.items():
        if peer.startswith(key) or peer.startswith(RAW_NAMES.get(key, "\0")):
            return colour
    return "#bcbd22"


def chart_ratios(full: dict[str, Any], out: Path) -> list[Ratio]:
    rows = ratios(full)
    workloads = list(dict.fromkeys(r.workload for r in rows))
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(rows) + 1.6))
    y = 0.0
    ticks, labels = [], []
    for workload in workloads:
        for r in (r for r in rows if r.workload == workload):
            ax.barh(y, r.value, color=_peer_colour(r.peer), height=0.8)
            ax.text(r.value + 0.03, y, f"{r.value:.2f}x", va="center", fontsize=7)
            ticks.append(y)
            labels.append(
                f"{workload}  vs {r.peer}" + ("  (its client CPU / ours)" if r.inverted else "")
            )
            y += 1
        y += 0.6
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(ticks, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("this project's speed against the peer (x; > 1: faster; W6: less client CPU)")
    meta = full["meta"]
    ax.set_title(
        f"W1-W6, full run of {meta.get('date', '?')[:10]}, code {meta['git']['commit'][:7]}, "
        f"medians of {meta['sizes']['reps']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(out, metadata={"Date": None})
    plt.close(fig)
    return rows


def w7_points(files: list[dict[str, Any]]) -> dict[str, list[tuple[int, float, float]]]:
    """contender -> [(objects, growth MB, time x swiftclient)], sorted by objects."""
    points: dict[str, list[tuple[int, float, float]]] = {}
    for data in files:
        for row in data["results"]:
            if row.get("median_s") is None:
                continue
            points.setdefault(row["contender"], []).append(
                (int(row["objects"]), float(row["growth_mb"]), float(row["time_vs_swiftclient"]))
            )
    return {k: sorted(v) for k, v in points.items()}


def chart_w7(files: list[dict[str, Any]], out: Path) -> dict[str, list[tuple[int, float, float]]]:
    points = w7_points(files)
    fig, (mem, speed) = plt.subplots(1, 2, figsize=(8, 3.4))
    for name, pts in points.items():
        xs = [p[0] / 1e6 for p in pts]
        mem.plot(xs, [p[1] for p in pts], marker="o", label=name)
        speed.plot(xs, [p[2] for p in pts], marker="o", label=name)
    mem.set_yscale("log")
    mem.axhline(100, color="red", linestyle=":", linewidth=0.8)
    mem.text(1.0, 110, "target: <= 100 MB", color="red", fontsize=7)
    mem.set_xlabel("objects listed (millions)")
    mem.set_ylabel("memory growth (MB, log scale)")
    mem.set_title("W7 memory against object count", fontsize=9)
    speed.set_xlabel("objects listed (millions)")
    speed.set_ylabel("time against swiftclient (x; lower is better)")
    speed.set_yscale("log")
    speed.set_title("W7 time (simulated Swift)", fontsize=9)
    mem.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, metadata={"Date": None})
    plt.close(fig)
    return points


def w8_rows(w8: dict[str, Any]) -> list[dict[str, Any]]:
    """Per contender: data objects and seconds (copy, full read, 100 random chunks)."""
    rows = []
    for row in w8["rows"]:
        if not row.get("ok"):
            continue
        rows.append(
            {
                "contender": row["contender"],
                "objects": row["objects"],
                "copy": row["wall"],
                "full_read": row.get("full_read", {}).get("wall"),
                "random_reads": row.get("random_reads", {}).get("wall"),
            }
        )
    return rows


def chart_w8(w8: dict[str, Any], out: Path) -> list[dict[str, Any]]:
    rows = w8_rows(w8)
    names = [r["contender"] for r in rows]
    fig, (objects, times) = plt.subplots(1, 2, figsize=(8, 3.4))
    objects.bar(range(len(rows)), [r["objects"] for r in rows], color="#1f77b4")
    for i, r in enumerate(rows):
        objects.text(i, r["objects"] * 1.1, str(r["objects"]), ha="center", fontsize=7)
    objects.set_yscale("log")
    objects.set_xticks(range(len(rows)), [n.split(" (")[0] for n in names], fontsize=7)
    objects.set_ylabel("objects written (log scale)")
    objects.set_title("W8 objects", fontsize=9)
    width = 0.27
    for k, (key, label) in enumerate(
        (("copy", "copy"), ("full_read", "full read"), ("random_reads", "100 random chunks"))
    ):
        xs = [i + (k - 1) * width for i in range(len(rows))]
        values = [r[key] if r[key] is not None else 0.0 for r in rows]
        times.bar(xs, values, width=width, label=label)
    times.set_xticks(range(len(rows)), [n.split(" (")[0] for n in names], fontsize=7)
    times.set_ylabel("seconds (median)")
    times.set_title("W8 times (lower is better)", fontsize=9)
    times.legend(fontsize=7)
    fig.text(0.01, 0.01, "; ".join(names), fontsize=6)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(out, metadata={"Date": None})
    plt.close(fig)
    return rows


def w7_files(results: Path = RESULTS) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(results.glob("w7-*-full.json"))]


def render(out: Path = OUT, results: Path = RESULTS) -> dict[str, Any]:
    """Write every chart into ``out``; returns the data each one plotted (for the tests)."""
    out.mkdir(parents=True, exist_ok=True)
    with plt.rc_context(STYLE):
        plotted = {
            "ratios": chart_ratios(
                json.loads((results / "full.json").read_text()), out / "w1-w6-ratios.svg"
            ),
            "w7": chart_w7(w7_files(results), out / "w7-memory.svg"),
            "w8": chart_w8(json.loads((results / "w8-full.json").read_text()), out / "w8.svg"),
        }
    log.info("charts written to %s", out)
    return plotted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help="directory for the SVG files")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    render(args.out)


if __name__ == "__main__":
    main()
