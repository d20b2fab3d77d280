"""What every contender shares: the server coordinates and the common dask/zarr workloads."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.config import ArrayCase


class Unavailable(Exception):
    """The contender cannot do this workload yet (reported as such, never faked)."""


@dataclass(frozen=True)
class Server:
    """Where the benchmark server is; read from the worker's environment."""

    auth_url: str
    user: str
    key: str
    proxy_url: str
    concurrency: int
    dask_workers: int

    @classmethod
    def from_env(cls) -> Server:
        e = os.environ
        return cls(
            e["BENCH_AUTH_URL"],
            e["BENCH_USER"],
            e["BENCH_KEY"],
            e["BENCH_PROXY_URL"],
            int(e.get("BENCH_CONCURRENCY", "16")),
            int(e.get("BENCH_DASK_WORKERS", "4")),
        )


def chunk_value(case: ArrayCase, i: int, j: int) -> int:
    return (i * case.grid[1] + j) % 997 + 1


def expected_sum(case: ArrayCase) -> int:
    per_chunk = case.chunk[0] * case.chunk[1]
    return sum(
        chunk_value(case, i, j) * per_chunk
        for i in range(case.grid[0])
        for j in range(case.grid[1])
    )


def make_block(case: ArrayCase, bi: int, bj: int) -> np.ndarray:
    """Dask block (bi, bj): its zarr chunks filled with their ``chunk_value``."""
    (ci, cj), (bs0, bs1) = case.chunk, case.block
    out = np.empty((ci * bs0, cj * bs1), dtype=np.int32)
    for i in range(bs0):
        for j in range(bs1):
            out[i * ci : (i + 1) * ci, j * cj : (j + 1) * cj] = chunk_value(
                case, bi * bs0 + i, bj * bs1 + j
            )
    return out


def source_array(case: ArrayCase) -> Any:
    """A dask array made on the fly (cheap, contiguous, a distinct value per zarr chunk)."""
    import dask.array as da

    name = f"bench-source-{case.name}"
    nb0, nb1 = case.grid[0] // case.block[0], case.grid[1] // case.block[1]
    dsk = {(name, i, j): (make_block, case, i, j) for i in range(nb0) for j in range(nb1)}
    chunks = ((case.block_shape[0],) * nb0, (case.block_shape[1],) * nb1)
    return da.Array(dsk, name, chunks=chunks, dtype=np.int32)


def array_case(d: dict[str, Any]) -> ArrayCase:
    return ArrayCase(d["name"], tuple(d["chunk"]), tuple(d["grid"]), tuple(d.get("block", (1, 1))))


class Contender:
    """Base: knows the server; subclasses add the operations they support."""

    name = "?"

    def __init__(self) -> None:
        self.server = Server.from_env()

    def setup(self) -> dict[str, Any]:
        """Authenticate and warm up (not measured); returns facts worth reporting."""
        return {}


class ZarrContender(Contender):
    """A zarr Store contender: W1 is ``da.to_zarr``, W2 ``da.from_zarr(...).sum()``, W3 the
    Store's ``list_prefix`` / ``list_dir``; subclasses only say how to make the store."""

    def setup(self) -> dict[str, Any]:
        import dask
        import zarr

        dask.config.set(scheduler="threads", num_workers=self.server.dask_workers)
        zarr.config.set({"async.concurrency": self.server.concurrency})
        return {}

    def warm_up(self) -> None:
        """Write and read a tiny array once: imports, codecs, auth and the pool are ready
        before the first measured repetition."""
        import dask.array as da
        import zarr

        store = self.store("bench-warmup", f"{self.name}")
        da.to_zarr(
            da.ones((8, 8), chunks=4, dtype=np.int32) + 1,
            store,
            component="a",
            mode="a",
            compressors=None,
        )
        z = zarr.open_array(
            store=self.store("bench-warmup", self.name, read_only=True), path="a", mode="r"
        )
        assert int(da.from_zarr(z).sum().compute()) == 128

    def store(self, container: str, prefix: str, *, read_only: bool = False) -> Any:
        raise NotImplementedError

    def w1_write(self, case: dict[str, Any], container: str, path: str) -> dict[str, Any]:
        import dask.array as da

        ac = array_case(case)
        store = self.store(container, path)
        da.to_zarr(
            source_array(ac), store, component="a", mode="a", compressors=None, chunks=ac.chunk
        )
        return {"objects": ac.chunks, "bytes": ac.chunks * ac.chunk_bytes}

    def w2_read(self, case: dict[str, Any], container: str, path: str) -> dict[str, Any]:
        import dask.array as da
        import zarr

        ac = array_case(case)
        z = zarr.open_array(store=self.store(container, path, read_only=True), path="a", mode="r")
        total = int(da.from_zarr(z, chunks=ac.block_shape).sum(dtype=np.int64).compute())
        want = expected_sum(ac)
        return {
            "objects": ac.chunks,
            "bytes": ac.chunks * ac.chunk_bytes,
            "check": "ok" if total == want else f"FAIL: sum {total} != {want}",
        }

    def _count(self, agen_factory: Any) -> int:
        from zarr.core.sync import sync

        async def count() -> int:
            n = 0
            async for _ in agen_factory():
                n += 1
            return n

        return sync(count())

    def w3_keys(self, container: str, prefix: str, expect: int) -> dict[str, Any]:
        store = self.store(container, "", read_only=True)
        n = self._count(lambda: store.list_prefix(prefix))
        return listing_result(n, expect)

    def w3_dir(self, container: str, prefix: str, expect: int) -> dict[str, Any]:
        store = self.store(container, "", read_only=True)
        n = self._count(lambda: store.list_dir(prefix.rstrip("/")))
        return listing_result(n, expect)


def listing_result(n: int, expect: int) -> dict[str, Any]:
    return {
        "objects": n,
        "bytes": 0,
        "check": "ok" if n == expect else f"FAIL: listed {n} of {expect}",
    }
