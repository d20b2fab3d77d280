"""``cache_type="swift-readahead"``, the default of ``swift://`` files opened "rb": fsspec's
readahead, with the window fetched as several ranged GETs at once.

Why: fsspec's ``readahead`` fetches one block after another, each a single ranged GET, so a
sequential reader waits for one request at a time (about 0.6x of one plain GET of the whole
file here). This cache keeps one window of ``parallel`` blocks; a read outside it fetches the
next window as ``parallel`` ranges in flight together (what is left of the old window is kept),
so memory stays at one window and a sequential read runs as fast as the server serves
``parallel`` streams. Scattered small reads want ``cache_type="none"`` (or a smaller
``block_size``): a miss costs a window.
"""

from __future__ import annotations

from collections.abc import Callable

from fsspec.caching import BaseCache, caches, register_cache

__all__ = ["ParallelReadahead"]

FetchMany = Callable[[list[tuple[int, int]]], list[bytes]]


class ParallelReadahead(BaseCache):  # type: ignore[misc]  # fsspec has no type information
    name = "swift-readahead"

    def __init__(
        self,
        blocksize: int,
        fetcher: Callable[[int, int], bytes],
        size: int,
        *,
        fetch_many: FetchMany | None = None,
        parallel: int = 4,
    ) -> None:
        super().__init__(blocksize, fetcher, size)
        self.fetch_many = fetch_many or (lambda ranges: [fetcher(a, b) for a, b in ranges])
        self.parallel = max(1, parallel)
        self.cache = b""
        self.start = self.end = 0

    def _fetch(self, start: int | None, end: int | None) -> bytes:
        start = start or 0
        end = self.size if end is None else min(end, self.size)
        if start >= end:
            return b""
        if self.start <= start and end <= self.end:
            self.hit_count += 1
            return self.cache[start - self.start : end - self.start]
        self.miss_count += 1
        kept = b""
        if self.start <= start < self.end:  # the rest of the window, then the next one
            kept, start_fetch = self.cache[start - self.start :], self.end
        else:
            start_fetch = start
        stop = min(self.size, max(end, start_fetch + self.blocksize * self.parallel))
        step = -(-(stop - start_fetch) // self.parallel)
        ranges = [(a, min(a + step, stop)) for a in range(start_fetch, stop, step)]
        self.total_requested_bytes += stop - start_fetch
        self.cache = b"".join([kept, *self.fetch_many(ranges)])
        self.start, self.end = start, stop
        return self.cache[: end - start]


if ParallelReadahead.name not in caches:
    register_cache(ParallelReadahead)
