"""Profile one contender's workload with py-spy (all threads, CPU only): where the client's
CPU per request goes.

``python -m benchmarks.profile ours W1 [--quick] [--reps 2]`` starts a fresh local Swift, runs
the contender's worker under ``py-spy record`` for the workload (W1 64 KiB write, W2 its read,
W3 keys listing), and prints the top functions by own and inclusive samples; the raw collapsed
stacks go to ``benchmarks/results/profile-<contender>-<workload>.txt`` (speedscope or flamegraph
tools read them).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

from benchmarks import config, plan
from benchmarks.run import RESULTS, Runner
from benchmarks.workers import REPO


def requests_for(workload: str, sizes: config.Sizes, reps: int, name: str) -> list[dict]:
    case = asdict(sizes.arrays[0])
    reqs: list[dict] = [{"op": "setup"}]
    for rep in range(reps):
        path = f"profile/{name}/r{rep}"
        if workload in ("W1", "W2"):
            reqs.append(
                {
                    "op": "w1_write",
                    "params": {"case": case, "container": plan.C_ARRAYS, "path": path},
                }
            )
        if workload == "W2":
            reqs.append(
                {
                    "op": "w2_read",
                    "params": {"case": case, "container": plan.C_ARRAYS, "path": path},
                }
            )
        if workload == "W3":
            reqs.append(
                {
                    "op": "w3_keys",
                    "params": {
                        "container": plan.C_LIST,
                        "prefix": "flat/",
                        "expect": sizes.listing_objects,
                    },
                }
            )
    return reqs


def summarize(collapsed: Path, top: int = 40) -> str:
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        if "setup (benchmarks/" in stack or "_find_and_load" in stack:
            continue  # the worker's start and warm-up, not the measured operations
        frames = stack.split(";")[1:]  # first frame: the thread
        total += n
        if frames:
            own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    out = [f"{total} samples"]
    out.append("-- own samples --")
    out += [f"{100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    out.append("-- inclusive samples --")
    out += [f"{100 * n / total:5.1f}%  {f}" for f, n in incl.most_common(top)]
    return "\n".join(out)


def main() -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.profile")
    p.add_argument("contender")
    p.add_argument("workload", choices=["W1", "W2", "W3"])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--native", action="store_true", help="include native (C) frames")
    args = p.parse_args()
    from swiftzarr_batch.testing.swift_server import LocalSwift

    sizes = config.QUICK if args.quick else config.FULL
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"profile-{args.contender}-{args.workload}.txt"
    with tempfile.TemporaryDirectory() as work, LocalSwift(s3api=True) as server:
        runner = Runner(server, sizes, Path(work))
        if args.workload == "W3":
            runner.seed_list()
        reqs = Path(work, "requests.jsonl")
        reqs.write_text(
            "".join(
                json.dumps(r) + "\n"
                for r in requests_for(args.workload, sizes, args.reps, args.contender)
            )
        )
        env = {
            **os.environ,
            "BENCH_AUTH_URL": server.auth_url,
            "BENCH_USER": server.user,
            "BENCH_KEY": server.key,
            "BENCH_PROXY_URL": server.proxy_url,
            "BENCH_CONCURRENCY": str(sizes.concurrency),
            "BENCH_DASK_WORKERS": str(sizes.dask_workers),
        }
        spy = Path(sys.executable).with_name("py-spy")
        argv = [
            str(spy),
            "record",
            "--format",
            "raw",
            "--threads",
            "--gil",
            "--rate",
            "100",
            "-o",
            str(out),
            *(["--native"] if args.native else []),
            "--",
            sys.executable,
            "-m",
            "benchmarks.worker",
            args.contender,
        ]
        with open(reqs) as stdin:
            done = subprocess.run(
                argv, stdin=stdin, cwd=REPO, env=env, capture_output=True, text=True
            )
        print(done.stdout[-3000:])
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return done.returncode
    print(summarize(out))
    print(f"collapsed stacks: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
