"""The one runner of the package's dask work: where it runs, how it is retried, what it cost.

Two shapes of work go through it:

- Batches of keys (copy, verify): ``run_batches`` makes each batch of a few hundred keys one
  dask task that gets the (picklable) stores and a list of keys and returns a small result
  (counts, problems), so memory is bounded by the batch and the per-task concurrency, never by
  the dataset. ``Progress`` (``jobs.progress``: a bar or log lines) advances as batches finish.
- Lazy graphs (``write_array``, ``write_dataset``, ``consolidate``): a ``WriteJob`` carries one
  job from its pre-flight token check to its result; ``run_job`` computes the graph's final
  task and returns a ``JobResult``, or the graph is handed back when the caller asked for
  ``compute=False``.

With a ``distributed.Client`` active (``current_client``, from ``jobs.dask_api``;
``dask_context`` opens one for a command) the tasks run on its workers and the scheduler
retries a failed task (or one whose worker died); otherwise they run on dask's local
scheduler, which has no task retries, so a failed job is re-run whole. Both are safe because
every task's writes are idempotent. What a job cost (requests, bytes, retries, auth calls)
comes from the one counters collector, ``jobs.counters``, over the client and every worker.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from dask.base import annotate
from zarr.abc.store import Store

from swiftzarr_batch.auth import check_token_lifetime
from swiftzarr_batch.jobs.clusters import ClusterConfig, open_cluster
from swiftzarr_batch.jobs.counters import Snapshot, counters_delta, snapshot
from swiftzarr_batch.jobs.dask_api import (
    DaskClient,
    Delayed,
    Future,
    compute,
    current_client,
    shared_node,
    task,
)
from swiftzarr_batch.jobs.progress import Progress, ProgressCallback, format_bytes
from swiftzarr_batch.store.swift_store import SwiftStore

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_RETRIES",
    "JobClock",
    "JobResult",
    "Progress",
    "ProgressCallback",
    "WriteJob",
    "batched",
    "current_client",
    "dask_context",
    "format_bytes",
    "gather_as_done",
    "job_token",
    "run_batches",
    "run_job",
    "warn_if_token_expires_first",
]

R = TypeVar("R")

DEFAULT_RETRIES = 2
"""Task-level retries: on top of the store's request-level retries (``RetryPolicy``), a task that
still fails (or whose worker died) is run again this many times before the job fails."""


# -- batches of keys --------------------------------------------------------------------------
def batched(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    """``items`` cut into consecutive slices of ``size`` (the last may be shorter): one dask task
    per batch. A size below 1 is a ValueError."""
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    return [items[i : i + size] for i in range(0, len(items), size)]


def run_batches(
    func: Callable[..., R],
    batches: Sequence[Any],
    *shared: Any,
    progress: Progress | None = None,
    measure: Callable[[R], tuple[int, int]] = lambda r: (0, 0),
) -> list[R]:
    """Run ``func(batch, *shared)`` for every batch as dask tasks; results in completion order.

    ``shared`` objects (stores, options) are one graph node each, sent to a worker once, not
    with every batch. ``measure(result) -> (units, bytes)`` feeds ``progress``. The first task
    that raises stops the run (pending tasks are cancelled) and its exception propagates.
    """
    if not batches:
        return []
    shared_nodes = [shared_node(obj) for obj in shared]
    tasks = [task(func, batch, *shared_nodes, pure=False) for batch in batches]
    client = current_client()
    results: list[R] = []

    def record(result: R) -> None:
        results.append(result)
        if progress is not None:
            progress.advance(*measure(result))

    if client is not None:
        from distributed import as_completed

        futures = client.compute(tasks)
        try:
            for future in cast(Callable[[list[Future]], Iterator[Future]], as_completed)(futures):
                record(future.result())
                future.release()  # done and recorded: never re-run if its worker leaves
        except BaseException:
            client.cancel(futures)
            raise
    else:
        from dask.callbacks import Callback

        wanted = {t.key for t in tasks}

        def posttask(key: Any, result: Any, *_: Any) -> None:
            if key in wanted:
                record(result)

        on_task_done = cast(Callable[..., AbstractContextManager[object]], Callback)
        with on_task_done(posttask=posttask):
            compute(*tasks)
    if progress is not None:
        progress.finish()
    return results


@contextmanager
def dask_context(
    workers: int | None = None,
    scheduler: str | None = None,
    *,
    cluster: ClusterConfig | None = None,
    stores: Sequence[Any] = (),
) -> Iterator[DaskClient | None]:
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

    open_client = cast(Callable[[object], AbstractContextManager[DaskClient]], Client)
    if scheduler:
        with open_client(scheduler) as client:
            yield client
        return
    local_cluster = cast(Callable[..., AbstractContextManager[object]], LocalCluster)
    with (
        local_cluster(
            n_workers=workers,
            threads_per_worker=2,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as local,
        open_client(local) as client,
    ):
        yield client


# -- lazy graphs ------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobResult:
    """What a computed job did: wall time, tasks, zarr chunks written, and request counters.

    ``counters`` are summed over the client and every worker process for the duration of the job
    (requests, bytes_sent, bytes_received, retries, reauths, errors, auth_calls). The numbers of
    a worker that died during the job are lost with it.
    """

    seconds: float
    tasks: int
    chunks: int | None
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def chunks_per_second(self) -> float | None:
        """Chunks written per wall-clock second, or None when the job did not count chunks (or took
        no time)."""
        if self.chunks is None or self.seconds <= 0:
            return None
        return self.chunks / self.seconds


@dataclass
class JobClock:
    """Started when a helper starts (before it writes metadata), so a job's numbers include it."""

    client: DaskClient | None
    before: Snapshot
    start: float

    @classmethod
    def start_now(cls) -> JobClock:
        """Start a job's clock: the current client (None: dask's local scheduler), a snapshot of the
        request counters to subtract at the end, and the time."""
        client = current_client()
        return cls(client, snapshot(client), time.perf_counter())


