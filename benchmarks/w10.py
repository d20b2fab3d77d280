"""W10, a rate-limited cluster: ``python -m benchmarks.run --only W10 [--quick]``.

A local Swift with Swift's own ratelimit filter (``LocalSwift(ratelimit_writes=50)``: 50 object
writes/s per container, 498 for a request that would sleep over 0.5 s) takes >= 1 000 chunk
writes (2 KiB each: the limit, not bandwidth, is what is measured) from

  (a) ours: ``write_array`` on a dask ``LocalCluster`` of 4 worker processes (2 threads each),
      16 chunks per task, with the adaptive limit of ``swift.concurrency``;
  (b) ``swift upload`` (python-swiftclient, which retries 498 with its own backoff): 4 processes
      in parallel, each uploading a quarter of the files with its default 10 object threads.

Each gets its own container, primed with one object and 2.5 s of wait (Swift leaves a container
it believes empty unlimited). Reported: achieved writes/s over the allowed rate, and the share
of PUT requests refused, both counted from the proxy's access log (the server's view, not the
client's). s3fs/obstore over s3api are not run here (not installed in the project venv).
Results: a table on stdout and ``benchmarks/results/w10-{quick,full}.json``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
log = logging.getLogger("benchmarks.w10")
RATE = float(os.environ.get("W10_RATE", "50"))  # W10_RATE=10: where a loaded machine can reach it
CHUNK = (16, 32)  # int32: 2 KiB


def _prime(server: Any, container: str) -> None:
    import swiftclient

    conn = swiftclient.Connection(server.auth_url, server.user, server.key)
    conn.put_container(container)
    conn.put_object(container, "first", b"1")
    time.sleep(2.5)  # container info (object count) is re-read every 2 s


def _put_lines(server: Any, container: str) -> tuple[int, int]:
    """(PUT requests, of which 498) to objects of ``container`` in the proxy's access log."""
    lines = [
        ln
        for ln in server.access_log_lines()
        if f" PUT /v1/AUTH_test/{container}/" in ln and "/first " not in ln
    ]
    return len(lines), sum(" 498 " in ln for ln in lines)


def _ours(server: Any, chunks: int) -> dict[str, Any]:
    import dask.array as da
    import numpy as np
    from distributed import Client, LocalCluster

    from swiftzarr_batch import SwiftStore, write_array

    rows = chunks // 32
    data = np.arange(rows * CHUNK[0] * 32 * CHUNK[1], dtype="<i4").reshape(
        rows * CHUNK[0], 32 * CHUNK[1]
    )
    _prime(server, "w10-ours")
    with (
        LocalCluster(
            n_workers=4,
            threads_per_worker=2,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster),
    ):
        store = SwiftStore("w10-ours", authurl=server.auth_url, user=server.user, key=server.key)
        darr = da.from_array(data, chunks=(4 * CHUNK[0], 4 * CHUNK[1]))
        started = time.monotonic()
        result = write_array(darr, store, "a", chunks=CHUNK)
        seconds = time.monotonic() - started
    return {"seconds": seconds, "chunks": result.chunks, "counters": result.counters}


def _swift_upload(server: Any, chunks: int) -> dict[str, Any]:
    _prime(server, "w10-swift")
    with tempfile.TemporaryDirectory() as tmp:
        parts = []
        for p in range(4):
            part = Path(tmp) / f"p{p}"
            part.mkdir()
            for i in range(p, chunks, 4):
                (part / f"c{i}").write_bytes(os.urandom(2048))
            parts.append(part)
        env = {**os.environ, **server.env}
        swift = str(REPO / ".venv" / "bin" / "swift")
        started = time.monotonic()
        procs = [
            subprocess.Popen(
                [swift, "upload", "w10-swift", part.name],
                cwd=tmp,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for part in parts
        ]
        errors = [p.communicate()[1].decode(errors="replace")[-300:] for p in procs]
        seconds = time.monotonic() - started
        failed = [e for p, e in zip(procs, errors, strict=True) if p.returncode != 0]
    return {"seconds": seconds, "chunks": chunks, "failed_processes": len(failed)}


def run(quick: bool, reps: int = 1) -> dict[str, Any]:
    from swiftzarr_batch.testing import LocalSwift

    chunks = 1024
    rows: list[dict[str, Any]] = []
    with LocalSwift(ratelimit_writes=RATE) as server:
        for name, func, container in (
            ("ours (write_array, 4 dask workers)", _ours, "w10-ours"),
            ("swift upload (4 processes)", _swift_upload, "w10-swift"),
        ):
            log.info("W10: %s", name)
            got = func(server, chunks)
            puts, refused = _put_lines(server, container)
            rate = got["chunks"] / got["seconds"]
            rows.append(
                {
                    "contender": name,
                    **got,
                    "writes_per_second": round(rate, 1),
                    "of_allowed": round(rate / RATE, 3),
                    "put_requests": puts,
                    "refused_498": refused,
                    "refused_share": round(refused / puts, 4) if puts else None,
                }
            )
    print(f"W10: {chunks} chunk writes against ratelimit {RATE:g}/s per container")
    head = ("contender", "s", "w/s", "/allowed", "PUTs", "498", "refused")
    print(f"{head[0]:40} " + " ".join(f"{h:>8}" for h in head[1:]))
    for r in rows:
        print(
            f"{r['contender']:40} {r['seconds']:8.1f} {r['writes_per_second']:8.1f} "
            f"{r['of_allowed']:8.2f} {r['put_requests']:8d} {r['refused_498']:8d} "
            f"{(r['refused_share'] or 0) * 100:7.1f}%"
        )
    out = {"workload": "W10", "rate": RATE, "chunks": chunks, "rows": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"w10-{'quick' if quick else 'full'}-{RATE:g}.json"
    path.write_text(json.dumps(out, indent=2))
    log.info("W10 results in %s", path)
    return out
