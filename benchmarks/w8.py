"""W8, convert while copying: ``python -m benchmarks.run --only W8 [--quick]``.

A local zarr 2 array of N x 64 KiB chunks (4 096 full, 1 024 quick) and an xarray dataset of
three variables (64 KiB chunks too) go to the same local Swift as
  (a) a plain ``copy_store`` (one object per chunk, as they are), and
  (b) ``copy_store(..., convert=Target(zarr_format=3, shards="auto", shard_size=4 MiB))``:
      64 chunks per 4 MiB shard (64 shards full, 16 quick),
  (c) rechunker + zarr's FsspecStore over the s3api, if it can be made to run here.
Then both are read back in full, and 100 random single chunks are read from each, one after
the other (latency, not throughput), through read-only stores as a reader opens them (so with
SwiftStore's shard-index cache, ``read_cache``); (b) once more with ``read_cache=False``, to
show what the cache saves (the GETs of each are counted). Every operation runs in a fresh
Python process (its wall, CPU and peak RSS are its own: ``measure.Meter``); objects written
come from the container listing. No codec on either side (``compressors=None``): both write
the same bytes, so the difference is the object count. Results: a table on stdout and
``benchmarks/results/w8-{quick,full}.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.measure import Meter

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
log = logging.getLogger("benchmarks.w8")
CHUNK = (128, 128)  # float32: 64 KiB
SHARD_SIZE = 4 << 20
READ_ROUNDS = 3


# -- the operations, each in its own process ---------------------------------------------------
def _swift(p: dict[str, Any], container: str, **options: Any) -> Any:
    from swiftzarr_batch import SwiftStore

    return SwiftStore(container, authurl=p["auth_url"], user=p["user"], key=p["key"], **options)


def op_copy(p: dict[str, Any]) -> dict[str, Any]:
    import dask
    from zarr.storage import LocalStore

    from swiftzarr_batch.transfer.convert_plan import Target
    from swiftzarr_batch.transfer.copy import copy_store

    target = None
    if p["mode"] == "convert":
        target = Target(zarr_format=3, shards="auto", shard_size=SHARD_SIZE, compressors=None)
    out = {}
    with dask.config.set(num_workers=p["threads"]), Meter() as m:
        for name in ("array", "dataset"):
            started = time.perf_counter()
            s = copy_store(
                LocalStore(Path(p["src"]) / name, read_only=True),
                _swift(p, f"{p['container']}-{name}"),
                convert=target,
            )
            out[f"{name}_keys"] = s.keys_copied
            out[f"{name}_wall"] = time.perf_counter() - started
    return {**out, "wall": m.wall, "cpu": m.cpu, "peak_rss_mb": m.peak_rss_mb}


def op_read(p: dict[str, Any]) -> dict[str, Any]:
    import numpy as np
    import xarray as xr
    import zarr

    # Read-only stores, as a reader opens them: the store's shard-index cache is on
    # (``read_cache``, store/read_cache.py); ``read_cache=False`` is the row without it.
    store = _swift(p, f"{p['container']}-array", read_only=True, read_cache=p.get("read_cache"))
    arr = zarr.open_array(store, mode="r")
    if p["how"] == "full":
        with Meter() as m:
            total = float(arr[:].sum(dtype="f8"))
            # chunks=None: zarr reads each variable whole (a shard in one GET), not one dask
            # task per 64 KiB inner chunk; both contenders alike
            ds = xr.open_zarr(
                _swift(p, f"{p['container']}-dataset", read_only=True), chunks=None
            ).load()
        return {
            "wall": m.wall,
            "cpu": m.cpu,
            "peak_rss_mb": m.peak_rss_mb,
            "sum": total,
            "vars": len(ds),
        }
    rng = np.random.default_rng(8)
    grid = [s // c for s, c in zip(arr.shape, CHUNK, strict=True)]
    picks = [(int(rng.integers(grid[0])), int(rng.integers(grid[1]))) for _ in range(100)]
    arr[:1, :1]  # the metadata is read once before timing (both sides alike)
    before = store.counters["requests"]
    with Meter() as m:
        for i, j in picks:
            arr[i * CHUNK[0] : (i + 1) * CHUNK[0], j * CHUNK[1] : (j + 1) * CHUNK[1]]
    return {
        "wall": m.wall,
        "cpu": m.cpu,
        "peak_rss_mb": m.peak_rss_mb,
        "reads": len(picks),
        "requests": store.counters["requests"] - before,
        "index_cache": store.read_cache.stats(),
    }


OPS = {"copy": op_copy, "read": op_read}


# -- the orchestrator ----------------------------------------------------------------------------
def _child(op: str, params: dict[str, Any], timeout: float = 1800) -> dict[str, Any]:
    argv = [sys.executable, "-m", "benchmarks.w8", "--child", op, json.dumps(params)]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        return {"ok": False, "error": (proc.stderr or proc.stdout)[-800:]}
    return {"ok": True, **json.loads(proc.stdout.strip().splitlines()[-1])}


def seed(src: Path, chunks: int) -> dict[str, Any]:
    """The zarr 2 sources: an array of ``chunks`` x 64 KiB and a 3-variable dataset."""
    import numpy as np
    import xarray as xr
    import zarr
    from zarr.storage import LocalStore

    side = int(chunks**0.5)
    shape = (side * CHUNK[0], side * CHUNK[1])
    arr = zarr.create_array(
        LocalStore(src / "array"),
        shape=shape,
        chunks=CHUNK,
        dtype="f4",
        zarr_format=2,
        compressors=None,
    )
    rng = np.random.default_rng(0)
    for r in range(0, shape[0], CHUNK[0]):
        arr[r : r + CHUNK[0]] = rng.random((CHUNK[0], shape[1]), dtype="f4")
    steps = 16
    coords = {"time": np.arange(steps), "y": np.arange(512.0), "x": np.arange(512.0)}
    ds = xr.Dataset(
        {
            v: (("time", "y", "x"), rng.random((steps, 512, 512), dtype="f4"))
            for v in ("t", "u", "v")
        },
        coords=coords,
        attrs={"title": "W8"},
    )
    enc = {v: {"chunks": (1, *CHUNK), "compressors": None} for v in ("t", "u", "v")}
    ds.to_zarr(LocalStore(src / "dataset"), zarr_format=2, encoding=enc)
    return {"array_shape": shape, "array_chunks": chunks, "dataset_chunks": 3 * steps * 16}


def run(quick: bool, reps: int = 1) -> dict[str, Any]:
    from swiftclient.client import Connection

    from swiftzarr_batch.testing.swift_server import LocalSwift

    chunks = 1024 if quick else 4096
    work = Path(tempfile.mkdtemp(prefix="swiftzarr-w8-"))
    rows: list[dict[str, Any]] = []
    with LocalSwift(s3api=True) as server:
        conn = Connection(authurl=server.auth_url, user=server.user, key=server.key)
        sizes = seed(work / "src", chunks)
        base = {
            "auth_url": server.auth_url,
            "user": server.user,
            "key": server.key,
            "src": str(work / "src"),
            "threads": 4,
        }
        base["proxy_url"], base["region"] = server.proxy_url, "us-east-1"
        for rep in range(reps):
            this_rep = []
            for label, mode in (
                ("(a) plain copy", "plain"),
                ("(b) zarr 3, 4 MiB shards", "convert"),
            ):
                container = f"w8-{mode}-{rep}"
                p = {**base, "container": container, "mode": mode}
                row = {"rep": rep, "contender": label, "params": p, **_child("copy", p)}
                names = {
                    n: [
                        o["name"]
                        for o in conn.get_container(f"{container}-{n}", full_listing=True)[1]
                    ]
                    for n in ("array", "dataset")
                }
                row["objects"] = sum(len(v) for v in names.values())
                row["data_objects"] = sum(not _bookkeeping(k) for v in names.values() for k in v)
                row["array_data_objects"] = sum(not _bookkeeping(k) for k in names["array"])
                this_rep.append(row)
            # Reads interleaved (a b b-uncached, a b b-uncached, ...), READ_ROUNDS times, medians
            # kept: the machine is shared, and a slow moment must not land on one contender.
            reads: dict[tuple[int, str], list[dict[str, Any]]] = {}
            for _ in range(READ_ROUNDS):
                for i, row in enumerate(this_rep):
                    kinds = [("full_read", {}), ("random_reads", {})]
                    if row["params"]["mode"] == "convert":  # (b) without the index cache
                        kinds.append(("random_reads_uncached", {"read_cache": False}))
                    for kind, extra in kinds:
                        how = "full" if kind == "full_read" else "random"
                        got = _child("read", {**row["params"], "how": how, **extra})
                        reads.setdefault((i, kind), []).append(got)
            for (i, kind), got in reads.items():
                ok = sorted((g for g in got if g.get("ok")), key=lambda g: g["wall"])
                this_rep[i][kind] = {
                    **(ok[len(ok) // 2] if ok else got[0]),
                    "walls": [g.get("wall") for g in got],
                }
            for row in this_rep:
                row.pop("params")
                rows.append(row)
                log.info(
                    "W8 %s: %s",
                    row["contender"],
                    {k: v for k, v in row.items() if k != "contender"},
                )
        row = {
            "rep": 0,
            "contender": "(c) rechunker (zarr 2 FSStore, s3)",
            **_rechunker(conn, base),
        }
        if row.get("ok"):
            row["objects"] = int(conn.head_container("w8-rechunker")["x-container-object-count"])
        rows.append(row)
    result = {"quick": quick, "sizes": sizes, "rows": rows, "summary": summarize(rows)}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"w8-{'quick' if quick else 'full'}.json").write_text(json.dumps(result, indent=1))
    print(table(result))
    return result


def _bookkeeping(key: str) -> bool:
    """Metadata and swiftzarr's manifest: the objects that are not chunks or shards."""
    last = key.rsplit("/", 1)[-1]
    return last in {"zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata"} or (
        key.startswith(".swiftzarr/")
    )