def run_job(
    lazy: Delayed,
    *,
    retries: int,
    progress: bool,
    tasks: int,
    clock: JobClock | None = None,
) -> JobResult:
    """Compute ``lazy`` on the current client (task retries by the scheduler) or locally.

    The local scheduler has no task retries; there a failed job is re-run whole, up to
    ``retries`` more times (the writes are idempotent, so a re-run converges to the same data).
    """
    clock = clock or JobClock.start_now()
    client = clock.client
    if client is not None:
        future = client.compute(lazy, retries=retries)
        if progress:
            from distributed import progress as show_progress

            cast(Callable[[Future], None], show_progress)(future)
        value = future.result()
    else:
        value = _compute_locally(lazy, retries=retries, progress=progress)
    seconds = time.perf_counter() - clock.start
    counters = counters_delta(clock.before, snapshot(client))
    log.info("job of %d tasks finished in %.2f s: %s", tasks, seconds, counters)
    return JobResult(
        seconds=seconds,
        tasks=tasks,
        chunks=value if isinstance(value, int) else None,
        counters=counters,
    )


def gather_as_done(
    client: DaskClient,
    parts: Sequence[Delayed],
    *,
    retries: int,
    progress: bool,
    fetch: bool = True,
) -> list[Any]:
    """The values of ``parts`` (in order), each fetched as soon as its task is done, after
    which the cluster forgets that task. ``fetch=False``: the values are not needed (None
    each); a task's error is still raised, and a round trip per task is saved.

    Why: a task's result lives only in its worker's memory. Workers that reach their lifetime
    (Slurm walltime) move their results to a peer, but when every worker of a generation leaves
    before a replacement has started (jobs submitted together end together), those results are
    lost and the scheduler re-runs every finished task that a pending one still needs -- with
    one final task depending on all writes, the whole job starts over each generation and a
    job longer than one generation never ends. Fetched and released, finished work stays done.
    """
    from distributed import as_completed

    futures = client.compute(list(parts), retries=retries)
    index = {future.key: i for i, future in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    counter = Progress("write tasks", len(futures), unit="tasks") if progress else None
    try:
        for future in cast(Callable[[list[Future]], Iterator[Future]], as_completed)(futures):
            if fetch or future.status != "finished":
                results[index[future.key]] = future.result()  # raises a task's error
            future.release()
            if counter is not None:
                counter.advance(1)
    except BaseException:
        client.cancel(futures)
        raise
    if counter is not None:
        counter.finish()
    return results


def _compute_locally(lazy: Delayed, *, retries: int, progress: bool) -> Any:
    from dask.diagnostics.progress import ProgressBar

    progress_bar = cast(Callable[[], AbstractContextManager[object]], ProgressBar)
    for attempt in range(retries + 1):
        try:
            with progress_bar() if progress else nullcontext():
                (value,) = compute(lazy)
            return value
        except Exception as exc:
            if attempt == retries:
                raise
            log.warning(
                "local job failed (%s: %s); re-running it (%d of %d)",
                type(exc).__name__,
                exc,
                attempt + 1,
                retries,
            )
    raise AssertionError("unreachable")  # pragma: no cover


def warn_if_token_expires_first(store: Store, needs_seconds: float | None) -> None:
    """The helpers' pre-flight check of a Swift store's token against the job's duration.

    Other stores have no token to expire.
    """
    if needs_seconds is not None and isinstance(store, SwiftStore):
        check_token_lifetime(store, needs_seconds)


def job_token() -> str:
    """A fresh key suffix: write tasks have side effects, so two jobs must never share keys.

    It starts with a digit so dask's ``key_split`` (task groups in the dashboard and in
    ``distributed.progress``) shows ``swiftzarr-write``/``swiftzarr-finish``, not the token.
    """
    return f"0{uuid.uuid4().hex[:11]}"


@dataclass(frozen=True)
class WriteJob:
    """One write job, from its pre-flight check to its result: what ``write_array``,
    ``write_dataset`` and ``consolidate`` share.

    ``start`` checks the token against the job's expected duration and, when the job is to be
    computed, starts its clock before any metadata is written (so the job's numbers include
    it). Tasks are built under ``annotations()`` (the scheduler's task retries) with keys from
    ``key()`` (unique to this job); ``finish(final)`` computes the graph ending in ``final`` or,
    with ``compute=False``, returns it for the caller to run.
    """

    retries: int
    compute: bool
    progress: bool
    clock: JobClock | None
    token: str = field(default_factory=job_token)

    @classmethod
    def start(
        cls,
        store: Store,
        *,
        retries: int,
        compute: bool,
        progress: bool,
        needs_seconds: float | None = None,
    ) -> WriteJob:
        """Check the store's token against ``needs_seconds`` (warns if it expires first) and, when
        the job is to be computed, start its clock; call it before any metadata is written."""
        warn_if_token_expires_first(store, needs_seconds)
        return cls(retries, compute, progress, JobClock.start_now() if compute else None)

    @property
    def on_cluster(self) -> bool:
        """Whether ``finish`` will run the job on a ``distributed.Client`` (parts fetched as
        they finish) rather than return it or run it on dask's local scheduler."""
        return self.compute and self.clock is not None and self.clock.client is not None

    def key(self, name: str) -> str:
        """A task key ``swiftzarr-<name>-<token>``, grouped by ``name`` in dask's displays."""
        return f"swiftzarr-{name}-{self.token}"

    def annotations(self) -> AbstractContextManager[None]:
        """Build the job's tasks in this context: each carries the job's task retries."""
        return annotate(retries=self.retries)

    def finish(
        self,
        final: Delayed,
        *,
        parts: Sequence[Delayed] = (),
        then: Callable[[list[Any]], Delayed] | None = None,
        fetch: bool = True,
    ) -> JobResult | Delayed:
        """``run_job`` on the graph ending in ``final``, or ``final`` itself if not computing.

        ``final == then(parts)``: on a cluster the ``parts`` (the write tasks) are computed
        first and their values fetched as they finish (``gather_as_done``), then ``then``
        builds the final task from those values, so workers leaving mid-job lose only the
        tasks they were running. ``fetch=False`` when ``then`` needs no values (all None).
        """
        if not self.compute:
            return final
        tasks = len(final.__dask_graph__())
        client = self.clock.client if self.clock is not None else None
        if client is not None and self.on_cluster and parts and then is not None:
            values = gather_as_done(
                client, parts, retries=self.retries, progress=self.progress, fetch=fetch
            )
            with self.annotations():
                final = then(values)
        return run_job(
            final, retries=self.retries, progress=self.progress, tasks=tasks, clock=self.clock
        )
