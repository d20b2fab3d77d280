"""One W7 operation in a fresh process: ``python -m benchmarks.scale_ops OP AUTH_URL EXPECT``.

Why a fresh process per operation: peak RSS (VmHWM) only ever grows, so an operation measured
after another would inherit its peak. Here the process imports what the operation needs, notes
its RSS (the size after imports), resets VmHWM, runs the operation once, and prints one JSON line:
wall and CPU seconds, the size after imports, the peak, and the growth (peak - size after imports).

The ``swift`` CLI contender runs as a child of this process before anything heavy is imported
(a child's ``ru_maxrss`` starts from its parent's RSS at fork); its growth is its peak minus the
peak of the same CLI listing an empty prefix (its own size after imports).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.measure import peak_rss_mb, reset_peak_rss, rss_mb, run_child
from benchmarks.sim_swift import CONTAINER, KEY, USER

PREFIX = "ds"


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime + kids.ru_utime + kids.ru_stime


def swift_cli(auth_url: str, expect: int) -> dict[str, Any]:
    swift = str(Path(sys.executable).with_name("swift"))
    env = {**os.environ, "ST_AUTH": auth_url, "ST_USER": USER, "ST_KEY": KEY}

    def peak(*args: str) -> tuple[float, int, float, float]:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        _, lines = run_child([swift, "list", CONTAINER, *args], env=env)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
        return after.ru_maxrss / 1024, lines, wall, cpu

    base, _, _, _ = peak("--prefix", "nothing/")
    top, lines, wall, cpu = peak()
    return {
        "wall": wall,
        "cpu": cpu,
        "rss_after_imports_mb": base,
        "peak_rss_mb": top,
        "growth_mb": top - base,
        "objects": lines,
        "check": "ok" if lines == expect else f"listed {lines}, expected {expect}",
    }


def measured(op: str, auth_url: str, expect: int) -> dict[str, Any]:
    import dask.array  # noqa: F401  (a zarr user's process has these loaded)
    import zarr
    from swiftclient.client import Connection
    from zarr.core.sync import sync

    from swiftzarr_batch import SwiftStore, copy_store, verify_store

    store = SwiftStore(CONTAINER, PREFIX, authurl=auth_url, user=USER, key=KEY)
    conn = Connection(authurl=auth_url, user=USER, key=KEY)
    conn.head_account()  # both clients authenticated before anything is measured
    sync(store.exists("zarr.json"))
    tmp = tempfile.mkdtemp(prefix="w7-")

    def run() -> tuple[int, str]:
        if op == "swiftclient":
            _, listing = conn.get_container(CONTAINER, prefix=PREFIX + "/", full_listing=True)
            return len(listing), "ok"
        if op == "list_prefix":

            async def count() -> int:
                return sum([1 async for _ in store.list_prefix("")])

            return sync(count()), "ok"
        if op == "walk":
            return sum(1 for _ in store.walk()), "ok"
        if op == "verify":
            report = verify_store(store, check_content=False)
            present = sum(a.present for a in report.arrays)
            ok = report.ok and present == expect - 2
            return report.keys, "ok" if ok else f"verify: {report.format(3)}"
        if op == "copy_plan":
            summary = copy_store(store, zarr.storage.LocalStore(tmp), dry_run=True)
            ok = summary.keys_copied == expect
            return summary.keys_total, "ok" if ok else f"plan: {summary.line()}"
        if op == "delete_plan":
            before = int(conn.head_account()["x-sim-deleted"])
            sync(store.delete_dir("a"))
            deleted = int(conn.head_account()["x-sim-deleted"]) - before
            return deleted, "ok" if deleted == expect - 1 else f"deleted {deleted}"
        raise SystemExit(f"unknown operation {op!r}")

    after_imports = rss_mb()
    reset_peak_rss()
    started, cpu0 = time.perf_counter(), _cpu()
    objects, check = run()
    wall, cpu = time.perf_counter() - started, _cpu() - cpu0
    peak = peak_rss_mb()
    return {
        "wall": wall,
        "cpu": cpu,
        "rss_after_imports_mb": after_imports,
        "peak_rss_mb": peak,
        "growth_mb": peak - after_imports,
        "objects": objects,
        "check": check,
    }


def main(argv: list[str]) -> int:
    op, auth_url, expect = argv[0], argv[1], int(argv[2])
    try:
        if op == "swift-cli":
            result = swift_cli(auth_url, expect)
        else:
            result = measured(op, auth_url, expect)
        result["ok"] = True
    except Exception as exc:  # reported as the row's error, the run goes on
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:600]}
    print(json.dumps({"op": op, **result}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
