"""``write_dataset``: xarray datasets written from dask in the order that is safe on a cluster.

The order: the client writes the template (all metadata, and the variables that are not dask
arrays), then every dask block of every variable is written by its own task into a region that
covers whole zarr chunks (or shards), then one final task, depending on every write, consolidates
the metadata exactly once. Blocks are checked against the chunk grid before anything is written
(``ChunkAlignmentError``) or rechunked on request.

Appending (``append_dim``) resizes the arrays once, on the client, before any task runs, and then
writes the new steps as an ordinary region write, so no two tasks ever resize or share a chunk.
It is also safe to repeat: a small record ``<group>/.swiftzarr/append-pending.json`` (the
project's bookkeeping directory, not a zarr node) says which region an append claimed; it is
written before the resize and removed by the final task. Re-running an interrupted append with
the same data finds the record and rewrites the same region (no duplicates, no gap); a different
append refuses to start (``AppendConflictError``). Appending steps whose labels are already the
dataset's last steps rewrites them in place, so re-running a finished append is harmless too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import warnings
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from swiftzarr_batch.errors import AppendConflictError, ChunkAlignmentError, ConfigurationError
from swiftzarr_batch.jobs.alignment import aligned_chunks, check_alignment
from swiftzarr_batch.jobs.dask_api import Delayed, TaskGraph, task
from swiftzarr_batch.jobs.runner import DEFAULT_RETRIES, JobResult, WriteJob

if TYPE_CHECKING:
    import xarray as xr
    from zarr.abc.store import Store

log = logging.getLogger(__name__)

__all__ = ["PENDING_APPEND_KEY", "write_dataset"]

PENDING_APPEND_KEY = ".swiftzarr/append-pending.json"
CLAIM_SETTLE_SECONDS = 1.0
_NOT_A_NODE = r"Object at \.swiftzarr is not recognized"


def write_dataset(
    ds: xr.Dataset,
    store: Store,
    *,
    path: str = "",
    mode: Literal["w", "a"] = "w",
    append_dim: Hashable | None = None,
    region: Mapping[Hashable, slice] | None = None,
    zarr_format: Literal[2, 3] | None = None,
    encoding: Mapping[Hashable, Mapping[str, Any]] | None = None,
    rechunk: bool = False,
    consolidated: bool = True,
    retries: int = DEFAULT_RETRIES,
    compute: bool = True,
    progress: bool = False,
    needs_seconds: float | None = None,
) -> JobResult | Delayed:
    """Write ``ds`` to the group ``path`` of ``store``: template first, then one task per block,
    then one task that consolidates.

    mode="w": replace the group. mode="a" with ``append_dim``: add steps along that dimension
    (every variable with it must be given; the others are left as stored). mode="a" with
    ``region`` (``{dim: slice}``): overwrite that region of existing variables. mode="a" alone:
    add or replace whole variables.

    ``consolidated``: consolidate the store's root (where xarray reads it) in the final task.
    ``zarr_format``/``encoding`` apply to new arrays (as in ``Dataset.to_zarr``); a variable's
    zarr chunks come from its encoding or, by default, its dask chunks. ``rechunk=True`` rechunks
    variables whose dask blocks straddle chunk (shard) edges instead of raising
    ``ChunkAlignmentError``. ``compute``, ``retries``, ``progress``: as in ``write_array``; with
    ``compute=False`` the metadata (and an append's resize) is written now and the returned
    ``Delayed`` writes the data and consolidates. ``needs_seconds``: as in ``write_array``.
    """
    job = WriteJob.start(
        store, retries=retries, compute=compute, progress=progress, needs_seconds=needs_seconds
    )
    if mode not in ("w", "a"):
        raise ConfigurationError(f"write_dataset: mode must be 'w' or 'a', got {mode!r}")
    if (append_dim is not None or region is not None) and mode != "a":
        raise ConfigurationError("write_dataset: append_dim and region need mode='a'")
    if append_dim is not None and region is not None:
        raise ConfigurationError("write_dataset: give append_dim or region, not both")
    if region is not None and not all(isinstance(s, slice) for s in region.values()):
        raise TypeError(f"region must map dimension names to slices, got {dict(region)!r}")
    path = path.strip("/")
    pending: str | None = None
    kwargs: dict[str, Any] = {}
    if mode == "w":
        ds = _align(ds, _new_units(ds, encoding), {}, rechunk)
        kwargs = {"mode": "w", "encoding": encoding, "zarr_format": zarr_format}
    elif append_dim is not None:
        ds, region, pending = _prepare_append(ds, store, path, append_dim, rechunk)
        kwargs = {"mode": "a", "region": region}
    else:
        arrays = dict(_open_group(store, path).arrays())
        units = _existing_units(ds, arrays)
        if region:
            _check_region_edges(ds, arrays, region, units)
        offsets = {d: s.start or 0 for d, s in (region or {}).items()}
        ds = _align(ds, units, offsets, rechunk)
        kwargs = {"mode": "a", "region": dict(region) if region else None}

    with job.annotations(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", _NOT_A_NODE)
        writes = ds.to_zarr(store, group=path or None, compute=False, consolidated=False, **kwargs)

        def finishing(written: Any) -> Delayed:
            return task(
                _finish_dataset, store, consolidated, pending, written, key=job.key("finish")
            )

        final = finishing(writes)
    parts = block_writes(writes) if job.on_cluster else []  # only a cluster needs them
    log.debug(
        "write_dataset %s (%s): %d tasks, %d block writes",
        path or "/",
        mode,
        len(final.__dask_graph__()),
        len(parts),
    )
    return job.finish(final, parts=parts, then=finishing, fetch=False)  # each returns None


STORE_TASK = "store-map-"  # the name dask.array.store gives its per-block write tasks
WRAPPER_TASK = "finalize-"  # dask's task that gathers a collection's blocks


def block_writes(writes: Delayed) -> list[Delayed]:
    """The per-block write tasks inside the graph ``Dataset.to_zarr(compute=False)`` returns,
    one ``Delayed`` each, so that ``WriteJob.finish`` can fetch each result as it finishes.

    Why: xarray returns one ``Delayed`` that depends on every block write; computed as one
    graph on a cluster, the finished writes' results stay in their workers' memory, and when a
    whole generation of workers leaves together (Slurm walltime, ``--lifetime``) the scheduler
    runs all of them again, so a job longer than one worker lifetime never ends.

    The graph is xarray's closing task over dask's ``finalize`` tasks over the ``store-map``
    tasks of ``dask.array.store`` (each writes one block and returns None). Anything else on
    the way down (another dask or xarray) and no task is picked: the job then runs as one
    graph, as before -- correct, only not proof against workers leaving together.
    """
    graph = TaskGraph(writes)
    found: set[Hashable] = set()
    todo = [graph.key]
    seen = {graph.key}
    while todo:
        key = todo.pop()
        name = key[0] if isinstance(key, tuple) else key
        if not isinstance(name, str):
            return []
        if name.startswith(STORE_TASK):
            found.add(key)
            continue
        if key != graph.key and not name.startswith(WRAPPER_TASK):
            log.debug("write_dataset: unexpected task %r in xarray's graph; one graph", name)
            return []
        for dependency in graph.dependencies(key) - seen:
            seen.add(dependency)
            todo.append(dependency)
    return graph.parts(sorted(found, key=str))


def _finish_dataset(store: Store, consolidated: bool, pending: str | None, _writes: Any) -> None:
    """The final task: after every write, drop the append record, then consolidate once.

    Consolidated metadata goes to the store's root, as ``Dataset.to_zarr`` does: that is where
    ``xr.open_zarr(store, group=path)`` (and ``zarr.open_consolidated(store)``) look for it.
    """
    if pending is not None:
        sync(store.delete(pending))
    if consolidated:
        zarr.consolidate_metadata(store)


# -- chunk grids ------------------------------------------------------------------------------
Units = dict[Hashable, tuple[tuple[int, ...], str]]


def _new_units(ds: xr.Dataset, encoding: Mapping[Hashable, Mapping[str, Any]] | None) -> Units:
    """Write unit (shard or chunk shape) of each dask variable's new array, as xarray picks it."""
    units: Units = {}
    for name, var in ds.variables.items():
        if var.chunks is None:
            continue
        enc = {**var.encoding, **((encoding or {}).get(name) or {})}
        if enc.get("shards"):
            units[name] = (tuple(enc["shards"]), "shard")
        elif enc.get("chunks") and not isinstance(enc["chunks"], str):
            units[name] = (tuple(enc["chunks"]), "chunk")
        else:
            units[name] = (tuple(max(1, c[0]) for c in var.chunks), "chunk")
    return units


def _existing_units(ds: xr.Dataset, arrays: Mapping[str, zarr.Array[Any]]) -> Units:
    """Write unit (shard or chunk shape) of each dask variable's stored array."""
    units: Units = {}
    for name, var in ds.variables.items():
        if var.chunks is None or str(name) not in arrays:
            continue
        arr = arrays[str(name)]
        shards = getattr(arr, "shards", None)
        units[name] = (tuple(shards), "shard") if shards else (tuple(arr.chunks), "chunk")
    return units


def _align(
    ds: xr.Dataset, units: Units, offsets: Mapping[Hashable, int], rechunk: bool
) -> xr.Dataset:
    """Check (or, with ``rechunk``, make) every dask variable's blocks line up with its grid."""
    replaced: dict[Hashable, Any] = {}
    for name, (unit, kind) in units.items():
        var = ds.variables[name]
        chunks = var.chunks
        if chunks is None:  # units are of dask variables only
            continue
        starts = [offsets.get(d, 0) for d in var.dims]
        if rechunk:
            target = tuple(
                aligned_chunks(c, u, o) for c, u, o in zip(chunks, unit, starts, strict=True)
            )
            if target != chunks:
                var = var.chunk(dict(zip(var.dims, target, strict=True)))
                replaced[name] = var
                chunks = target
        check_alignment(
            chunks,
            unit,
            what=f"variable {name!r}",
            offset=starts,
            dims=[str(d) for d in var.dims],
            unit_name=kind,
        )
    if not replaced:
        return ds
    coords = {k: v for k, v in replaced.items() if k in ds.coords}
    data = {k: v for k, v in replaced.items() if k not in ds.coords}
    return ds.assign_coords(coords).assign(data)


def _check_region_edges(
    ds: xr.Dataset,
    arrays: Mapping[str, zarr.Array[Any]],
    region: Mapping[Hashable, slice],
    units: Units,
) -> None:
    """A region must start and end on chunk (shard) edges (or at the array's end).

    Region writes are how independent jobs fill one dataset; a chunk shared with the next
    region would be read-modified-written by two jobs at once.
    """
    for name, (unit, kind) in units.items():
        var = ds.variables[name]
        shape = arrays[str(name)].shape
        for axis, dim in enumerate(var.dims):
            if dim not in region:
                continue
            sl, size = region[dim], unit[axis]
            start, stop = sl.start or 0, shape[axis] if sl.stop is None else sl.stop
            if start % size or (stop % size and stop != shape[axis]):
                raise ChunkAlignmentError(
                    f"variable {name!r}: region {dim}={start}:{stop} does not start and end on "
                    f"zarr {kind} edges (multiples of {size}, or the end {shape[axis]}); another "
                    "writer of the neighbouring region would share a chunk with this one"
                )


# -- appends ----------------------------------------------------------------------------------
def _open_group(store: Store, path: str) -> zarr.Group:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _NOT_A_NODE)
        return zarr.open_group(store, path=path or None, mode="r+", use_consolidated=False)


