"""File objects of the ``swift://`` file system: ``fs.open(path, "rb" | "wb" | "xb")``.

Reading: random access by ranged GETs through fsspec's caches (``cache_type``; the default,
``swift-readahead`` of ``fs_readahead``, fetches a window of 4 blocks of ``block_size`` as 4
ranged GETs at once).

Writing is all or nothing. The bytes are buffered a block at a time (``block_size``, default
``WRITE_BLOCK``); a file that never fills a block (and fits the cluster's ``max_file_size``)
is one PUT with its MD5 at ``close()``. A larger one becomes a Static Large Object: each full
block is sent as a segment as soon as it is complete (``PARALLEL_SEGMENTS`` at a time, so
memory stays at a few blocks whatever the file's size) and the manifest, written at
``close()``, makes the file appear. Until then nothing is visible under the path. When
something fails (a segment, the manifest, or an exception inside ``with fs.open(...)``), the
segments are deleted, nothing appears, and the error is raised (by ``close()`` / the ``with``).
``"xb"`` (exclusive create) checks at ``open()`` and writes with ``If-None-Match: *``, so a
file created meanwhile by someone else still wins: ``FileExistsError``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import deque
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from fsspec.spec import AbstractBufferedFile

from swiftzarr_batch.store.fs_paths import content_type_for
from swiftzarr_batch.store.fs_readahead import ParallelReadahead
from swiftzarr_batch.swift.capabilities import large_object_limits, limits
from swiftzarr_batch.swift.segmented_upload import SegmentedUpload

if TYPE_CHECKING:
    from swiftzarr_batch.store.filesystem import SwiftFileSystem
    from swiftzarr_batch.swift.container import SwiftContainer

__all__ = ["PARALLEL_SEGMENTS", "READ_BLOCK", "WRITE_BLOCK", "SwiftFile"]

log = logging.getLogger(__name__)

READ_BLOCK = 8 * 2**20  # one ranged GET of the readahead cache
WRITE_BLOCK = 32 * 2**20  # a file up to this size is one PUT; larger ones, segments of this
PARALLEL_SEGMENTS = 4  # segments in flight per file: memory ~ (1 + this) * block_size


class SwiftFile(AbstractBufferedFile):  # type: ignore[misc]  # fsspec has no type information
    """One open file (see the module docstring)."""

    def __init__(
        self,
        fs: SwiftFileSystem,
        path: str,
        mode: str = "rb",
        block_size: int | str | None = "default",
        **kwargs: Any,
    ) -> None:
        if block_size in ("default", None):
            block_size = READ_BLOCK if mode == "rb" else WRITE_BLOCK
        if mode == "rb" and kwargs.get("cache_type", ParallelReadahead.name) == (
            ParallelReadahead.name
        ):
            kwargs["cache_type"] = ParallelReadahead.name
            options = dict(kwargs.get("cache_options") or {})
            options.setdefault("fetch_many", self._fetch_ranges)
            kwargs["cache_options"] = options
        super().__init__(fs, path, mode, block_size, **kwargs)
        self._upload: SegmentedUpload | None = None
        self._in_flight: deque[Future[None]] = deque()
        self._md5 = hashlib.md5()
        self._segment_size = 0
        self._next_segment = 0
        self._failed = False

    # -- reading ----------------------------------------------------------------------------
    def _fetch_range(self, start: int, end: int) -> bytes:
        data: bytes = self.fs.cat_file(self.path, start=start, end=end)
        return data

    def _fetch_ranges(self, ranges: list[tuple[int, int]]) -> list[bytes]:
        """Several ranges at once (``fs_readahead``), each a ranged GET, all in flight."""
        paths = [self.path] * len(ranges)
        starts, ends = [a for a, _ in ranges], [b for _, b in ranges]
        parts: list[bytes] = self.fs.cat_ranges(paths, starts, ends, on_error="raise")
        return parts

    # -- writing ----------------------------------------------------------------------------
    def _run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.fs.loop).result()

    async def _container(self) -> tuple[SwiftContainer, str]:
        store, key = self.fs.split_path(self.path)
        return await store.swift_container(), store.object_name(key)

    def _initiate_upload(self) -> None:
        """Nothing to do yet: a file smaller than a block needs no large object."""

    def _upload_chunk(self, final: bool = False) -> bool:
        if self._failed:
            raise OSError(f"{self.path}: an earlier write failed; nothing was stored")
        data: memoryview = self.buffer.getbuffer()
        try:
            if self._upload is None and final:
                self._md5.update(data)
                self._run(self._put_whole(bytes(data)))
                return True
            if self._upload is None:
                self._upload = self._run(self._start_upload())
            self._send_segments(data, final)
            if final:
                self._drain()
                self._run(self._complete())
        except BaseException:
            self._failed = True
            self._abort()
            raise
        return True

    async def _put_whole(self, body: bytes) -> None:
        container, name = await self._container()
        limit = await large_object_limits(container.session, len(body))
        if limit is not None:
            upload = SegmentedUpload(container, name, limit)
            self._upload = upload
            await upload.start()
            size = limit.max_file_size
            for index, start in enumerate(range(0, len(body), size)):
                await upload.add(index, memoryview(body)[start : start + size])
            await self._complete()
            return
        headers = {"Content-Type": content_type_for(name)}
        if not await container.put(name, body, if_none_match=self._exclusive, headers=headers):
            raise FileExistsError(self.path)

    @property
    def _exclusive(self) -> bool:
        return bool(self.mode == "xb")

    async def _start_upload(self) -> SegmentedUpload:
        container, name = await self._container()
        limit = await limits(container.session)
        self._segment_size = min(self.blocksize, limit.max_file_size)
        upload = SegmentedUpload(container, name, limit)
        await upload.start()
        return upload

    def _send_segments(self, data: memoryview, final: bool) -> None:
        """Hand the buffer over as segments of ``_segment_size`` (the last may be short):
        views of the buffer, not copies (each view keeps its buffer alive while in flight),
        and the whole file's MD5 is updated while they are on their way."""
        assert self._upload is not None
        size = self._segment_size
        for start in range(0, len(data), size):
            while len(self._in_flight) >= PARALLEL_SEGMENTS:
                self._in_flight.popleft().result()  # bounded memory; raises a failure
            coro = self._upload.add(self._next_segment, data[start : start + size])
            self._in_flight.append(asyncio.run_coroutine_threadsafe(coro, self.fs.loop))
            self._next_segment += 1
        self._md5.update(data)

    def _drain(self) -> None:
        while self._in_flight:
            self._in_flight.popleft().result()

    async def _complete(self) -> None:
        assert self._upload is not None
        created = await self._upload.complete(
            self._md5.hexdigest(),
            content_type=content_type_for(self._upload.name),
            if_none_match=self._exclusive,
        )
        self._upload = None
        if not created:
            raise FileExistsError(self.path)

    def _abort(self) -> None:
        """Wait for the segments in flight, then delete every segment written."""
        for future in self._in_flight:
            try:
                future.result()
            except BaseException:  # the first failure is the one being raised
                pass
        self._in_flight.clear()
        upload, self._upload = self._upload, None
        if upload is not None:
            self._run(upload.abort())

    def discard(self) -> None:
        """Give the write up: nothing appears, the segments sent so far are deleted."""
        if self.writable():
            self._failed = True
            self._abort()
            self.closed = True

    def __exit__(self, exc_type: Any, *rest: Any) -> None:
        """An exception inside ``with fs.open(p, "wb")`` discards the file: half a file
        never appears under its name."""
        if exc_type is not None and self.writable():
            log.warning("%s: not written (%s inside its `with`)", self.path, exc_type.__name__)
            self.discard()
            return
        self.close()
