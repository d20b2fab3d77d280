"""Sizes of the workloads for ``make bench`` (full) and ``make bench-quick``.

The full sizes are the issue's: 4 096 chunks of 64 KiB and 64 of 8 MiB, a 50 000-object
listing, a 2 000-chunk copy, a 20 000-object delete. Quick keeps every workload and >= 3
repetitions, only smaller, so a run takes a few minutes on 2 shared cores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class ArrayCase:
    """A 2-D int32 array of ``grid[0] x grid[1]`` chunks of ``chunk[0] x chunk[1]`` elements.

    ``block``: zarr chunks per dask block along each axis. Small chunks are written by dask
    blocks of several chunks (one task stores a block; zarr's async concurrency sends its
    chunks in parallel), as a user with 64 KiB chunks would chunk dask: one task per 64 KiB
    costs more in dask scheduling than the PUT itself and would hide every store difference.
    """

    name: str
    chunk: tuple[int, int]
    grid: tuple[int, int]
    block: tuple[int, int] = (1, 1)

    @property
    def chunks(self) -> int:
        return self.grid[0] * self.grid[1]

    @property
    def chunk_bytes(self) -> int:
        return self.chunk[0] * self.chunk[1] * 4

    @property
    def block_shape(self) -> tuple[int, int]:
        return (self.chunk[0] * self.block[0], self.chunk[1] * self.block[1])

    @property
    def shape(self) -> tuple[int, int]:
        return (self.chunk[0] * self.grid[0], self.chunk[1] * self.grid[1])


@dataclass(frozen=True)
class Sizes:
    mode: str
    reps: int
    concurrency: int  # requests in flight: raw workers, zarr async.concurrency, CLI threads
    dask_workers: int  # dask threads per client process
    arrays: tuple[ArrayCase, ...]
    listing_objects: int
    copy_chunks: int
    delete_objects: int
    upload_threads: tuple[int, ...]  # `swift upload --object-threads` values tried in W4
    op_timeout: float
    seed_parallel: int = 6  # concurrent extract-archive requests when seeding
    file_mib: int = 256  # W9: the size of the file read and written through fsspec
    extra: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


FULL = Sizes(
    mode="full",
    reps=3,
    concurrency=16,
    dask_workers=4,
    arrays=(
        ArrayCase("64KiB", (128, 128), (64, 64), (4, 4)),
        ArrayCase("8MiB", (1024, 2048), (8, 8)),
    ),
    listing_objects=50_000,
    copy_chunks=2_000,
    delete_objects=20_000,
    upload_threads=(10, 20, 40),
    op_timeout=1800.0,
)

QUICK = Sizes(
    mode="quick",
    reps=3,
    concurrency=16,
    dask_workers=4,
    arrays=(
        ArrayCase("64KiB", (128, 128), (16, 32), (4, 4)),
        ArrayCase("8MiB", (1024, 2048), (4, 4)),
    ),
    listing_objects=12_000,
    copy_chunks=200,
    delete_objects=1_000,
    upload_threads=(10, 20),
    op_timeout=300.0,
    file_mib=64,
)
