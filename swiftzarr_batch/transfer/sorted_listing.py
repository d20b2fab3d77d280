"""Every key of any store in sorted order, in bounded memory: what a merge of two listings needs.

Swift lists in the UTF-8 byte order of names. For valid UTF-8 (all Swift accepts, so no lone
surrogates) byte order is code point order, which is how Python compares ``str``: a Swift
listing is already ``sorted()``, prefixes stripped or not. Other stores list in any order, and
zarr's ``LocalStore.list_prefix`` even builds the whole list first. So:

- a ``LocalStore`` is walked directory by directory (``os.scandir``), each directory's entries
  sorted with a directory ``d`` taking the place of ``"d/"``. Every key under ``d`` starts with
  ``"d/"`` and no sibling contains ``/``, so a sibling sorts before all of them exactly when it
  sorts before ``"d/"``: the walk yields keys in global sorted order, with their sizes (one
  ``stat`` each, no hashing);
- any other store's ``list_prefix`` is sorted as it streams.

Either way a sort holds at most ``RUN`` entries; beyond that it writes sorted runs to temporary
files and merges them (``heapq.merge``), so memory stays flat even for a directory of millions
of chunks (zarr v2's flat ``0.0.1`` layout) and disk holds the rest until the walk ends.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import os
import tempfile
from collections.abc import AsyncIterator, Generator, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from zarr.abc.store import Store
from zarr.storage import LocalStore

from swiftzarr_batch.errors import SwiftZarrError
from swiftzarr_batch.store.objects import ObjectInfo, swift_objects
from swiftzarr_batch.transfer.objects import dir_prefix

__all__ = ["RUN", "ListingOrderError", "sorted_entries", "sorted_objects"]

RUN = 50_000
"""Entries a sort holds before it spills a sorted run to disk (~5-10 MB of names)."""
_PULL = 1_000  # entries a LocalStore walk hands from its thread at a time


class ListingOrderError(SwiftZarrError, RuntimeError):
    """A listing that should be sorted was not: a merge of it would decide wrongly."""


def sorted_entries(items: Iterable[tuple[Any, ...]], run: int = RUN) -> Iterator[tuple[Any, ...]]:
    """``items`` (tuples whose first elements, ``str``, are unique) sorted by their first
    element, holding at most ``run`` of them in memory (the rest in sorted runs on disk)."""
    runs: list[IO[str]] = []
    buffer: list[tuple[Any, ...]] = []
    try:
        for item in items:
            buffer.append(item)
            if len(buffer) >= run:
                runs.append(_spill(buffer))
                buffer = []
        buffer.sort()
        if not runs:
            yield from buffer
            return
        yield from heapq.merge(iter(buffer), *(_read(f) for f in runs))
    finally:
        for f in runs:
            f.close()


def _spill(buffer: list[tuple[Any, ...]]) -> IO[str]:
    buffer.sort()
    f = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 - closed by the caller
    for item in buffer:
        f.write(json.dumps(item, ensure_ascii=False) + "\n")  # escapes any newline in a name
    f.seek(0)
    return f


def _read(f: IO[str]) -> Iterator[tuple[Any, ...]]:
    for line in f:
        yield tuple(json.loads(line))


async def sorted_objects(store: Store, path: str = "", run: int = RUN) -> AsyncIterator[ObjectInfo]:
    """Every key under the directory ``path`` (keys relative to the store), in sorted order,
    with size and MD5 when the store knows them cheaply; raises ``ListingOrderError`` if a
    listing that claims to be sorted is not."""
    prefix = dir_prefix(path)
    swift = swift_objects(store)
    if swift is not None:
        source: AsyncIterator[ObjectInfo] = swift.list_objects(prefix)
    elif isinstance(store, LocalStore):
        source = _local_walk(Path(store.root), prefix, run)
    else:
        source = _sorted_keys(store, prefix, run)
    last: str | None = None
    async for info in source:
        if last is not None and info.key <= last:
            raise ListingOrderError(
                f"the listing of {prefix or 'the store'} is not in sorted order ({last!r} came "
                f"before {info.key!r}); refusing to plan a copy from it"
            )
        last = info.key
        yield info


async def _sorted_keys(store: Store, prefix: str, run: int) -> AsyncIterator[ObjectInfo]:
    """A store that lists unsorted: its stream sorted (runs spilled to disk past ``run``)."""
    runs: list[IO[str]] = []
    buffer: list[tuple[Any, ...]] = []
    try:
        async for key in store.list_prefix(prefix):
            buffer.append((key,))
            if len(buffer) >= run:
                runs.append(await asyncio.to_thread(_spill, buffer))
                buffer = []
        buffer.sort()
        merged = heapq.merge(iter(buffer), *(_read(f) for f in runs)) if runs else iter(buffer)
        for (key,) in merged:
            yield ObjectInfo(key)
    finally:
        for f in runs:
            f.close()


async def _local_walk(root: Path, prefix: str, run: int) -> AsyncIterator[ObjectInfo]:
    """A LocalStore, walked in sorted order in a thread, ``_PULL`` entries at a time."""
    walk = _walk_sorted(root, prefix, run)
    try:
        while chunk := await asyncio.to_thread(_take, walk, _PULL):
            for key, size in chunk:
                yield ObjectInfo(key, size)
    finally:
        walk.close()


def _take(it: Iterator[tuple[str, int]], n: int) -> list[tuple[str, int]]:
    out = []
    for item in it:
        out.append(item)
        if len(out) >= n:
            break
    return out


def _walk_sorted(root: Path, rel: str, run: int) -> Generator[tuple[str, int]]:
    """(key, size) of every file under ``root/rel`` (``rel`` "" or ending in "/"), sorted.

    ``rel`` may also be a key's prefix that is not a directory (``list_prefix("a/b")`` with
    "a/b" a file): then nothing, as zarr's LocalStore lists a directory prefix."""
    base = root / rel if rel else root
    try:
        scan = os.scandir(base)
    except (FileNotFoundError, NotADirectoryError):
        return
    with scan:
        entries = sorted_entries(_scanned(scan), run)
        for name, is_dir, size in entries:
            if is_dir:
                yield from _walk_sorted(root, rel + name, run)  # name ends with "/"
            else:
                yield rel + name, size


def _scanned(scan: Iterator[os.DirEntry[str]]) -> Iterator[tuple[str, bool, int]]:
    for entry in scan:
        if entry.is_dir():
            yield entry.name + "/", True, 0
        elif entry.is_file():
            yield entry.name, False, entry.stat().st_size
