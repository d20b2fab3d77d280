"""Parallel writes of a dask array: one task per chunk-aligned block, one final task.

Why a helper and not just ``da.to_zarr``: a job on a cluster must (1) never let two tasks
read-modify-write the same zarr chunk or shard (the later write silently undoes the earlier),
(2) write consolidated metadata once, after *every* data write, or readers that trust it see a
stale hierarchy, (3) survive a failed task or a dead worker by re-running only that work, and
(4) say afterwards what it cost. So: metadata is written by the client before any task runs,
each block of the dask array becomes one task ``zarr_array[region] = block`` (blocks are checked
to line up with chunk/shard edges by ``jobs.alignment``, or rechunked on request), and one
``finish`` task depends on all of them. Writes are idempotent (a region always gets the same
bytes), which is what makes task retries and whole-job re-runs safe.

The store travels to workers in every task (a ``SwiftStore`` pickles as storage URL + token, so
the whole job authenticates once, on the client). Running the graph, retries and
``JobResult`` are ``jobs.runner``'s; ``JobResult.counters`` sums the request counters of the
client and every worker over the job (``jobs.counters``, from each process's
``swift.session.process_counters``).

Datasets (xarray) are in ``jobs.write_dataset``, which shares the alignment rule and the runner.
``JobResult``, ``job_counters``, ``check_alignment`` and ``aligned_chunks`` are re-exported here,
where they were first defined.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np
import numpy.typing as npt
import zarr

from swiftzarr_batch.errors import ConfigurationError
from swiftzarr_batch.jobs.alignment import aligned_chunks, check_alignment
from swiftzarr_batch.jobs.counters import job_counters
from swiftzarr_batch.jobs.dask_api import Delayed, task
from swiftzarr_batch.jobs.runner import DEFAULT_RETRIES, JobResult, WriteJob

if TYPE_CHECKING:
    import dask.array as da
    from zarr.abc.store import Store

log = logging.getLogger(__name__)

__all__ = [
    "JobResult",
    "aligned_chunks",
    "check_alignment",
    "consolidate",
    "job_counters",
    "write_array",
]


def _write_block(
    target: zarr.Array[Any], block: npt.NDArray[Any], region: tuple[slice, ...]
) -> int:
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
    """The final task: runs after every write; consolidates exactly once if asked.

    Returns the number of zarr chunks written (0 for ``consolidate``, which writes none).
    """
    if consolidated:
        zarr.consolidate_metadata(store, path=path or None)
    return int(sum(written))


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
    job = WriteJob.start(
        store, retries=retries, compute=compute, progress=progress, needs_seconds=needs_seconds
    )
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
    chunk_shape = (
        tuple(int(c) for c in chunks) if chunks else tuple(max(1, c[0]) for c in darr.chunks)
    )
    unit, unit_name = (tuple(int(s) for s in shards), "shard") if shards else (chunk_shape, "chunk")
    if len(unit) != darr.ndim:
        raise ConfigurationError(
            f"write_array: {unit_name} shape {unit} does not match the array's {darr.ndim} dims"
        )
    if rechunk:
        aligned = tuple(aligned_chunks(c, u) for c, u in zip(darr.chunks, unit, strict=True))
        darr = cast(Callable[[tuple[tuple[int, ...], ...]], "da.Array"], darr.rechunk)(aligned)
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
    blocks = cast(Callable[[], npt.NDArray[np.object_]], darr.to_delayed)().ravel()
    regions = _regions(darr.chunks)

    def finishing(written: Sequence[Any]) -> Delayed:
        return task(_finish, store, "", consolidated, *written, key=job.key("finish"))

    with job.annotations():
        writes = [
            task(_write_block, target, block, region, key=(job.key("write"), i))
            for i, (block, region) in enumerate(zip(blocks, regions, strict=True))
        ]
        final = finishing(writes)
    log.debug("write_array %s: %d block tasks + finish", path, len(writes))
    return job.finish(final, parts=writes, then=finishing)


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
    job = WriteJob.start(store, retries=retries, compute=compute, progress=progress)
    with job.annotations():
        lazy = task(_finish, store, path.strip("/"), True, key=job.key("consolidate"))
    return job.finish(lazy)