def _rechunker(conn: Any, base: dict[str, Any]) -> dict[str, Any]:
    """rechunker in its own venv (zarr 2); only the array, to 4 MiB zarr 2 chunks."""
    python = REPO / "benchmarks" / ".venv-rechunker" / "bin" / "python"
    if not python.exists():
        return {"ok": False, "error": "no rechunker venv: bash benchmarks/setup_rechunker_venv.sh"}
    for c in ("w8-rechunker", "w8-rechunker-tmp"):
        conn.put_container(c)
    params = json.dumps({**base, "container": "w8-rechunker"})
    argv = [str(python), str(REPO / "benchmarks" / "w8_rechunker.py"), params]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        return {"ok": False, "error": (proc.stderr or proc.stdout)[-800:]}
    return {"ok": True, **json.loads(proc.stdout.strip().splitlines()[-1])}


def _median(rows: list[dict[str, Any]], label: str, *path: str) -> float | None:
    vals = []
    for r in rows:
        if r["contender"] != label:
            continue
        v: Any = r
        for k in path:
            v = v.get(k) if isinstance(v, dict) else None
        if isinstance(v, (int, float)):
            vals.append(float(v))
    return sorted(vals)[len(vals) // 2] if vals else None


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    a, b = "(a) plain copy", "(b) zarr 3, 4 MiB shards"
    out: dict[str, Any] = {}
    for key, path in (
        ("objects", ("objects",)),
        ("data_objects", ("data_objects",)),
        ("array_data_objects", ("array_data_objects",)),
        ("copy_wall", ("wall",)),
        ("full_read_wall", ("full_read", "wall")),
        ("random_read_wall", ("random_reads", "wall")),
    ):
        va, vb = _median(rows, a, *path), _median(rows, b, *path)
        out[key] = {"a": va, "b": vb, "a_over_b": (va / vb) if va and vb else None}
    uncached = _median(rows, b, "random_reads_uncached", "wall")
    plain = out["random_read_wall"]["a"]
    out["random_uncached_b_over_a"] = uncached / plain if uncached and plain else None
    return out


def table(result: dict[str, Any]) -> str:
    lines = [
        f"W8 convert while copying ({'quick' if result['quick'] else 'full'}): {result['sizes']}",
        f"{'contender':34} {'objects':>8} {'data':>6} {'copy s':>8} {'array s':>7} {'cpu s':>7} "
        f"{'RSS MiB':>8} "
        f"{'full read s':>11} {'100 reads s':>11} {'GETs':>5} {'(no idx cache)':>14}",
    ]
    for r in result["rows"]:
        if not r.get("ok"):
            lines.append(f"{r['contender']:34} did not run: {str(r.get('error'))[:200]}")
            continue
        fr, rr = r.get("full_read", {}), r.get("random_reads", {})
        uncached = r.get("random_reads_uncached", {})
        lines.append(
            f"{r['contender']:34} {r.get('objects', '-')!s:>8} {r.get('data_objects', '-')!s:>6} "
            f"{r['wall']:8.2f} {r.get('array_wall', r['wall']):7.2f} {r['cpu']:7.2f} "
            f"{r['peak_rss_mb']:8.0f} "
            f"{fr.get('wall', float('nan')):11.2f} {rr.get('wall', float('nan')):11.2f} "
            f"{rr.get('requests', '-')!s:>5} {uncached.get('wall', float('nan')):8.2f} "
            f"({uncached.get('requests', '-')!s:>3})"
        )
    s = result["summary"]
    lines.append(
        "targets: array data objects a/b {} (>= 64), copy a/b {} (>= 5), full read a/b {} (>= 3), "
        "random reads b/a {} (<= 1.5; {} without the index cache)".format(
            _fmt(s["array_data_objects"]["a_over_b"]),
            _fmt(s["copy_wall"]["a_over_b"]),
            _fmt(s["full_read_wall"]["a_over_b"]),
            _fmt(
                1 / s["random_read_wall"]["a_over_b"] if s["random_read_wall"]["a_over_b"] else None
            ),
            _fmt(s.get("random_uncached_b_over_a")),
        )
    )
    return "\n".join(lines)


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.w8", description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--reps", type=int, default=1)
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("params", nargs="?", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        logging.basicConfig(level=logging.WARNING)
        print(json.dumps(OPS[args.child](json.loads(args.params)), default=str))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    run(args.quick, args.reps)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
