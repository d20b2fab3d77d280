"""Batches run as they are decided: ``BatchStream``, the streaming sibling of ``run_batches``.

Why: ``run_batches`` takes every batch up front, so its caller must first hold every key (a
million-object copy plan held a million names). A ``BatchStream`` takes batches one at a time
while the caller is still deciding the next ones (a copy plan merging two listings), keeps at
most ``window`` of them running, and hands each result to the caller's callback as it comes,
in the caller's thread. Memory is ``window`` batches, whatever the number of keys; listing and
copying overlap.

Each batch is one dask task, as in ``run_batches``: on the current ``distributed.Client``
(whose scheduler retries a task that fails or loses its worker), else on dask's synchronous
scheduler in one of ``window`` threads of this process (no task retries, as locally before).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from concurrent.futures import Future as LocalFuture
from types import TracebackType
from typing import Any, Self, cast

from swiftzarr_batch.jobs.dask_api import (
    DaskClient,
    Delayed,
    Future,
    compute_here,
    current_client,
    shared_node,
    task,
)
from swiftzarr_batch.jobs.runner import DEFAULT_RETRIES, Progress

__all__ = ["BatchStream"]

log = logging.getLogger(__name__)

OnResult = Callable[[Any], None]


class BatchStream:
    """Run ``func(batch, *shared)`` tasks as batches are submitted, ``window`` at a time.

    A context manager: leaving it waits for every submitted batch (``drain``); leaving it on
    an exception cancels what has not started. ``on_result`` callbacks run in the submitting
    thread, inside ``submit``/``drain``; they may record results but must not submit.
    The first task that raises stops the stream: its exception propagates from
    ``submit``/``drain``.
    """

    def __init__(self, *shared: Any, window: int | None = None) -> None:
        self.client: DaskClient | None = current_client()
        self.window = window or _default_window(self.client)
        self._shared = [shared_node(obj) for obj in shared]
        self._pool: ThreadPoolExecutor | None = None
        self._running: dict[Any, tuple[OnResult, Progress | None, Callable[[Any], tuple[int, int]]]]
        self._running = {}
        self.submitted = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc is None:
                self.drain()
        finally:
            self._cancel()

    def submit(
        self,
        func: Callable[..., Any],
        batch: Any,
        on_result: OnResult,
        *,
        progress: Progress | None = None,
        measure: Callable[[Any], tuple[int, int]] = lambda r: (0, 0),
    ) -> None:
        """Start ``func(batch, *shared)``, after waiting for a slot (handling the results that
        free it)."""
        while len(self._running) >= self.window:
            self._wait(all_of_them=False)
        lazy = task(func, batch, *self._shared, pure=False)
        future = self._start(lazy)
        self._running[future] = (on_result, progress, measure)
        self.submitted += 1

    @property
    def pending(self) -> int:
        """Batches submitted and not yet handled."""
        return len(self._running)

    def drain(self) -> None:
        """Wait for every running batch, handling each result."""
        while self._running:
            self._wait(all_of_them=True)

    # -- how ----------------------------------------------------------------------------------
    def _start(self, lazy: Delayed) -> Any:
        if self.client is not None:
            return self.client.compute(lazy, retries=DEFAULT_RETRIES)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.window, thread_name_prefix="swiftzarr-batch")
        return self._pool.submit(compute_here, lazy)

    def _wait(self, *, all_of_them: bool) -> None:
        futures = list(self._running)
        done: set[Any]
        if self.client is not None:
            from distributed import wait as wait_distributed

            when = "ALL_COMPLETED" if all_of_them else "FIRST_COMPLETED"
            done = _done(cast(Callable[..., Any], wait_distributed)(futures, return_when=when))
        else:
            done, _ = wait(futures, return_when="ALL_COMPLETED" if all_of_them else FIRST_COMPLETED)
        for future in [f for f in futures if f in done]:
            on_result, progress, measure = self._running.pop(future)
            result = future.result()  # raises the task's exception
            on_result(result)
            if progress is not None:
                progress.advance(*measure(result))

    def _cancel(self) -> None:
        if self._running and self.client is not None:
            self.client.cancel(list(self._running))
        for future in self._running:
            if isinstance(future, LocalFuture):
                future.cancel()
        self._running.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _done(result: Any) -> set[Future]:
    return set(result.done)


def _default_window(client: DaskClient | None) -> int:
    """Locally, as many batches as dask's threaded scheduler ran at once (one per CPU); on a
    cluster, twice its threads: every worker busy, the next batch already waiting there."""
    if client is None:
        return max(2, os.cpu_count() or 2)
    try:
        threads = sum(client.nthreads().values())
    except Exception:  # a client that cannot say: a modest window
        log.debug("could not ask the cluster for its threads", exc_info=True)
        threads = 4
    return 2 * max(2, threads)
