"""Medians, ratios within the run, the table and the targets of a results file."""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any


def summarize(
    workload: str, case: str, label: str, samples: list[dict[str, Any]]
) -> dict[str, Any]:
    """One row: median/min/max of the successful repetitions, and what they cost the client."""
    ok = [s for s in samples if s.get("ok")]
    row: dict[str, Any] = {
        "workload": workload,
        "case": case,
        "contender": label,
        "reps": len(ok),
        "samples": samples,
    }
    failed = [s for s in samples if not s.get("ok")]
    if failed:
        row["error"] = failed[-1].get("unavailable") or failed[-1].get("error")
        row["unavailable"] = bool(failed[-1].get("unavailable"))
    checks = sorted({s.get("check", "ok") for s in ok} - {"ok"})
    if checks:
        row["check"] = "; ".join(checks)
    if not ok:
        return row
    walls = [s["wall"] for s in ok]
    med = statistics.median(walls)
    objects = ok[0].get("objects", 0)
    nbytes = ok[0].get("bytes", 0)
    cpu = statistics.median(s["cpu"] for s in ok)
    row.update(
        {
            "median_s": med,
            "min_s": min(walls),
            "max_s": max(walls),
            "objects": objects,
            "objects_per_s": objects / med if med else None,
            "mb_per_s": nbytes / med / 1e6 if nbytes and med else None,
            "cpu_s": cpu,
            "cpu_ms_per_request": 1000 * cpu / objects if objects else None,
            "peak_rss_mb": max(s["peak_rss_mb"] for s in ok),
            "rss_delta_mb": statistics.median(s.get("rss_delta_mb", 0.0) for s in ok),
        }
    )
    return row


def add_ratios(rows: list[dict[str, Any]], reference: str) -> str | None:
    """Speed of each row relative to the reference row (ref median / row median), same run.

    ``reference`` "best X" means the fastest row whose label starts with X. Returns the label
    actually used.
    """
    timed = [r for r in rows if "median_s" in r]
    if reference.startswith("best "):
        pool = [r for r in timed if r["contender"].startswith(reference[5:])]
        ref = min(pool, key=lambda r: r["median_s"]) if pool else None
    else:
        ref = next((r for r in timed if r["contender"] == reference), None)
    if ref is None:
        return None
    for r in timed:
        r["speed_vs_ref"] = ref["median_s"] / r["median_s"]
        r["reference"] = ref["contender"]
    return ref["contender"]


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(cases: list[tuple[str, str | None, str, list[dict[str, Any]]]]) -> str:
    lines = []
    head = (
        f"{'contender':<18}{'median s':>9}{'min':>8}{'max':>8}{'obj/s':>9}{'MB/s':>8}"
        f"{'cpu ms/req':>11}{'peak MB':>9}{'dMB':>7}{'x ref':>7}  notes"
    )
    for title, ref, note, rows in cases:
        lines.append("")
        lines.append(
            f"== {title}   (x ref = speed vs {ref or 'n/a'})" + (f"  [{note}]" if note else "")
        )
        lines.append(head)
        for r in rows:
            notes = r.get("check", "")
            if r.get("error"):
                notes = (notes + " " if notes else "") + r["error"]
            if "median_s" not in r:
                lines.append(f"{r['contender']:<18}{'':>76}  {notes[:160]}")
                continue
            lines.append(
                f"{r['contender']:<18}{r['median_s']:>9.3f}{r['min_s']:>8.3f}{r['max_s']:>8.3f}"
                f"{_fmt(r.get('objects_per_s'), '.0f'):>9}{_fmt(r.get('mb_per_s'), '.1f'):>8}"
                f"{_fmt(r.get('cpu_ms_per_request'), '.3f'):>11}{r['peak_rss_mb']:>9.0f}"
                f"{r['rss_delta_mb']:>7.0f}{_fmt(r.get('speed_vs_ref'), '.2f'):>7}  {notes[:160]}"
            )
    return "\n".join(lines)


@dataclass
class Target:
    name: str
    wanted: str
    value: float | None
    holds: bool | None  # None: could not be evaluated (a side missing)
    detail: str

    def line(self) -> str:
        verdict = {True: "HOLDS", False: "MISSED", None: "n/a"}[self.holds]
        v = "-" if self.value is None else f"{self.value:.2f}"
        return f"{verdict:<7}{self.name:<46}{self.wanted:<12}{v:>7}  {self.detail}"


def _row(rows: list[dict[str, Any]], case_prefix: str, label: str) -> dict[str, Any] | None:
    for r in rows:
        if (
            r["case"].startswith(case_prefix)
            and r["contender"] == label
            and "median_s" in r
            and not r.get("check")
        ):
            return r
    return None


def _speed(rows: list[dict[str, Any]], case: str, a: str, b: str) -> tuple[float | None, str]:
    ra, rb = _row(rows, case, a), _row(rows, case, b)
    if ra is None or rb is None:
        missing = a if ra is None else b
        return None, f"{missing}: no valid result"
    return rb["median_s"] / ra[
        "median_s"
    ], f"{a} {ra['median_s']:.3f}s vs {b} {rb['median_s']:.3f}s"