def _array_dims(arr: zarr.Array[Any]) -> tuple[str, ...]:
    """An array's dimension names: zarr 3 metadata, or xarray's attribute in zarr 2."""
    names = getattr(arr.metadata, "dimension_names", None)
    if names:
        return tuple(names)
    attr = arr.attrs.get("_ARRAY_DIMENSIONS", ())
    return tuple(str(d) for d in attr) if isinstance(attr, list | tuple) else ()


def _prepare_append(
    ds: xr.Dataset, store: Store, path: str, dim: Hashable, rechunk: bool
) -> tuple[xr.Dataset, dict[Hashable, slice], str]:
    """Claim the region for the new steps, resize once, and return what the region write needs.

    Everything that can refuse the append (variables, labels, alignment) is checked before the
    claim is written and the arrays are resized, so a refused append changes nothing.
    """
    where = f"the dataset at {store}/{path}".rstrip("/")
    if dim not in ds.dims:
        raise AppendConflictError(
            f"append_dim {dim!r} is not a dimension of the data to append "
            f"(dimensions: {list(ds.dims)})"
        )
    group = _open_group(store, path)
    arrays = dict(group.arrays())
    with_dim = {
        n: _array_dims(a).index(str(dim)) for n, a in arrays.items() if str(dim) in _array_dims(a)
    }
    if not with_dim:
        raise AppendConflictError(f"append_dim {dim!r} is not a dimension of {where}")
    given = {str(n) for n, v in ds.variables.items() if dim in v.dims}
    if given != set(with_dim):
        raise AppendConflictError(
            f"appending along {dim!r} to {where} must give exactly its variables with that "
            f"dimension; missing: {sorted(set(with_dim) - given)}, "
            f"not in the dataset: {sorted(given - set(with_dim))}"
        )
    steps = ds.sizes[dim]
    labels = np.asarray(ds[dim].values) if dim in ds.coords else None
    digest = _digest(dim, sorted(given), steps, labels)
    key = f"{path}/{PENDING_APPEND_KEY}" if path else PENDING_APPEND_KEY
    claim = _read_json(store, key)
    if claim is not None:
        if claim.get("digest") != digest:
            raise AppendConflictError(
                f"an earlier append to {where} ({claim.get('steps')} steps along "
                f"{claim.get('dim')!r} at index {claim.get('start')}, from "
                f"{claim.get('first')} to {claim.get('last')}) did not finish; re-run it with "
                f"the same data to finish it (or delete {key!r} to abandon it)"
            )
        start = int(claim["start"])
        log.info("finishing an interrupted append to %s at index %d", where, start)
    else:
        start = _append_start(store, path, dim, arrays, with_dim, labels, where)
    end = start + steps
    ds = ds.drop_vars([n for n, v in ds.variables.items() if dim not in v.dims])
    if dim in ds.indexes:  # region writes skip indexes; the new labels must be written too
        ds = ds.drop_indexes([dim])
    ds = _align(ds, _existing_units(ds, arrays), {dim: start}, rechunk)
    if claim is None:
        record = {
            "dim": str(dim),
            "start": start,
            "end": end,
            "steps": steps,
            "first": str(labels[0]) if labels is not None and steps else None,
            "last": str(labels[-1]) if labels is not None and steps else None,
            "digest": digest,
        }
        # Create-if-absent, then read back after a pause: Swift answers 201 to two
        # ``If-None-Match: *`` PUTs that are in flight together (the later one wins), so each
        # append waits for racing creates to land and proceeds only if the claim is its own.
        _create_json(store, key, record)
        time.sleep(CLAIM_SETTLE_SECONDS)
        won = _read_json(store, key)
        if won is None or won.get("digest") != digest or int(won["start"]) != start:
            raise AppendConflictError(
                f"another append to {where} started at the same time and holds {key!r}; "
                "re-run this one after it finished"
            )
    for name, axis in with_dim.items():
        arr = arrays[name]
        if arr.shape[axis] != end:
            arr.resize((*arr.shape[:axis], end, *arr.shape[axis + 1 :]))
    return ds, {dim: slice(start, end)}, key


