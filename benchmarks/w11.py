"""W11, versioned datasets: ``python -m benchmarks.w11 [--quick]``.

Against one local Swift, each operation in a fresh Python process (``measure.Meter``: wall, CPU,
peak RSS of that process alone):

  (a) a committed write of N x 64 KiB chunks through a writable session (lease, writes,
      commit) against the same write to a plain ``SwiftStore`` (target: overhead <= 10 %);
  (b) a full read of that snapshot against a full plain read (target: <= 10 %);
  (c) commit time against the number of changed chunks (1 .. 10 000) over a 100 000-key
      snapshot, with split manifests (10 000 keys a piece) and with one unsplit piece;
  (d) peak memory with a 1 M-key snapshot: building it, a commit changing 1 000 keys of it, a
      reader's 10 000 random lookups and a full key listing (target: <= 100 MB).

(c) and (d) are a **simulation on the manifest side**: the base snapshots' manifests are real
objects on the real Swift, but the 100 000 / 1 M chunk objects they name are not written (a
commit never reads them; only the changed chunks of (c) are real PUTs). Results: a table on
stdout and ``benchmarks/results/w11-{quick,full}.json``. Settle times are the defaults (1 s
after taking the lease, 1 s after the head PUT): a commit costs at least ~2 s of waiting.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from benchmarks.measure import Meter

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
log = logging.getLogger("benchmarks.w11")
CHUNK_INTS = 16384  # int32: 64 KiB


def _creds(p: dict[str, Any]) -> dict[str, str]:
    return {"authurl": p["auth_url"], "user": p["user"], "key": p["key"]}


def _data(n: int) -> Any:
    import numpy as np

    return np.arange(n * CHUNK_INTS, dtype="int32").reshape(n, CHUNK_INTS)


# -- the operations, each in its own process ---------------------------------------------------
def op_write(p: dict[str, Any]) -> dict[str, Any]:
    import zarr

    from swiftzarr_batch import Repository, SwiftStore

    n, data = p["chunks"], _data(p["chunks"])
    kw = {"shape": data.shape, "chunks": (1, CHUNK_INTS), "dtype": "int32", "compressors": None}
    with Meter() as m:
        if p["mode"] == "plain":
            store = SwiftStore(p["container"], p["prefix"], **_creds(p))
            zarr.create_array(store, name="a", **kw)[:] = data
            out: dict[str, Any] = {}
        else:
            repo = Repository.open_or_create(p["container"], p["prefix"], **_creds(p))
            with repo.writable_session() as session:
                zarr.create_array(session.store, name="a", **kw)[:] = data
                t = time.perf_counter()
                session.commit(f"{n} chunks")
                out = {"commit_s": time.perf_counter() - t}
    return {**out, "wall": m.wall, "cpu": m.cpu, "peak_rss_mb": m.peak_rss_mb}


def op_read(p: dict[str, Any]) -> dict[str, Any]:
    import zarr

    from swiftzarr_batch import Repository, SwiftStore

    with Meter() as m:
        if p["mode"] == "plain":
            store: Any = SwiftStore(p["container"], p["prefix"], read_only=True, **_creds(p))
        else:
            store = Repository.open(p["container"], p["prefix"], **_creds(p)).readonly_session()
            store = store.store
        total = int(zarr.open_array(store, path="a", mode="r")[:].sum(dtype="int64"))
    return {"wall": m.wall, "cpu": m.cpu, "peak_rss_mb": m.peak_rss_mb, "sum": total}


def _lex_order(n: int) -> Any:
    """0 .. n-1 in the order their decimal strings sort (no list of n keys in memory)."""
    if n > 0:
        yield 0
    stack = list(range(9, 0, -1))
    while stack:
        x = stack.pop()
        if x < n:
            yield x
            stack.extend(range(x * 10 + 9, x * 10 - 1, -1))


async def _synthetic(n: int) -> AsyncIterator[tuple[str, tuple[str, int] | None]]:
    for i in _lex_order(n):
        yield f"a/c/{i}", ("synthetic", 65536)


def _seed_snapshot(repo: Any, n: int) -> str:
    """A snapshot of ``n`` keys on ``main`` whose chunk objects do not exist (simulation)."""
    from zarr.core.sync import sync

    from swiftzarr_batch.versioned.manifests import ManifestReader, merge_pieces
    from swiftzarr_batch.versioned.records import Snapshot, content_id, snapshot_key

    async def go() -> str:
        pieces, _ = await merge_pieces(
            ManifestReader((), repo.read_newest),
            _synthetic(n),
            (),
            repo.piece_entries,
            repo.save_piece,
        )
        head = await repo.read_head("main")
        body = Snapshot.body(head.snapshot, time.time(), f"{n} synthetic keys", "seed", pieces)
        sid = content_id(body)
        await repo.put_new(snapshot_key(sid), body)
        lease, _ = await repo.take_lease("main", 60.0)
        try:
            await repo.move_head("main", lease, sid, expect=head.snapshot)
        finally:
            await lease.release()
        return sid

    return sync(go())


def op_commit(p: dict[str, Any]) -> dict[str, Any]:
    """Change ``changed`` keys spread over the seeded snapshot; time the commit alone."""
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.sync import sync

    from swiftzarr_batch import Repository

    repo = Repository.open(p["container"], p["prefix"], **_creds(p))
    step = max(1, p["keys"] // p["changed"])
    keys = [f"a/c/{i}" for i in range(0, p["keys"], step)][: p["changed"]]
    buf = default_buffer_prototype().buffer.from_bytes(b"x" * 64)
    with repo.writable_session() as session:

        async def write() -> None:
            import asyncio

            sem = asyncio.Semaphore(32)

            async def one(k: str) -> None:
                async with sem:
                    await session.store.set(k, buf)

            await asyncio.gather(*(one(k) for k in keys))

        sync(write())
        with Meter() as m:
            session.commit(f"{len(keys)} changed")
    stats = session.stats
    assert stats is not None
    return {
        "wall": m.wall,
        "peak_rss_mb": m.peak_rss_mb,
        "pieces_written": stats.pieces_written,
        "pieces_read": stats.pieces_read,
        "pieces_kept": stats.pieces_kept,
    }


def op_seed(p: dict[str, Any]) -> dict[str, Any]:
    from swiftzarr_batch import Repository

    repo = Repository.open_or_create(
        p["container"], p["prefix"], piece_entries=p["piece_entries"], **_creds(p)
    )
    with Meter() as m:
        _seed_snapshot(repo, p["keys"])
    return {"wall": m.wall, "peak_rss_mb": m.peak_rss_mb, "rss_before_mb": m.rss_before_mb}


def op_lookups(p: dict[str, Any]) -> dict[str, Any]:
    from zarr.core.sync import sync

    from swiftzarr_batch import Repository

    store = Repository.open(p["container"], p["prefix"], **_creds(p)).readonly_session().store
    rng = random.Random(1)
    # random keys, looked up in key order (as zarr reads a selection); unsorted random access
    # over more pieces than the reader's LRU (16) would re-read pieces
    keys = sorted(f"a/c/{rng.randrange(p['keys'])}" for _ in range(p["lookups"]))

    async def go() -> tuple[int, int]:
        found = sum([await store.exists(k) for k in keys])
        listed = 0
        async for _ in store.list_prefix("a/"):
            listed += 1
        return found, listed

    with Meter() as m:
        found, listed = sync(go())
    return {
        "wall": m.wall,
        "peak_rss_mb": m.peak_rss_mb,
        "rss_before_mb": m.rss_before_mb,
        "found": found,
        "listed": listed,
    }


OPS = {
    "write": op_write,
    "read": op_read,
    "commit": op_commit,
    "seed": op_seed,
    "lookups": op_lookups,
}


# -- the orchestrator ----------------------------------------------------------------------------
def _child(op: str, params: dict[str, Any], timeout: float = 3600) -> dict[str, Any]:
    argv = [sys.executable, "-m", "benchmarks.w11", "--child", op, json.dumps(params)]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return {"ok": False, "error": (proc.stderr or proc.stdout)[-800:]}
    return {"ok": True, **json.loads(proc.stdout.strip().splitlines()[-1])}


def run(quick: bool, reps: int, skip_io: bool = False) -> dict[str, Any]:
    from swiftzarr_batch.testing.swift_server import LocalSwift

    chunks = 512 if quick else 4096
    base_keys = 20_000 if quick else 100_000
    changed = [1, 10, 100, 1000] if quick else [1, 10, 100, 1000, 10_000]
    big = 200_000 if quick else 1_000_000
    rows: list[dict[str, Any]] = []
    with LocalSwift() as server:
        base = {"auth_url": server.auth_url, "user": server.user, "key": server.key}

        def row(case: str, label: str, op: str, **params: Any) -> dict[str, Any]:
            result = _child(op, {**base, **params})
            r = {"case": case, "label": label, **params, **result}
            log.info("%s %s: %s", case, label, {k: v for k, v in result.items() if k != "error"})
            rows.append(r)
            return r

        for rep in range(
            0 if skip_io else reps
        ):  # interleaved: plain, committed, plain, committed ...
            for mode in ("plain", "versioned"):
                prefix = f"{mode}-{rep}"
                row(
                    "write", mode, "write", mode=mode, container="w11", prefix=prefix, chunks=chunks
                )
            for mode in ("plain", "versioned"):
                row("read", mode, "read", mode=mode, container="w11", prefix=f"{mode}-0")
        for pieces_label, entries in (("split", 10_000), ("unsplit", 10_000_000)):
            prefix = f"commit-{pieces_label}"
            row(
                "commit-seed",
                pieces_label,
                "seed",
                container="w11c",
                prefix=prefix,
                keys=base_keys,
                piece_entries=entries,
            )
            for n in changed:
                row(
                    "commit",
                    f"{pieces_label} {n}",
                    "commit",
                    container="w11c",
                    prefix=prefix,
                    keys=base_keys,
                    changed=n,
                )
        row(
            "1M",
            "seed manifest",
            "seed",
            container="w11m",
            prefix="big",
            keys=big,
            piece_entries=10_000,
        )
        row(
            "1M",
            "commit 1000 changed",
            "commit",
            container="w11m",
            prefix="big",
            keys=big,
            changed=1000,
        )
        row(
            "1M",
            "10000 lookups + full listing",
            "lookups",
            container="w11m",
            prefix="big",
            keys=big,
            lookups=10_000,
        )
    result = {
        "meta": {
            "workload": "W11",
            "mode": "quick" if quick else "full",
            "simulated": "commit and 1M cases: manifests real, the base chunk objects not written",
            "chunks": chunks,
            "python": sys.version.split()[0],
            "machine": {"cpus": os.cpu_count()},
            "load_average": os.getloadavg(),
        },
        "results": rows,
        "summary": summarize(rows),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"w11-{'quick' if quick else 'full'}{'-manifests' if skip_io else ''}.json"
    out.write_text(json.dumps(result, indent=1, default=str))
    print(table(result), flush=True)
    print(f"\nwrote {out}")
    return result


def _median(rows: list[dict[str, Any]], case: str, label: str, field: str = "wall") -> float | None:
    values = [r[field] for r in rows if r["case"] == case and r["label"] == label and r.get("ok")]
    return statistics.median(values) if values else None


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for case in ("write", "read"):
        plain, versioned = _median(rows, case, "plain"), _median(rows, case, "versioned")
        if plain and versioned:
            out[f"{case}_overhead_pct"] = round(100 * (versioned / plain - 1), 1)
    out["peak_rss_mb_1M"] = max(
        (r.get("peak_rss_mb", 0) for r in rows if r["case"] == "1M" and r.get("ok")), default=None
    )
    return out


def table(result: dict[str, Any]) -> str:
    lines = [
        f"W11 ({result['meta']['mode']}, load {result['meta']['load_average'][0]:.1f})",
        f"{'case':<12} {'label':<30} {'wall s':>8} {'peak MB':>8}  notes",
    ]
    for r in result["results"]:
        notes = r.get("error", "")[-60:] if not r.get("ok") else ""
        if "pieces_written" in r:
            notes = (
                f"pieces written {r['pieces_written']}, read {r['pieces_read']}, "
                f"kept {r['pieces_kept']}"
            )
        if "rss_before_mb" in r:
            notes += f"; RSS before {r['rss_before_mb']:.0f} MB"
        if "listed" in r:
            notes = f"listed {r['listed']} keys" + notes
        if "commit_s" in r:
            notes = f"commit {r['commit_s']:.2f} s"
        lines.append(
            f"{r['case']:<12} {r['label']:<30} {r.get('wall', float('nan')):>8.2f} "
            f"{r.get('peak_rss_mb', float('nan')):>8.1f}  {notes}"
        )
    lines.append(f"summary: {json.dumps(result['summary'])}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.w11", description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument(
        "--skip-io", action="store_true", help="only the commit and 1 M-key (manifest) cases"
    )
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("params", nargs="?", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        logging.basicConfig(level=logging.WARNING)
        print(json.dumps(OPS[args.child](json.loads(args.params)), default=str))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    run(args.quick, args.reps, args.skip_io)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
