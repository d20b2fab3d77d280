"""``python -m benchmarks.run [--quick]``: one benchmark run, start to finish.

Starts a fresh local Swift (with s3api, so the S3 peers can reach it), builds the plan,
seeds what the workloads need with extract-archive, runs every case's contenders interleaved
(A B C A B C ..., ``reps`` times, each contender in its own long-lived process), then prints the
table and the targets and writes its results file (``results_name``; a timestamped copy and the
worker logs stay local).

Which file: a complete, unfiltered full run (``make bench``) writes
``benchmarks/results/full.json``, the only file the README's performance table may quote
(``tests/test_benchmark_evidence.py`` checks that every ratio it quotes is in it); a quick run
writes ``quick.json``, and a run of some workloads or contenders only writes
``<mode>-<W...>.json``, so neither can replace the evidence of a full run. Every file records
the commit, whether the tree was dirty, the date and the load average at start and end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import config, plan, report, scale
from benchmarks.seed import seed_objects
from benchmarks.workers import REPO, Pool

RESULTS = REPO / "benchmarks" / "results"
log = logging.getLogger("benchmarks")


class Runner(plan.Hooks):
    def __init__(self, server: Any, sizes: config.Sizes, work_dir: Path) -> None:
        from swiftclient.client import Connection

        self.server, self.sizes, self.work_dir = server, sizes, work_dir
        self.conn = Connection(authurl=server.auth_url, user=server.user, key=server.key)
        self.storage_url, self.token = self.conn.get_auth()
        for c in plan.CONTAINERS:
            self.conn.put_container(c)

    def _seed(self, container: str, names: list[str], body: Any = None) -> None:
        started = time.monotonic()
        kwargs = {"body": body} if body else {}
        seed_objects(
            self.storage_url,
            self.token,
            container,
            names,
            parallel=self.sizes.seed_parallel,
            **kwargs,
        )
        log.info(
            "seeded %d objects into %s in %.1f s", len(names), container, time.monotonic() - started
        )

    def seed_list(self) -> None:
        self._seed(plan.C_LIST, [f"flat/c.{i:06d}" for i in range(self.sizes.listing_objects)])
        # One untimed listing: the container database is then as warm for the first measured
        # contender as for the others.
        self.count(plan.C_LIST, "flat/")

    def seed_delete(self, container: str, prefix: str) -> None:
        self.conn.put_container(container)
        self._seed(container, [f"{prefix}o{i:06d}" for i in range(self.sizes.delete_objects)])

    def seed_copy_source(self) -> tuple[str, str, int]:
        """A real zarr hierarchy (group, array, N chunks of 64 KiB) on disk and in Swift."""
        import numpy as np
        import zarr

        local = self.work_dir / "w4-hierarchy"
        n = self.sizes.copy_chunks
        root = zarr.open_group(zarr.storage.LocalStore(local), mode="w")
        root.attrs["title"] = "benchmark copy source"
        arr = root.create_array(
            "a", shape=(n, 16384), chunks=(1, 16384), dtype="int32", compressors=None
        )
        arr[:] = np.arange(n * 16384, dtype="int32").reshape(n, 16384)
        files = sorted(p for p in local.rglob("*") if p.is_file())
        names = [f"src/{p.relative_to(local).as_posix()}" for p in files]
        self._seed(plan.C_COPY_SRC, names, body=lambda i: files[i].read_bytes())
        return str(local), "src/", len(names)

    def seed_file(self, container: str, name: str, size: int) -> None:
        """One object of ``size`` bytes (W9's file), written once by python-swiftclient."""
        started = time.monotonic()
        self.conn.put_object(container, name, _pattern(size))
        log.info(
            "seeded %s/%s (%d bytes) in %.1f s", container, name, size, time.monotonic() - started
        )

    def count(self, container: str, prefix: str) -> int:
        _, listing = self.conn.get_container(container, prefix=prefix, full_listing=True)
        return len(listing)


def _pattern(size: int) -> bytes:
    """Bytes that are not all alike (so a misplaced range reads differently), made fast."""
    block = bytes(range(256)) * 4096  # 1 MiB
    return (block * (size // len(block) + 1))[:size]


def git_commit() -> dict[str, Any]:
    """The commit the run measured (and whether the work tree had changes on top of it)."""

    def git(*argv: str) -> str:
        out = subprocess.run(["git", *argv], cwd=REPO, capture_output=True, text=True, timeout=30)
        return out.stdout.strip() if out.returncode == 0 else ""

    return {
        "commit": git("rev-parse", "HEAD") or None,
        "branch": git("rev-parse", "--abbrev-ref", "HEAD") or None,
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def results_name(mode: str, only: str | None, contenders: str | None) -> str:
    """The results file of a run: ``full.json`` only for a complete full run (see the module
    docstring); a filtered run is named after its workloads (and ``-some`` when contenders were
    left out), so that it never overwrites a complete run's file."""
    if not only and not contenders:
        return f"{mode}.json"
    parts = sorted(only.split(",")) if only else ["all"]
    return f"{mode}-{'-'.join(parts)}{'-some' if contenders else ''}.json"


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages: client and server share the machine, so a reader of
    the results must know how busy it was."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def run_w7(args: argparse.Namespace) -> None:
    """W7 (scale) against the simulated Swift: its own servers, its own results file."""
    sizes = tuple(int(n) for n in args.w7_objects.split(",")) if args.w7_objects else None
    ops = tuple(args.contenders.split(",")) if args.contenders else None
    stamp = time.strftime("%Y%m%d-%H%M%S")
    mode = "quick" if args.quick else "full"

    def write_w7(rows: list[dict[str, Any]]) -> Path:
        result = {
            "meta": {
                "workload": "W7",
                "mode": mode,
                "simulated_server": True,
                "sizes": sorted({r["objects"] for r in rows}),
                "args": vars(args),
                "git": git_commit(),
                "python": sys.version.split()[0],
                "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                "load_average": os.getloadavg(),
            },
            "results": rows,
        }
        text = json.dumps(result, indent=1, default=str)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"w7-{stamp}-{mode}.json").write_text(text)
        out = RESULTS / "w7-latest.json"
        out.write_text(text)
        return out

    rows = scale.main(args.quick, args.reps, timeout=3600.0, sizes=sizes, ops=ops, on_rows=write_w7)
    print(scale.table(rows), flush=True)
    print(f"\nwrote {write_w7(rows)}")


def run(args: argparse.Namespace) -> int:
    from swiftzarr_batch.testing.swift_server import LocalSwift

    only = set(args.only.split(",")) if args.only else None
    if only is not None and "W7" in only:
        run_w7(args)
        only.discard("W7")
        if not only:
            return 0
    sizes = config.QUICK if args.quick else config.FULL
    if args.reps:
        sizes = config.Sizes(**{**sizes.__dict__, "reps": args.reps})
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_dir = RESULTS / f"logs-{stamp}"
    log_dir.mkdir()
    work_dir = Path(tempfile.mkdtemp(prefix="swiftzarr-bench-"))
    contenders = set(args.contenders.split(",")) if args.contenders else None
    started = time.time()
    rows: list[dict[str, Any]] = []
    printed: list[tuple[str, str | None, str, list[dict[str, Any]]]] = []
    try:
        # A fresh data dir per run: tombstones of earlier runs' deletes never slow this one.
        with LocalSwift(args.data_dir, s3api=True) as server:
            log.info(
                "local Swift at %s (data %s), %s run", server.proxy_url, server.data_dir, sizes.mode
            )
            runner = Runner(server, sizes, work_dir)
            env = {
                "BENCH_AUTH_URL": server.auth_url,
                "BENCH_USER": server.user,
                "BENCH_KEY": server.key,
                "BENCH_PROXY_URL": server.proxy_url,
                "BENCH_CONCURRENCY": str(sizes.concurrency),
                "BENCH_DASK_WORKERS": str(sizes.dask_workers),
                "PYTHONUNBUFFERED": "1",
            }
            if args.profile:
                Path(args.profile).mkdir(parents=True, exist_ok=True)
                env["BENCH_PROFILE"] = str(Path(args.profile).resolve())
            pool = Pool(env, log_dir)
            try:
                cases = plan.build(sizes, runner, only, contenders)
                ok_labels: dict[tuple[str, str], bool] = {}
                for case in cases:
                    case_rows = run_case(case, sizes, pool, ok_labels)
                    ref = report.add_ratios(case_rows, case.reference)
                    rows += case_rows
                    printed.append((case.title, ref, case.note, case_rows))
                    print(report.table([printed[-1]]), flush=True)
                    # Written after every case: an interrupted long run keeps what it measured.
                    write(
                        args, sizes, stamp, started, rows, pool.setup_info, log_dir, complete=False
                    )
            finally:
                pool.close()
            setup_info = pool.setup_info
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    goals = report.targets(rows, [f"{a.chunks} x {a.name}" for a in sizes.arrays])
    print("\n" + "=" * 100 + "\nFULL TABLE (" + sizes.mode + " run)" + report.table(printed))
    print("\nTARGETS (ratios within this run)")
    for t in goals:
        print("  " + t.line())
    out = write(args, sizes, stamp, started, rows, setup_info, log_dir, complete=True)
    print(f"\nwrote {out} ({time.time() - started:.0f} s)")
    return 0


def write(
    args: argparse.Namespace,
    sizes: config.Sizes,
    stamp: str,
    started: float,
    rows: list[dict[str, Any]],
    setup_info: dict[str, Any],
    log_dir: Path,
    *,
    complete: bool,
) -> Path:
    goals = report.targets(rows, [f"{a.chunks} x {a.name}" for a in sizes.arrays])
    result = {
        "meta": {
            "mode": sizes.mode,
            "complete": complete,
            "args": vars(args),
            "sizes": sizes.as_dict(),
            "started": started,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
            "seconds": time.time() - started,
            "load_average": {"start": args.load_at_start, "now": load_average()},
            "git": git_commit(),
            "python": sys.version.split()[0],
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "contenders": setup_info,
            "logs": str(log_dir.relative_to(REPO)),
        },
        "results": rows,
        "targets": [t.__dict__ for t in goals],
    }
    text = json.dumps(result, indent=1, default=str)
    (RESULTS / f"{stamp}-{sizes.mode}.json").write_text(text)
    out = (
        Path(args.out)
        if args.out
        else RESULTS / results_name(sizes.mode, args.only, args.contenders)
    )
    out.write_text(text)
    return out


def run_case(
    case: plan.Case, sizes: config.Sizes, pool: Pool, ok_labels: dict[tuple[str, str], bool]
) -> list[dict[str, Any]]:
    samples: dict[str, list[dict[str, Any]]] = {e.label: [] for e in case.entries}
    log.info("%s: %s x %d reps", case.title, ", ".join(samples), sizes.reps)
    for rep in range(sizes.reps):
        # Interleaved, and rotated each repetition (A B C, B C A, C A B) so that no contender
        # always runs first (right after seeding) or right after the same neighbour.
        k = rep % len(case.entries)
        for e in case.entries[k:] + case.entries[:k]:
            if e.requires and not ok_labels.get((e.requires, e.label)):
                samples[e.label].append({"ok": False, "error": "no data to read: its W1 failed"})
                continue
            worker, info = pool.get(e.worker)
            if worker is None:
                samples[e.label].append(info)
                continue
            if e.prepare:
                e.prepare(rep)
            result = worker.call(e.op, e.params(rep), timeout=sizes.op_timeout)
            if result.get("ok") and e.verify:
                check = e.verify(rep)
                if check != "ok":
                    result["check"] = check
            samples[e.label].append(result)
            log.info(
                "  rep %d %-18s %s",
                rep,
                e.label,
                f"{result['wall']:.3f} s cpu {result['cpu']:.3f} s"
                + (f" [{result['check']}]" if result.get("check", "ok") != "ok" else "")
                if result.get("ok")
                else (result.get("unavailable") or result.get("error")),
            )
    rows = []
    for e in case.entries:
        row = report.summarize(case.workload, case.title, e.label, samples[e.label])
        ok_labels[(case.title, e.label)] = bool(samples[e.label] and samples[e.label][-1].get("ok"))
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes (a few minutes)")
    p.add_argument(
        "--only",
        help="comma-separated workloads, e.g. W1,W2 (W9: files through fsspec); W7 (scale, "
        "simulated Swift), W8, W10 (rate-limited) and W12 (W1/W2 2 and 20 ms away) run only "
        "when named here",
    )
    p.add_argument(
        "--contenders",
        help="comma-separated contender processes to run (W7: its operations, e.g. "
        "swiftclient,verify)",
    )
    p.add_argument("--w7-objects", help="W7's object counts, comma-separated (default 1M,5M)")
    p.add_argument("--reps", type=int, help="repetitions per contender (default 3)")
    p.add_argument("--data-dir", help="Swift data dir (default: a fresh temp dir, removed)")
    p.add_argument("--profile", help="write a pyinstrument profile per operation into DIR")
    p.add_argument(
        "--out",
        help="results file (default benchmarks/results/full.json for a complete full run, "
        "quick.json for a complete quick run, <mode>-<workloads>.json otherwise)",
    )
    args = p.parse_args(argv)
    args.load_at_start = load_average()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    only = set(args.only.split(",")) if args.only else set()
    if "W10" in only:  # a rate-limited cluster: its own server and table (benchmarks/w10.py)
        from benchmarks import w10

        w10.run(args.quick, args.reps or 1)
        only.discard("W10")
        if not only:
            return 0
        args.only = ",".join(sorted(only))
    if "W12" in only:  # Swift 2 and 20 ms away: its own server, relay and table (w12.py)
        from benchmarks import w12

        w12.run(args)
        only.discard("W12")
        if not only:
            return 0
        args.only = ",".join(sorted(only))
    if "W8" in only:  # convert while copying: its own server and table (benchmarks/w8.py)
        from benchmarks import w8

        w8.run(args.quick, args.reps or 1)
        only.discard("W8")
        if not only:
            return 0
        args.only = ",".join(sorted(only))
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
