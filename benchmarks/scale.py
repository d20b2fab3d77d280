"""W7 (scale): a million objects and more, in flat memory? Against a SIMULATED Swift.

For each N (full: 1 M and 5 M chunk objects; quick: 100 k and 1 M) a fresh simulated Swift
(``benchmarks.sim_swift``: listings computed, never stored; see its docstring for what it
models) serves one container. Each operation then runs ``reps`` times, each time in its own
fresh process (``benchmarks.scale_ops``), interleaved: python-swiftclient's
``get_container(full_listing=True)`` (the reference), the ``swift list`` CLI, and ours through
the public API: ``list_prefix``, ``store.walk()``, ``verify_store(check_content=False)``,
``copy_store(..., dry_run=True)`` to an empty LocalStore and ``delete_dir`` (the simulation
accepts the deletes and keeps nothing, so every repetition deletes everything again).

Targets (issue 15): peak RSS growth <= 100 MB at every N; time <= 1.2 x swiftclient's full
listing for list_prefix/walk, <= 3 x for verify and the copy plan (delete has none).
"""

from __future__ import annotations

import json
import logging
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from benchmarks.workers import REPO

log = logging.getLogger("benchmarks")

REFERENCE = "swiftclient"
OPS = ("swiftclient", "swift-cli", "list_prefix", "walk", "verify", "copy_plan", "delete_plan")
TIME_TARGET = {"list_prefix": 1.2, "walk": 1.2, "verify": 3.0, "copy_plan": 3.0}
GROWTH_TARGET_MB = 100.0
FULL_SIZES = (1_000_000, 5_000_000)
QUICK_SIZES = (100_000, 1_000_000)


class SimProcess:
    """The simulated Swift in its own process (so its CPU is never charged to a client)."""

    def __init__(self, chunks: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.sim_swift", "--objects", str(chunks)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "PORT":
            self.close()
            raise RuntimeError(f"the simulated Swift did not start: {line}")
        self.auth_url = f"http://127.0.0.1:{line[1]}/auth/v1.0"

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_op(op: str, auth_url: str, expect: int, timeout: float) -> dict[str, Any]:
    try:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.scale_ops", op, auth_url, str(expect)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout:.0f} s"}
    lines = out.stdout.strip().splitlines()
    if not lines:
        return {"ok": False, "error": f"exit {out.returncode}: {out.stderr[-600:]}"}
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run_w7(
    sizes: tuple[int, ...],
    reps: int,
    timeout: float,
    ops: tuple[str, ...] = OPS,
    on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Every operation at every N; ``on_rows`` gets the rows so far after each N (a long run
    that is interrupted keeps what it measured)."""
    rows: list[dict[str, Any]] = []
    for n in sizes:
        sim = SimProcess(n)
        expect = n + 2  # the chunks, the array's zarr.json and the group's
        samples: dict[str, list[dict[str, Any]]] = {op: [] for op in ops}
        try:
            for rep in range(reps):
                k = rep % len(ops)
                for op in ops[k:] + ops[:k]:
                    result = run_op(op, sim.auth_url, expect, timeout)
                    samples[op].append(result)
                    log.info(
                        "W7 %d rep %d %-12s %s",
                        n,
                        rep,
                        op,
                        f"{result['wall']:.2f} s, +{result['growth_mb']:.0f} MB [{result['check']}]"
                        if result.get("ok")
                        else result.get("error"),
                    )
        finally:
            sim.close()
        rows += summarize(n, samples)
        if on_rows is not None:
            on_rows(rows)
    return rows


def summarize(n: int, samples: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for op, runs in samples.items():
        ok = [s for s in runs if s.get("ok")]
        row: dict[str, Any] = {
            "workload": "W7",
            "case": f"{n} objects",
            "objects": n,
            "contender": op,
            "reps": len(ok),
            "samples": runs,
        }
        if len(ok) < len(runs):
            row["error"] = next(s.get("error") for s in runs if not s.get("ok"))
        if ok:
            checks = sorted({s["check"] for s in ok} - {"ok"})
            row.update(
                median_s=statistics.median(s["wall"] for s in ok),
                cpu_s=statistics.median(s["cpu"] for s in ok),
                peak_rss_mb=max(s["peak_rss_mb"] for s in ok),
                growth_mb=max(s["growth_mb"] for s in ok),
                check="; ".join(checks) or "ok",
            )
        rows.append(row)
    ref = next((r for r in rows if r["contender"] == REFERENCE and "median_s" in r), None)
    for r in rows:
        if ref is not None and "median_s" in r:
            r["time_vs_swiftclient"] = r["median_s"] / ref["median_s"]
        r["targets"] = targets(r)
    return rows


def targets(row: dict[str, Any]) -> dict[str, Any]:
    """Which of issue 15's targets this row meets (ours only; the peers have none)."""
    if row["contender"] in (REFERENCE, "swift-cli") or "median_s" not in row:
        return {}
    out: dict[str, Any] = {"growth": row["growth_mb"] <= GROWTH_TARGET_MB}
    limit = TIME_TARGET.get(row["contender"])
    if limit is not None and "time_vs_swiftclient" in row:
        out["time"] = row["time_vs_swiftclient"] <= limit
        out["time_limit"] = limit
    return out


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "\nW7 scale (SIMULATED Swift; each operation in a fresh process; growth = VmHWM - size "
        "after imports)",
        f"{'objects':>9} {'operation':<13}{'median s':>9}{'x swiftclient':>14}{'cpu s':>8}"
        f"{'peak MB':>9}{'growth MB':>10}  targets",
    ]
    for r in rows:
        if "median_s" not in r:
            lines.append(f"{r['objects']:>9} {r['contender']:<13} ERROR {r.get('error')}")
            continue
        t = r["targets"]
        marks = []
        if "growth" in t:
            marks.append(f"mem {'ok' if t['growth'] else 'MISSED'}")
        if "time" in t:
            marks.append(f"time<={t['time_limit']}x {'ok' if t['time'] else 'MISSED'}")
        if r.get("check", "ok") != "ok":
            marks.append(f"CHECK: {r['check'][:80]}")
        ratio = r.get("time_vs_swiftclient")
        lines.append(
            f"{r['objects']:>9} {r['contender']:<13}{r['median_s']:>9.2f}"
            f"{'-' if ratio is None else f'{ratio:.2f}':>14}{r['cpu_s']:>8.2f}"
            f"{r['peak_rss_mb']:>9.0f}{r['growth_mb']:>10.1f}  {', '.join(marks)}"
        )
    return "\n".join(lines)


def main(
    quick: bool,
    reps: int | None,
    timeout: float,
    *,
    sizes: tuple[int, ...] | None = None,
    ops: tuple[str, ...] | None = None,
    on_rows: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    started = time.monotonic()
    unknown = set(ops or ()) - set(OPS)
    if unknown:
        raise SystemExit(f"W7 has no operation {sorted(unknown)}; it has {', '.join(OPS)}")
    sizes = sizes or (QUICK_SIZES if quick else FULL_SIZES)
    rows = run_w7(sizes, reps or 1, timeout, ops or OPS, on_rows)
    log.info("W7 done in %.0f s", time.monotonic() - started)
    return rows
