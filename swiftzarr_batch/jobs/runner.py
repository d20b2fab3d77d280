"""Run batches of keys as dask tasks on whichever scheduler is active, reporting progress.

Copy and verify work on batches of a few hundred keys: each batch is one dask task that gets the
(picklable) stores and a list of keys, and returns a small result (counts, problems). Memory is
bounded by the batch and the per-task concurrency, never by the dataset. With a
``distributed.Client`` active the tasks run on its workers (progress via ``as_completed``);
otherwise on dask's local scheduler (progress via a scheduler callback).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

import dask

from swiftzarr_batch.jobs.clusters import ClusterConfig, open_cluster
from swiftzarr_batch.swift.session import process_counters

log = logging.getLogger(__name__)

R = TypeVar("R")
ProgressCallback = Callable[[str, int, int, int], None]
"""``callback(label, done, total, bytes_done)``, called from the submitting thread."""


class Progress:
    """Counts finished work and logs it at most every ``interval`` seconds (and at the end)."""

    def __init__(
        self,
        label: str,
        total: int,
        *,
        unit: str = "keys",
        interval: float = 5.0,
        callback: ProgressCallback | None = None,
    ) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.interval, self.callback = interval, callback
        self.done = 0
        self.bytes = 0
        self.started = time.monotonic()
        self._last_log = self.started

    def advance(self, count: int, nbytes: int = 0) -> None:
        self.done += count
        self.bytes += nbytes
        if self.callback is not None:
            self.callback(self.label, self.done, self.total, self.bytes)
        now = time.monotonic()
        if now - self._last_log >= self.interval:
            self._last_log = now
            self._log()

    def finish(self) -> None:
        if self.total:
            self._log()

    def _log(self) -> None:
        seconds = time.monotonic() - self.started
        pct = 100.0 * self.done / self.total if self.total else 100.0
        rate = self.bytes / seconds / 1e6 if seconds > 0 else 0.0
        log.info(
            "%s: %d/%d %s (%.0f%%), %s, %.1f s, %.1f MB/s",
            self.label,
            self.done,
            self.total,
            self.unit,
            pct,
            format_bytes(self.bytes),
            seconds,
            rate,
        )


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


def batched(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    return [items[i : i + size] for i in range(0, len(items), size)]


def active_client() -> Any:
    """The ``distributed.Client`` in use, or None (then dask's local scheduler runs tasks)."""
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def run_batches(
    func: Callable[..., R],
    batches: Sequence[Any],
    *shared: Any,
    progress: Progress | None = None,
    measure: Callable[[R], tuple[int, int]] = lambda r: (0, 0),
) -> list[R]:
    """Run ``func(batch, *shared)`` for every batch as dask tasks; results in completion order.

    ``measure(result) -> (units, bytes)`` feeds ``progress``. The first task that raises stops
    the run (pending tasks are cancelled) and its exception propagates.
    """
    if not batches:
        return []
    shared_nodes = [dask.delayed(obj, traverse=False) for obj in shared]
    fn = dask.delayed(func, pure=False)
    tasks = [fn(batch, *shared_nodes) for batch in batches]
    client = active_client()
    results: list[R] = []

    def record(result: R) -> None:
        results.append(result)
        if progress is not None:
            progress.advance(*measure(result))

    if client is not None:
        from distributed import as_completed

        futures = client.compute(tasks)
        try:
            for future in as_completed(futures):
                record(future.result())
        except BaseException:
            client.cancel(futures)
            raise
    else:
        from dask.callbacks import Callback

        wanted = {t.key for t in tasks}

        def posttask(key: Any, result: Any, *_: Any) -> None:
            if key in wanted:
                record(result)

        with Callback(posttask=posttask):
            dask.compute(*tasks)
    if progress is not None:
        progress.finish()
    return results


def _pid_counters() -> tuple[int, dict[str, int]]:
    return os.getpid(), process_counters()


def cluster_counters() -> dict[str, int]:
    """Transport counters summed over this process and every dask worker process (once each).

    Two snapshots taken around an operation give what it cost: requests, bytes both ways,
    retries, re-authentications, errors, auth calls.
    """
    per_pid = dict([_pid_counters()])
    client = active_client()
    if client is not None:
        try:
            for pid, counters in client.run(_pid_counters).values():
                per_pid[pid] = counters
        except Exception as exc:
            log.debug("could not collect worker counters: %s", type(exc).__name__)
    total: dict[str, int] = {}
    for counters in per_pid.values():
        for name, value in counters.items():
            total[name] = total.get(name, 0) + value
    return total


def counters_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in after}


@contextmanager
def dask_context(
    workers: int | None = None,
    scheduler: str | None = None,
    *,
    cluster: ClusterConfig | None = None,
    stores: Sequence[Any] = (),
) -> Iterator[Any]:
    """Where tasks run for a command: a scheduler address, N local worker processes, or (by
    default) dask's threads in this process. Yields the ``distributed.Client`` or None.

    ``cluster`` (see ``jobs.clusters``: scheduler file, Slurm, ...) replaces both, and first
    checks the ``stores``' tokens against its walltime. Local workers listen on 127.0.0.1 only,
    with no dashboard.
    """
    if cluster is not None and cluster.kind != "threads":
        if scheduler or workers:
            raise ValueError("give a cluster or a scheduler/number of workers, not both")
        with open_cluster(cluster, stores) as client:
            yield client
        return
    if scheduler and workers:
        raise ValueError("give either a scheduler address or a number of workers, not both")
    if not scheduler and not workers:
        yield None
        return
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=2,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client
