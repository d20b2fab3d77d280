"""W12, Swift far away: ``python -m benchmarks.run --only W12 [--quick] [--out FILE]``.

Every other workload runs on loopback with no latency; users' jobs often reach Swift across a
campus or a WAN. W12 runs W1 and W2 (64 KiB and 8 MiB chunks, the run's sizes) with 2 ms and
20 ms added to every round trip by a user-space relay in front of the local Swift
(``testing.faultproxy.DelayProxy``: this kernel has no netem). Every contender goes through the
same relay (auth, data, and the S3 peers' endpoint): the same distance for all.

What it shows: how much concurrency and connection reuse are worth once a round trip costs
something. Next to the usual rows there are ``raw-lean`` rows at the concurrency ``ours`` has
in these workloads (dask's 4 threads times the chunks zarr reads at once per block: 64 for
the 64 KiB array read by blocks of 4 x 4 chunks, 4 for the 8 MiB array of one chunk per block)
and, for reads, a ``raw-lean`` row that opens a new connection for every request. The target:
ours >= 0.9x the raw client at the same concurrency, and ahead of every peer.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import config, plan, report
from benchmarks.run import RESULTS, git_commit, run_case
from benchmarks.workers import Pool

log = logging.getLogger("benchmarks.w12")
DELAYS = (0.002, 0.020)
CONTENDERS = ("raw", "raw-lean", "ours", "obstore", "s3fs", "zarr-swiftstore")
PEERS = ("obstore", "s3fs", "zarr-swiftstore")


def ours_concurrency(ac: config.ArrayCase, sizes: config.Sizes) -> int:
    """Requests ``ours`` has in flight: dask threads x chunks per block (zarr reads a block's
    chunks at once, up to its async.concurrency)."""
    return sizes.dask_workers * min(ac.block[0] * ac.block[1], sizes.concurrency)


def cases(sizes: config.Sizes, delay: float, contenders: set[str] | None) -> list[plan.Case]:
    """W1/W2 of the plan (same entries, same paths scheme), retitled for this delay, plus the
    matched-concurrency and no-reuse raw-lean rows."""
    tag = f"+{delay * 1000:g} ms"
    out = []
    for case in plan.build(sizes, plan.Hooks(), {"W1", "W2"}, contenders):
        case.workload = "W12"
        case.title = f"W12 {tag}: {case.title}"
        for e in case.entries:  # each delay writes its own objects
            e.params = _under(e.params, f"w12-{delay * 1000:g}ms")
            if e.requires:
                e.requires = case.title.replace("W2 dask read", "W1 dask write")
        ac = next(a for a in sizes.arrays if case.title.endswith(f"x {a.name}"))
        lean = next((e for e in case.entries if e.label == "raw-lean"), None)
        if lean is not None:
            c = ours_concurrency(ac, sizes)
            extra = [(f"raw-lean c{c}", {"concurrency": c})]
            if case.title.split(": ", 1)[1].startswith("W2"):
                extra.append(("raw-lean no-reuse", {"reuse": False}))
            for label, more in extra:
                case.entries.append(
                    plan.Entry(
                        label,
                        "raw-lean",
                        lean.op,
                        _with(lean.params, more),
                        requires=None,  # raw-lean's own W1 row wrote what it reads
                    )
                )
        out.append(case)
    return out


def _under(params: Any, top: str) -> Any:
    def p(rep: int) -> dict[str, Any]:
        d = dict(params(rep))
        d["path"] = f"{top}/{d['path']}"
        return d

    return p


def _with(params: Any, more: dict[str, Any]) -> Any:
    return lambda rep: {**params(rep), **more}


def targets(rows: list[dict[str, Any]], sizes: config.Sizes) -> list[report.Target]:
    out = []
    for delay in DELAYS:
        tag = f"+{delay * 1000:g} ms"
        for ac in sizes.arrays:
            c = ours_concurrency(ac, sizes)
            for verb in ("W1 dask write", "W2 dask read"):
                case = f"W12 {tag}: {verb} {ac.chunks} x {ac.name}"
                ours = report._row(rows, case, "ours")
                ref = report._row(rows, case, f"raw-lean c{c}")
                if ours is None or ref is None:
                    continue
                v = ref["median_s"] / ours["median_s"]
                out.append(
                    report.Target(
                        f"{case[4:]}: ours vs raw-lean c{c}",
                        ">= 0.9x",
                        v,
                        v >= 0.9,
                        f"{ours['median_s']:.3f} s vs {ref['median_s']:.3f} s",
                    )
                )
                for peer in PEERS:
                    other = report._row(rows, case, peer)
                    if other is None:
                        continue
                    v = other["median_s"] / ours["median_s"]
                    out.append(
                        report.Target(
                            f"  ours vs {peer}", "> 1.0x", v, v > 1.0, f"{other['median_s']:.3f} s"
                        )
                    )
    return out


def run(args: argparse.Namespace) -> Path:
    from swiftclient.client import Connection

    from swiftzarr_batch.testing.delayproxy import DelayProxy
    from swiftzarr_batch.testing.swift_server import LocalSwift

    sizes = config.QUICK if args.quick else config.FULL
    if args.reps:
        sizes = config.Sizes(**{**sizes.__dict__, "reps": args.reps})
    contenders = set(args.contenders.split(",")) if args.contenders else set(CONTENDERS)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    log_dir = RESULTS / f"logs-w12-{stamp}"
    log_dir.mkdir()
    out = Path(args.out) if args.out else RESULTS / f"w12-{sizes.mode}-{stamp}.json"
    started = time.time()
    rows: list[dict[str, Any]] = []
    printed: list[tuple[str, str | None, str, list[dict[str, Any]]]] = []
    loads = [os.getloadavg()]
    for delay in DELAYS:
        # a fresh Swift per delay: the new workers' warm-up writes its tiny array anew
        with (
            LocalSwift(None, s3api=True) as server,
            DelayProxy(server.proxy_url, delay=delay) as relay,
        ):
            conn = Connection(authurl=server.auth_url, user=server.user, key=server.key)
            conn.put_container(plan.C_ARRAYS)
            log.info("W12: %s", relay)
            env = {
                "BENCH_AUTH_URL": relay.url + server.auth_url[len(server.proxy_url) :],
                "BENCH_USER": server.user,
                "BENCH_KEY": server.key,
                "BENCH_PROXY_URL": relay.url,
                "BENCH_CONCURRENCY": str(sizes.concurrency),
                "BENCH_DASK_WORKERS": str(sizes.dask_workers),
                "PYTHONUNBUFFERED": "1",
            }
            pool = Pool(env, log_dir)  # new workers: their pools know only this relay
            try:
                ok_labels: dict[tuple[str, str], bool] = {}
                for case in cases(sizes, delay, contenders):
                    case_rows = run_case(case, sizes, pool, ok_labels)
                    ref = report.add_ratios(case_rows, "raw-lean")
                    rows += case_rows
                    printed.append((case.title, ref, case.note, case_rows))
                    print(report.table([printed[-1]]), flush=True)
                    loads.append(os.getloadavg())
            finally:
                pool.close()
    goals = targets(rows, sizes)
    print("\n" + "=" * 100 + f"\nW12 ({sizes.mode} run)" + report.table(printed))
    print("\nTARGETS (ratios within this run)")
    for t in goals:
        print("  " + t.line())
    result = {
        "meta": {
            "workload": "W12",
            "mode": sizes.mode,
            "delays_s": DELAYS,
            "args": vars(args),
            "sizes": sizes.as_dict(),
            "started": started,
            "seconds": time.time() - started,
            "git": git_commit(),
            "python": sys.version.split()[0],
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "load_average": loads,
            "logs": str(log_dir),
        },
        "results": rows,
        "targets": [t.__dict__ for t in goals],
    }
    out.write_text(json.dumps(result, indent=1, default=str))
    print(f"\nwrote {out} ({time.time() - started:.0f} s)")
    return out
