"""The read path of ``SwiftStore``: one GET per zarr read, and a cache of shard indexes.

Why a cache: zarr's sharding codec reads one inner chunk of a shard in two dependent GETs: the
shard's index first (``SuffixByteRequest(16 * chunks + 4)``, the index at the end, zarr's
default), then the chunk (a ``RangeByteRequest`` at the offsets the index gives). It keeps
nothing between reads, so every random chunk read pays the index GET again: two round trips
where a plain zarr 2 chunk costs one. ``ReadCache`` keeps the bodies of suffix reads (exactly
that request shape, nothing else: chunk ranges and whole objects are never cached) in a
least-recently-used map capped in bytes, keyed by object name and suffix length.

A cache must never hand zarr stale bytes. When is that guaranteed?

- **Read-only stores** (``read_only=True``, ``anonymous``, ``from_url``, and zarr's own
  ``mode="r"`` copies) use it by default. They assume what consolidated metadata already
  assumes: the dataset does not change while it is open. A store opened *after* a rewrite
  starts with an empty cache and sees the new bytes.
- **Writes through the store** drop what they touch once the write has finished (``set``,
  ``set_if_not_exists``, ``delete``, ``delete_dir``/``clear``, and the object-level writes of
  ``store.objects``), whether the store uses the cache or not: a store and its
  ``with_read_only``/``with_prefix`` copies share one cache, so a ``mode="r"`` array never
  keeps an index its writable parent has since rewritten. A read that was in flight when a
  write finished is not cached (a generation counter is taken before every miss and checked
  before storing), so an old body cannot slip in after the invalidation.
- **Rewrites by someone else** while the store is open break the assumption; they are caught,
  not served: an entry keeps the ETag its suffix read came with, and every byte-range read of
  that object compares the ETag of its answer (free: Swift sends it with every 206). When they
  differ, the object changed since its index was cached, so the range was computed from a stale
  index: the entry is dropped and ``StaleReadError`` raised (zarr reports it inside an
  ``ExceptionGroup``) instead of handing back bytes from the wrong offsets; the next read reads
  the new index. Chunks the stale index says are empty read as the fill value without any
  request, so nothing can catch those: that is the assumption's residue.

Writable stores leave it off by default (``read_cache=True`` turns it on): their own writes are
seen, but another writer's are caught only as above. The cache never travels in a pickle: an
unpickled store (a dask worker's) starts with a fresh, empty one.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from zarr.abc.store import ByteRequest, SuffixByteRequest

from swiftzarr_batch.errors import ConfigurationError, SwiftZarrError
from swiftzarr_batch.store.byte_ranges import range_header, slice_body
from swiftzarr_batch.swift.container import SwiftContainer
from swiftzarr_batch.swift.status import is_range_not_satisfiable, range_ignored

__all__ = ["DEFAULT_CACHE_BYTES", "ReadCache", "StaleReadError", "cache_bytes", "fetch"]

DEFAULT_CACHE_BYTES = 16 << 20  # 16 MiB: ~16 000 indexes of 64-chunk shards, 256 of 4096
ReadCacheOption = bool | int | None


class StaleReadError(SwiftZarrError, OSError):
    """An object changed while a store held its shard index: the range zarr asked for was
    computed from the old index. Read again (the new index is fetched) or reopen."""


@dataclass(frozen=True, slots=True)
class Fetched:
    """A read's body (None: the object is missing) and the ETag it came with (if any)."""

    body: bytes | bytearray | None
    etag: str | None = None


async def fetch(container: SwiftContainer, name: str, byte_range: ByteRequest | None) -> Fetched:
    """One zarr ``get`` in HTTP: a GET with the Range, or a HEAD for an empty range."""
    wanted = range_header(byte_range)
    if wanted == "":  # an empty range: only existence matters
        return Fetched(None if await container.head(name) is None else b"")
    resp = await container.get(name, range_header=wanted)
    if resp is None:
        return Fetched(None)
    body = resp.body
    if is_range_not_satisfiable(resp.status):
        body = b""
    elif range_ignored(resp.status, wanted):  # the whole body: cut the range out
        body = slice_body(body, byte_range)
    return Fetched(body, resp.headers.get("Etag", "").strip('"') or None)


