"""W9: files through fsspec: a file of ``sizes.file_mib`` MiB read sequentially, read at 100
random 1 MiB ranges, and written through ``open("wb")``.

Contenders: ``ours`` (the ``swift://`` file system's file objects), ``raw`` (one GET / one
PUT of the whole body, and plain ranged GETs: what the server can do) and ``s3fs`` (its file
objects through Swift's s3api). Random reads use each file system's file object with
``cache_type="none"`` (a 1 MiB read is a 1 MiB GET, not a readahead block), one after another
as a reader seeks. swiftspec cannot run here (it builds https:// URLs only).
"""

from __future__ import annotations

import random
from typing import Any

from benchmarks.config import MIB, Sizes
from benchmarks.plan import C_FILES, Case, Entry, Hooks

W9_CONTENDERS = ("raw", "ours", "s3fs")
READ_NAME = "read/file.bin"
RANDOM_READS = 100


def random_offsets(size: int) -> list[int]:
    rng = random.Random(9)
    return [rng.randrange(0, size - MIB) for _ in range(RANDOM_READS)]


def w9_cases(sizes: Sizes, hooks: Hooks) -> list[Case]:
    size = sizes.file_mib * MIB
    seeded = {"done": False}

    def seed(rep: int) -> None:
        if not seeded["done"]:
            hooks.seed_file(C_FILES, READ_NAME, size)
            seeded["done"] = True

    def params(**extra: Any) -> Any:
        return lambda rep: {"container": C_FILES, "size": size, **extra, "rep": rep}

    mib = sizes.file_mib
    read = Case("W9", f"W9 sequential read of a {mib} MiB file", "raw")
    ranges = Case("W9", f"W9 {RANDOM_READS} random 1 MiB reads of a {mib} MiB file", "raw")
    write = Case(
        "W9",
        f"W9 write a {mib} MiB file (open 'wb')",
        "raw",
        note="raw = one PUT of the whole body",
    )
    offsets = random_offsets(size)
    for c in W9_CONTENDERS:
        read.entries.append(Entry(c, c, "w9_read", params(name=READ_NAME), prepare=seed))
        ranges.entries.append(
            Entry(c, c, "w9_ranges", params(name=READ_NAME, offsets=offsets), prepare=seed)
        )
        write.entries.append(Entry(c, c, "w9_write", params(name=f"write/{c}.bin")))
    return [read, ranges, write]


def payload(size: int) -> bytes:
    """What W9 writes (made in microseconds: not worth measuring)."""
    return b"\x5a" * size


def result(done: int, expect: int, objects: int = 1) -> dict[str, Any]:
    return {
        "objects": objects,
        "bytes": done,
        "check": "ok" if done == expect else f"FAIL: {done} of {expect} bytes",
    }
