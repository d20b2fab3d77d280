"""Parallel writes from dask: one task per chunk-aligned block, one final task that consolidates.

Why a helper and not just ``da.to_zarr``: a job on a cluster must (1) never let two tasks
read-modify-write the same zarr chunk or shard (the later write silently undoes the earlier),
(2) write consolidated metadata once, after *every* data write, or readers that trust it see a
stale hierarchy, (3) survive a failed task or a dead worker by re-running only that work, and
(4) say afterwards what it cost. So: metadata is written by the client before any task runs,
each block of the dask array becomes one task ``zarr_array[region] = block`` (blocks are checked
to line up with chunk/shard edges, or rechunked on request), and one ``finish`` task depends on
all of them. Writes are idempotent (a region always gets the same bytes), which is what makes
task retries and whole-job re-runs safe.

The store travels to workers in every task (a ``SwiftStore`` pickles as storage URL + token, so
the whole job authenticates once, on the client). ``JobResult.counters`` sums the request
counters of the client and every worker over the job (``transport.process_counters``).

Datasets (xarray) are in ``dask_datasets``; they share the alignment check and the runner here.
"""

from __future__ import annotations

import logging
import math
import os
import time
import uuid
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import dask
import numpy as np
import zarr
from dask.delayed import Delayed

from swiftzarr_batch.auth.chain import check_token_lifetime
from swiftzarr_batch.errors import ChunkAlignmentError, ConfigurationError
from swiftzarr_batch.swift.session import process_counters

if TYPE_CHECKING:
    import dask.array as da
    from distributed import Client
    from zarr.abc.store import Store

log = logging.getLogger(__name__)

__all__ = ["JobResult", "consolidate", "job_counters", "write_array"]

DEFAULT_RETRIES = 2
"""Task-level retries: on top of the store's request-level retries (``RetryPolicy``), a task that
still fails (or whose worker died) is run again this many times before the job fails."""


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
        if self.chunks is None or self.seconds <= 0:
            return None
        return self.chunks / self.seconds


# -- counters across processes ----------------------------------------------------------------
def _process_snapshot() -> tuple[int, dict[str, int]]:
    """This process's counters, keyed by pid (a worker may share the client's process)."""
    return os.getpid(), process_counters()


def _snapshots(client: Client | None) -> dict[int, dict[str, int]]:
    pid, counters = _process_snapshot()
    found = {pid: counters}
    if client is not None:  # a worker that can't answer (dying) is left out, not waited for
        for answer in client.run(_process_snapshot, on_error="ignore").values():
            wpid, wcounters = answer
            found[wpid] = wcounters
    return found