def cache_bytes(option: ReadCacheOption, read_only: bool) -> int:
    """The byte cap a store's ``read_cache`` option means (0: not used).

    None: on (16 MiB) for read-only stores, off otherwise; True/False: on/off; an int: on with
    that cap in bytes (0: off).
    """
    if option is None:
        return DEFAULT_CACHE_BYTES if read_only else 0
    if isinstance(option, bool):
        return DEFAULT_CACHE_BYTES if option else 0
    if not isinstance(option, int) or option < 0:
        raise ConfigurationError(
            f"read_cache must be None, True, False or a byte count >= 0, got {option!r}"
        )
    return option


@dataclass(slots=True)
class _Entry:
    suffix: int
    body: bytes
    etag: str | None


class ReadCache:
    """Bytes-capped LRU of suffix byte-range reads (shard indexes), see the module docstring.

    ``read(..., cap=0)`` reads through it without using it; invalidation works whatever the
    cap, so a writable store keeps the entries of its read-only copies honest. ``stats()``:
    hits, misses, evictions, stale (ETag changes caught), entries, bytes.
    """

    def __init__(self) -> None:
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0
        self._generation = 0  # bumped by every invalidation
        self._lock = threading.Lock()  # a store may be shared by threads with their own loops
        self._stats = {"hits": 0, "misses": 0, "evictions": 0, "stale": 0}

    def stats(self) -> dict[str, int]:
        """A snapshot of the counters (hits, misses, evictions, stale) and of the current entries
        and bytes: to check that the cache is used, and that its cap holds."""
        with self._lock:
            return {**self._stats, "entries": len(self._entries), "bytes": self._bytes}

    async def read(
        self, container: SwiftContainer, name: str, byte_range: ByteRequest | None, cap: int
    ) -> bytes | bytearray | None:
        """The body zarr asked for: from the cache for a cached suffix read, else one request."""
        suffix = byte_range.suffix if isinstance(byte_range, SuffixByteRequest) else 0
        if cap <= 0:
            return (await fetch(container, name, byte_range)).body
        if 0 < suffix <= cap // 4:  # one entry never takes more than a quarter of the cap
            with self._lock:
                entry = self._entries.get(name)
                if entry is not None and entry.suffix == suffix:
                    self._entries.move_to_end(name)
                    self._stats["hits"] += 1
                    return entry.body
                self._stats["misses"] += 1
                generation = self._generation
            got = await fetch(container, name, byte_range)
            if got.body:
                self._store(name, _Entry(suffix, bytes(got.body), got.etag), generation, cap)
            return got.body
        got = await fetch(container, name, byte_range)
        if got.etag is not None and name in self._entries:
            self._check(name, got.etag, partial=byte_range is not None)
        return got.body

    def _store(self, name: str, entry: _Entry, generation: int, cap: int) -> None:
        with self._lock:
            if generation != self._generation:  # a write finished while this read was out
                return
            old = self._entries.pop(name, None)
            self._bytes += len(entry.body) - (len(old.body) if old else 0)
            self._entries[name] = entry
            while self._bytes > cap:
                _, dropped = self._entries.popitem(last=False)
                self._bytes -= len(dropped.body)
                self._stats["evictions"] += 1

    def _check(self, name: str, etag: str, *, partial: bool) -> None:
        with self._lock:
            entry = self._entries.get(name)
            if entry is None or entry.etag is None or entry.etag == etag:
                return
            self._drop(name)
            self._stats["stale"] += 1
        if partial:
            raise StaleReadError(
                f"{name!r} changed (ETag {entry.etag} -> {etag}) while its shard index was "
                "cached: this range was computed from the old index; read again or reopen"
            )

    def _drop(self, name: str) -> None:
        old = self._entries.pop(name, None)
        if old is not None:
            self._bytes -= len(old.body)
        self._generation += 1

    def forget(self, name: str) -> None:
        """Drop ``name``'s entry: call once a write to it has finished (or failed)."""
        with self._lock:
            self._drop(name)

    def forget_under(self, base: str) -> None:
        """Drop every entry whose object name starts with ``base`` ("" : all of them)."""
        with self._lock:
            for name in [n for n in self._entries if n.startswith(base)]:
                self._drop(name)
            self._generation += 1