def targets(rows: list[dict[str, Any]], arrays: list[str]) -> list[Target]:
    out: list[Target] = []

    def ratio(name: str, case: str, a: str, b: str, at_least: float) -> None:
        v, d = _speed(rows, case, a, b)
        out.append(Target(name, f">= {at_least}x", v, None if v is None else v >= at_least, d))

    peers = ("zarr-swiftstore", "s3fs", "obstore", "swiftspec")
    for w, verb in (("W1", "write"), ("W2", "read")):
        for a in arrays:
            case = f"{w} dask {verb} {a}"
            raws = [r for r in (_row(rows, case, "raw"), _row(rows, case, "raw-lean")) if r]
            best_raw = min(raws, key=lambda r: r["median_s"])["contender"] if raws else "raw"
            variants = (
                ("ours", "ours-helpers", "ours-xarray", "ours-nomd5")
                if w == "W1"
                else ("ours", "ours-xarray", "ours-nomd5")
            )
            for ours in variants:
                if ours != "ours" and _row(rows, case, ours) is None:
                    continue
                ratio(f"{w} {a} {ours} vs {best_raw}", case, ours, best_raw, 0.95)
                for p in peers:
                    if _row(rows, case, p) is not None:
                        ratio(f"{w} {a} {ours} vs {p}", case, ours, p, 1.0)
    ratio("W3 keys: ours vs swiftclient full listing", "W3 list keys", "ours", "swiftclient", 1.0)
    ratio("W3 keys: ours vs obstore", "W3 list keys", "ours", "obstore", 2.0)
    ratio("W3 list_dir: ours vs obstore", "W3 list_dir", "ours", "obstore", 2.0)
    small = next(
        (
            r
            for r in rows
            if r["case"].startswith("W3 list keys")
            and "memory" in r["case"]
            and r["contender"] == "ours"
            and "median_s" in r
        ),
        None,
    )
    big = next(
        (
            r
            for r in rows
            if r["case"].startswith("W3 list keys")
            and "memory" not in r["case"]
            and r["contender"] == "ours"
            and "median_s" in r
        ),
        None,
    )
    if big and small:
        # Streaming holds ~2 pages (<= 20 000 entries, ~10 MB decoded) whatever the count;
        # a full listing in memory grows with it (swiftclient's row shows by how much).
        grow = big["rss_delta_mb"] - small["rss_delta_mb"]
        full = next(
            (
                r
                for r in rows
                if r["case"] == big["case"] and r["contender"] == "swiftclient" and "median_s" in r
            ),
            None,
        )
        contrast = f"; swiftclient full listing grew {full['rss_delta_mb']:.1f} MB" if full else ""
        out.append(
            Target(
                "W3 ours memory flat in object count",
                "<= 16 MB",
                grow,
                grow <= 16.0,
                f"peak RSS growth {big['rss_delta_mb']:.1f} MB for {big['objects']} "
                f"vs {small['rss_delta_mb']:.1f} MB for {small['objects']} keys" + contrast,
            )
        )
    ratio("W4 Swift->Swift: ours vs download+upload", "W4 copy Swift->Swift", "ours", "raw", 5.0)
    l2s = [
        r
        for r in rows
        if r["case"].startswith("W4 copy local")
        and "median_s" in r
        and r["contender"].startswith("swift-cli")
        and not r.get("check")
    ]
    if l2s:
        best = min(l2s, key=lambda r: r["median_s"])["contender"]
        ratio(f"W4 local->Swift: ours vs {best} (best)", "W4 copy local", "ours", best, 1.5)
    else:
        out.append(
            Target(
                "W4 local->Swift: ours vs best swift upload",
                ">= 1.5x",
                None,
                None,
                "no swift-cli result",
            )
        )
    ratio("W5 delete: ours vs swift delete", "W5 delete", "ours", "swift-cli", 1.0)
    ratio("W5 delete: ours vs one DELETE per object", "W5 delete", "ours", "raw", 10.0)
    if arrays:
        a = arrays[0]
        for w, verb, what in (("W1", "write", "PUT"), ("W2", "read", "GET")):
            case = f"{w} dask {verb} {a}"
            ours = _row(rows, case, "ours")
            for peer, factor in (("obstore", 1.0), ("zarr-swiftstore", 0.5)):
                other = _row(rows, case, peer)
                if ours is None or other is None:
                    out.append(
                        Target(
                            f"W6 cpu/{what} ours vs {peer}",
                            f"<= {factor}x",
                            None,
                            None,
                            "missing result",
                        )
                    )
                    continue
                v = ours["cpu_ms_per_request"] / other["cpu_ms_per_request"]
                out.append(
                    Target(
                        f"W6 cpu/{what} ({a}) ours vs {peer}",
                        f"<= {factor}x",
                        v,
                        v <= factor,
                        f"{ours['cpu_ms_per_request']:.3f} vs "
                        f"{other['cpu_ms_per_request']:.3f} ms per chunk",
                    )
                )
                floor = _row(rows, case, "zarr-memory")
                if floor is not None:  # the same ratio without the dask + zarr cost they share
                    f = floor["cpu_ms_per_request"]
                    mine, theirs = ours["cpu_ms_per_request"] - f, other["cpu_ms_per_request"] - f
                    if theirs > 0:
                        out.append(
                            Target(
                                f"  (store only, minus zarr-memory) vs {peer}",
                                f"<= {factor}x",
                                mine / theirs,
                                mine / theirs <= factor,
                                f"{mine:.3f} vs {theirs:.3f} ms per chunk above the {f:.3f} ms "
                                "dask+zarr floor",
                            )
                        )
    if any(r["case"].startswith("W9") for r in rows):  # files through fsspec (plan_w9)
        for case, what in (("W9 sequential read", "read"), ("W9 write", "write")):
            ratio(f"W9 sequential {what}: ours vs raw", case, "ours", "raw", 0.9)
            ratio(f"W9 sequential {what}: ours vs s3fs", case, "ours", "s3fs", 1.0)
        ratio("W9 random 1 MiB reads: ours vs s3fs", "W9 100 random", "ours", "s3fs", 1.0)
    return out
