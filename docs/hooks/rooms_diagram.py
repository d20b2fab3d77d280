"""mkdocs hook: the Design page's diagram of the rooms, drawn at build time from the contract.

The rooms and their order come from import-linter's layers contract in ``pyproject.toml`` (the
rule ``make check`` enforces), so the picture cannot disagree with the code. Drawn with
matplotlib into ``images/rooms.svg`` of the built site (nothing committed, no JavaScript, no
network: a mermaid diagram would need Material to fetch mermaid.js from a CDN).
"""

from __future__ import annotations

import io
import tomllib
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[2]
IMAGE = "images/rooms.svg"


def layers() -> list[str]:
    """The rooms, top first, from the layers contract of pyproject.toml."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    for contract in config["tool"]["importlinter"]["contracts"]:
        if contract["type"] == "layers":
            return [name.rsplit(".", 1)[-1] for name in contract["layers"]]
    raise LookupError("pyproject.toml has no import-linter layers contract")


def render() -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rooms = layers()
    style = {"svg.hashsalt": "swiftzarr_batch", "svg.fonttype": "none", "font.size": 10}
    with plt.rc_context(style):
        # x in characters of the monospace labels: a box is its label plus padding, then a gap
        gap, pad = 5.0, 1.0
        centres, edges, x = [], [], 0.0
        for room in rooms:
            width = len(room) + 2 * pad
            centres.append(x + width / 2)
            edges.append((x, x + width))
            x += width + gap
        total = x - gap
        # wide enough for every room at 10 pt monospace (~6 pt a character), at least 9 inches
        fig, ax = plt.subplots(figsize=(max(9.0, (total + 2) * 6.5 / 72), 2.4))
        ax.set_xlim(-1, total + 1)
        ax.set_ylim(-1.5, 1.0)
        ax.axis("off")
        for i, room in enumerate(rooms):
            ax.text(
                centres[i],
                0.3,
                room,
                ha="center",
                va="center",
                family="monospace",
                bbox={"boxstyle": "round,pad=0.4", "facecolor": "#e8eaf6", "edgecolor": "#3f51b5"},
            )
            if i:  # the room on the left imports the room on the right
                ax.annotate(
                    "",
                    xy=(edges[i][0] - 0.2, 0.3),
                    xytext=(edges[i - 1][1] + 0.2, 0.3),
                    arrowprops={"arrowstyle": "->", "color": "#3f51b5"},
                )
        ax.text(
            total / 2,
            -0.55,
            "an arrow: imports; each room imports only the rooms to its right (import-linter, "
            "make check); errors: every room",
            ha="center",
            fontsize=8,
        )
        ax.text(
            total / 2,
            -1.05,
            "swift and auth never import zarr, dask or xarray; the library never imports testing "
            "(LocalSwift, FaultProxy: tests, benchmarks, serve)",
            ha="center",
            fontsize=8,
        )
        out = io.BytesIO()
        fig.savefig(out, format="svg", metadata={"Date": None})
        plt.close(fig)
    return out.getvalue()


def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, IMAGE, content=render()))
    return files