def _sum(values: Sequence[dict[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for counters in values:
        for name, value in counters.items():
            total[name] = total.get(name, 0) + value
    return total


def _delta(before: dict[int, dict[str, int]], after: dict[int, dict[str, int]]) -> dict[str, int]:
    """Per process ``after - before``; a process that is new (a restarted worker) counts fully."""
    return _sum(
        [
            {k: v - before.get(pid, {}).get(k, 0) for k, v in counters.items()}
            for pid, counters in after.items()
        ]
    )


def job_counters(client: Client | None = None) -> dict[str, int]:
    """Request counters of every SwiftStore in the client process and all workers, summed.

    Cumulative since each process started (a job's own numbers are in ``JobResult.counters``).
    ``client`` defaults to the current ``distributed`` client; without one, only this process.
    """
    client = client if client is not None else current_client()
    return _sum(list(_snapshots(client).values()))


# -- running a lazy job -----------------------------------------------------------------------
def current_client() -> Client | None:
    """The current ``distributed.Client``, or None (then dask's local scheduler is used)."""
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover - distributed is a dependency
        return None
    try:
        return default_client()
    except ValueError:
        return None


@dataclass
class JobClock:
    """Started when a helper starts (before it writes metadata), so a job's numbers include it."""

    client: Client | None
    before: dict[int, dict[str, int]]
    start: float

    @classmethod
    def start_now(cls) -> JobClock:
        client = current_client()
        return cls(client, _snapshots(client), time.perf_counter())


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

            show_progress(future)
        value = future.result()
    else:
        value = _compute_locally(lazy, retries=retries, progress=progress)
    seconds = time.perf_counter() - clock.start
    counters = _delta(clock.before, _snapshots(client))
    log.info("job of %d tasks finished in %.2f s: %s", tasks, seconds, counters)
    return JobResult(
        seconds=seconds,
        tasks=tasks,
        chunks=value if isinstance(value, int) else None,
        counters=counters,
    )


def _compute_locally(lazy: Delayed, *, retries: int, progress: bool) -> Any:
    from dask.diagnostics import ProgressBar

    for attempt in range(retries + 1):
        try:
            with ProgressBar() if progress else nullcontext():
                (value,) = dask.compute(lazy)
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


def finish_or_return(
    lazy: Delayed,
    *,
    compute: bool,
    retries: int,
    progress: bool,
    tasks: int,
    clock: JobClock | None = None,
) -> JobResult | Delayed:
    if not compute:
        return lazy
    return run_job(lazy, retries=retries, progress=progress, tasks=tasks, clock=clock)


def warn_if_token_expires_first(store: Store, needs_seconds: float | None) -> None:
    """The helpers' pre-flight check of a Swift store's token against the job's duration."""
    if needs_seconds is not None and hasattr(store, "_session"):
        check_token_lifetime(store, needs_seconds)


def job_token() -> str:
    """A fresh key suffix: write tasks have side effects, so two jobs must never share keys.

    It starts with a digit so dask's ``key_split`` (task groups in the dashboard and in
    ``distributed.progress``) shows ``swiftzarr-write``/``swiftzarr-finish``, not the token.
    """
    return f"0{uuid.uuid4().hex[:11]}"


# -- chunk alignment --------------------------------------------------------------------------
def check_alignment(
    block_chunks: Sequence[Sequence[int]],
    unit: Sequence[int],
    *,
    what: str,
    offset: Sequence[int] | None = None,
    dims: Sequence[str] | None = None,
    unit_name: str = "chunk",
) -> None:
    """Raise ``ChunkAlignmentError`` unless every zarr chunk/shard is written by one block only.

    ``block_chunks`` are dask's chunks, ``unit`` the zarr chunk (or shard) shape and ``offset``
    where the blocks start in the zarr array. Each inner block edge must fall on a multiple of
    the unit; the outer edges may not (one task owns a partial first or last chunk).
    """
    offset = offset or (0,) * len(unit)
    for axis, (sizes, size, start) in enumerate(zip(block_chunks, unit, offset, strict=True)):
        edge = start
        for i, block in enumerate(sizes[:-1]):
            edge += block
            if size and edge % size:
                name = f"dimension {dims[axis]!r}" if dims else f"axis {axis}"
                first = edge - edge % size
                raise ChunkAlignmentError(
                    f"{what}: dask blocks {i} and {i + 1} along {name} meet at index {edge}, "
                    f"inside zarr {unit_name} [{first}, {first + size}) of size {size}; both "
                    "tasks would read-modify-write that object and one could undo the other. "
                    f"Make dask chunks multiples of {size} (they are {_short(sizes)}), "
                    "or pass rechunk=True"
                )


def aligned_chunks(sizes: Sequence[int], unit: int, offset: int = 0) -> tuple[int, ...]:
    """Dask chunks covering ``sum(sizes)`` whose inner edges fall on multiples of ``unit``.

    Blocks keep roughly the size of the original ones (rounded to whole units, at least one).
    """
    total = int(sum(sizes))
    if total == 0 or unit <= 0:
        return tuple(sizes) or (0,)
    step = max(1, round(max(sizes) / unit)) * unit
    first = step - offset % unit if offset % unit else step
    out: list[int] = []
    left, current = total, first
    while left > 0:
        out.append(min(current, left))
        left -= out[-1]
        current = step
    return tuple(out)


def _short(sizes: Sequence[int]) -> str:
    shown = ", ".join(str(s) for s in sizes[:6])
    return f"({shown}{', ...' if len(sizes) > 6 else ''})"


# -- arrays -----------------------------------------------------------------------------------
def _write_block(target: zarr.Array, block: np.ndarray, region: tuple[slice, ...]) -> int:
    """One task: write one aligned block; returns how many zarr chunks it covered."""
    target[region] = block
    return (
        math.prod(
            -(-r.stop // c) - r.start // c for r, c in zip(region, target.chunks, strict=True)
        )
        if block.size
        else 0
    )


def _finish(store: Store, path: str, consolidated: bool, *written: int) -> int:
    """The final task: runs after every write; consolidates exactly once if asked."""
    if consolidated:
        zarr.consolidate_metadata(store, path=path or None)
    return int(sum(written))


def _consolidate(store: Store, path: str) -> int:
    zarr.consolidate_metadata(store, path=path or None)
    return 0


def _regions(chunks: Sequence[Sequence[int]]) -> list[tuple[slice, ...]]:
    """Regions of all blocks in C order (the order of ``darr.to_delayed().ravel()``)."""
    edges = [np.concatenate([[0], np.cumsum(c)]).astype(int) for c in chunks]
    return [
        tuple(slice(int(e[i]), int(e[i + 1])) for e, i in zip(edges, index, strict=True))
        for index in np.ndindex(*[len(c) for c in chunks])
    ]


def write_array(
    darr: da.Array,
    store: Store,
    path: str,
    *,
    zarr_format: Literal[2, 3] = 3,
    chunks: Sequence[int] | None = None,
    shards: Sequence[int] | None = None,
    compressors: Any = "auto",
    fill_value: Any = None,
    attributes: dict[str, Any] | None = None,
    dimension_names: Sequence[str] | None = None,
    mode: Literal["w", "w-"] = "w",
    rechunk: bool = False,
    consolidated: bool = False,
    retries: int = DEFAULT_RETRIES,
    compute: bool = True,
    progress: bool = False,
    needs_seconds: float | None = None,
) -> JobResult | Delayed:
    """Write a dask array as the zarr array ``path`` of ``store``, one task per aligned block.

    The array's metadata is written now, by the caller; the data by one task per dask block, each
    covering whole zarr chunks (or shards when ``shards`` is given) so no two tasks touch the same
    object. ``chunks`` defaults to dask's first block shape. Blocks that straddle a chunk/shard
    edge raise ``ChunkAlignmentError`` (before anything is written), unless ``rechunk=True``.

    ``mode="w"`` replaces whatever is at ``path``; ``"w-"`` refuses to. ``consolidated=True``
    consolidates the store's root group in a final task that runs after every write.

    ``compute=False`` returns the ``Delayed`` final task (compute it with ``client.compute``,
    ``dask.compute``, watch it with ``distributed.progress``); otherwise the job runs on the
    current ``distributed.Client`` (or dask's local scheduler) and a ``JobResult`` comes back.
    ``retries``: how often a failed task is re-run (see ``run_job``); ``progress``: show a
    progress bar while computing. ``needs_seconds``: how long the job may run; warns
    (``TokenLifetimeWarning``) before anything is written if the token expires sooner and nothing
    can renew it on the workers.
    """
    warn_if_token_expires_first(store, needs_seconds)
    if mode not in ("w", "w-"):
        raise ConfigurationError(f"write_array: mode must be 'w' or 'w-', got {mode!r}")
    if not hasattr(darr, "to_delayed") or not hasattr(darr, "chunks"):
        raise TypeError(f"write_array needs a dask array, got {type(darr).__name__}")
    path = path.strip("/")
    if consolidated and not path:
        raise ConfigurationError(
            "write_array: consolidated=True needs a path: an array at the "
            "store's root has no group to consolidate"
        )
    clock = JobClock.start_now() if compute else None
    chunk_shape = (
        tuple(int(c) for c in chunks) if chunks else tuple(max(1, c[0]) for c in darr.chunks)
    )
    unit, unit_name = (tuple(int(s) for s in shards), "shard") if shards else (chunk_shape, "chunk")
    if len(unit) != darr.ndim:
        raise ConfigurationError(
            f"write_array: {unit_name} shape {unit} does not match the array's {darr.ndim} dims"
        )
    if rechunk:
        darr = darr.rechunk(
            tuple(aligned_chunks(c, u) for c, u in zip(darr.chunks, unit, strict=True))
        )
    check_alignment(
        darr.chunks, unit, what=f"array {path!r}", dims=dimension_names, unit_name=unit_name
    )

    optional = {} if fill_value is None else {"fill_value": fill_value}  # else zarr's default
    target = zarr.create_array(
        store,
        name=path or None,
        shape=darr.shape,
        dtype=darr.dtype,
        chunks=chunk_shape,
        shards=tuple(shards) if shards else None,
        compressors=compressors,
        attributes=attributes,
        zarr_format=zarr_format,
        dimension_names=dimension_names if zarr_format == 3 else None,
        overwrite=mode == "w",
        **optional,
    )
    token = job_token()
    blocks = darr.to_delayed().ravel()
    regions = _regions(darr.chunks)
    with dask.annotate(retries=retries):
        writes = [
            dask.delayed(_write_block)(
                target, block, region, dask_key_name=(f"swiftzarr-write-{token}", i)
            )
            for i, (block, region) in enumerate(zip(blocks, regions, strict=True))
        ]
        final = dask.delayed(_finish)(
            store, "", consolidated, *writes, dask_key_name=f"swiftzarr-finish-{token}"
        )
    log.debug("write_array %s: %d block tasks + finish", path, len(writes))
    return finish_or_return(
        final,
        compute=compute,
        retries=retries,
        progress=progress,
        tasks=len(final.__dask_graph__()),
        clock=clock,
    )


def consolidate(
    store: Store,
    path: str = "",
    *,
    retries: int = DEFAULT_RETRIES,
    compute: bool = True,
    progress: bool = False,
) -> JobResult | Delayed:
    """Consolidate the metadata of the group at ``path``, for jobs that wrote without it.

    One task (lists the hierarchy, reads every node's metadata, writes ``.zmetadata`` for zarr
    format 2 or the root ``zarr.json``'s consolidated_metadata for format 3).
    """
    with dask.annotate(retries=retries):
        lazy = dask.delayed(_consolidate)(
            store, path.strip("/"), dask_key_name=f"swiftzarr-consolidate-{job_token()}"
        )
    return finish_or_return(lazy, compute=compute, retries=retries, progress=progress, tasks=1)