def _append_start(
    store: Store,
    path: str,
    dim: Hashable,
    arrays: dict[str, zarr.Array[Any]],
    with_dim: dict[str, int],
    labels: np.ndarray | None,
    where: str,
) -> int:
    """Where new steps go: after the last step, or over the last steps if they are the same."""
    lengths = {arrays[n].shape[axis] for n, axis in with_dim.items()}
    if len(lengths) != 1:
        raise AppendConflictError(
            f"the arrays of {where} have different lengths along {dim!r} ({sorted(lengths)}) and "
            "no unfinished-append record says why; repair or rewrite the dataset"
        )
    (length,) = lengths
    if labels is None or str(dim) not in arrays or not len(labels):
        return length
    import xarray as xr

    others = [n for n in arrays if n != str(dim)]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", _NOT_A_NODE)
        stored = np.asarray(
            xr.open_zarr(store, group=path or None, consolidated=False, drop_variables=others)[
                dim
            ].values
        )
    hits = np.flatnonzero(stored == labels[0])
    if hits.size == 0:
        if np.isin(labels, stored).any():
            raise AppendConflictError(
                f"some of the {dim!r} labels to append are already in {where}: "
                f"{labels[np.isin(labels, stored)][:5]}"
            )
        return length
    first = int(hits[-1])
    overlap = length - first
    if (
        overlap <= len(labels)
        and np.array_equal(stored[first:], labels[:overlap])
        and not np.isin(labels[overlap:], stored).any()
    ):
        log.info(
            "%d of the steps to append are already the last steps of %s; rewriting them",
            overlap,
            where,
        )
        return first
    raise AppendConflictError(
        f"{dim!r} label {labels[0]} is already in {where} at index {first}, and the data to "
        "append does not continue from there; appending would duplicate steps"
    )


def _digest(dim: Hashable, names: list[str], steps: int, labels: np.ndarray | None) -> str:
    h = hashlib.sha256(json.dumps([str(dim), names, steps]).encode())
    if labels is not None:
        h.update(str(labels.dtype).encode())
        h.update(
            np.ascontiguousarray(labels).tobytes()
            if labels.dtype != object
            else repr(labels.tolist()).encode()
        )
    return h.hexdigest()


def _read_json(store: Store, key: str) -> dict[str, Any] | None:
    buf = sync(store.get(key, prototype=default_buffer_prototype()))
    return None if buf is None else json.loads(buf.to_bytes())


def _create_json(store: Store, key: str, value: dict[str, Any]) -> None:
    """Write ``key`` only if it does not exist yet (``If-None-Match: *`` on Swift)."""
    data = json.dumps(value, indent=1).encode()
    sync(store.set_if_not_exists(key, default_buffer_prototype().buffer.from_bytes(data)))
