"""The MD5 of a large response body, computed while the body is still arriving.

Why: checking a GET against its ETag after the whole body arrived adds the hash's time (~10 ms
per 8 MiB) to every large read's latency, on top of the transfer. Hashing the bytes that have
already landed while the rest is on the wire overlaps the two: when the last byte arrives, only
the last piece is left to hash. The pieces are hashed in worker threads (``hashlib`` releases
the GIL for updates over 2 KiB), so the event loop keeps serving the other requests meanwhile.

How, cheaply: the connection calls ``progress`` after each socket read into the body buffer.
At most one hash job per body runs at a time (MD5 is sequential), started only once at least
``STEP`` new bytes wait, so an 8 MiB body costs a handful of thread hand-offs, not one per read;
a finished job is noticed by polling its future on the next read, which wakes nothing. The
buffer is never resized while a job reads it: the connection makes a digest only for a body
whose buffer was sized to its whole Content-Length up front.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["STEP", "BodyDigest"]

#: Bytes that must be waiting before a hash job is started (fewer hand-offs per body).
STEP = 1 << 20
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                workers = max(2, min(4, os.cpu_count() or 2))
                _executor = ThreadPoolExecutor(workers, thread_name_prefix="swiftzarr-md5")
    return _executor


def _after_fork_in_child() -> None:
    global _executor, _executor_lock
    _executor, _executor_lock = None, threading.Lock()  # the parent's threads are not here


os.register_at_fork(after_in_child=_after_fork_in_child)


class BodyDigest:
    """MD5 of ``view`` (a body buffer of known length) as it fills, see the module docstring."""

    __slots__ = ("_hashed", "_job", "_md5", "_view")

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._md5 = hashlib.md5()
        self._hashed = 0  # bytes handed to a job (done or running)
        self._job: Future[None] | None = None

    def progress(self, filled: int) -> None:
        """``filled`` bytes of the body have arrived: hash more of them if worth a job."""
        if filled - self._hashed < STEP or (self._job is not None and not self._job.done()):
            return
        piece, self._hashed = self._view[self._hashed : filled], filled
        self._job = _pool().submit(self._md5.update, piece)

    async def hexdigest(self) -> str:
        """The MD5 of the whole body (call once it has all arrived)."""
        if self._job is not None:
            await asyncio.wrap_future(self._job)  # raises if the update did (never expected)
        rest, self._hashed = self._view[self._hashed :], len(self._view)
        if rest.nbytes >= STEP // 4:
            await asyncio.wrap_future(_pool().submit(self._md5.update, rest))
        else:
            self._md5.update(rest)
        self._view = memoryview(b"")  # let the buffer go with the response, not with us
        return self._md5.hexdigest()
