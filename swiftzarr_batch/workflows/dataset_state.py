"""The committed state of an ingested dataset, and bringing the dataset back to it.

The record ``<dataset>/.swiftzarr/ingest.json`` is the commit point: it lists the input files
ingested so far and the dataset's length along the append dimension they add up to. It is
written only after an append has completely finished. xarray's append first grows every array
and then writes the chunks, so a crash leaves arrays longer than the record (with missing or
partial data at the end); ``roll_back`` shrinks them to the recorded length (deleting the chunks
beyond), and the next run appends those files again. Data inside the recorded length is never
touched by an append except the last, partly filled chunk, which is rewritten whole.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import zarr
from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from swiftzarr_batch.errors import ConfigurationError
from swiftzarr_batch.store.keys import BOOKKEEPING_DIR, ZARR_JSON, ZGROUP, is_bookkeeping_key
from swiftzarr_batch.transfer.objects import delete_keys, list_objects

log = logging.getLogger(__name__)

RECORD_KEY = f"{BOOKKEEPING_DIR}/ingest.json"
PROTO = default_buffer_prototype()


@contextmanager
def quiet_about_bookkeeping() -> Iterator[None]:
    """zarr warns that ``.swiftzarr/`` is no zarr node whenever it lists the dataset's root;
    that is by design, so the warning is dropped (others are kept)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=f"Object at {BOOKKEEPING_DIR} is not")
        yield


def read_record(store: Store) -> dict[str, Any] | None:
    """The dataset's ingest record (the committed state), or None before the first commit.

    The record comes from the network: one that is not a JSON object with the fields ingest
    relies on is a ``ConfigurationError`` naming the key, never a stray decoding error."""
    buf = sync(store.get(RECORD_KEY, PROTO))
    if buf is None:
        return None
    try:
        record = json.loads(buf.to_bytes())
    except ValueError as exc:
        raise ConfigurationError(f"the ingest record {RECORD_KEY} is not JSON: {exc}") from None
    if not isinstance(record, dict) or not isinstance(record.get("files", []), list):
        raise ConfigurationError(
            f"the ingest record {RECORD_KEY} is not an object with a 'files' list; remove or "
            "repair it by hand if no ingest is running"
        )
    return record


def write_record(store: Store, record: dict[str, Any]) -> None:
    """Write the ingest record, the commit point: only once an append has completely finished (or,
    empty, before the dataset is created, so that an interrupted creation is recognised)."""
    sync(store.set(RECORD_KEY, PROTO.buffer.from_bytes(json.dumps(record, indent=1).encode())))


def new_record(append_dim: str) -> dict[str, Any]:
    """The record of a dataset with nothing ingested yet along ``append_dim``."""
    return {"version": 1, "append_dim": append_dim, "length": 0, "files": []}


def dataset_exists(store: Store) -> bool:
    """Whether a zarr node (v3 ``zarr.json`` or v2 ``.zgroup``) is at the store's root: with the
    ingest record, it tells a first run from an interrupted creation or a dataset ingest did not
    make."""
    return bool(sync(store.exists(ZARR_JSON)) or sync(store.exists(ZGROUP)))


def array_dims(array: zarr.Array[Any]) -> tuple[str, ...] | None:
    """An array's dimension names (zarr 3 metadata, or xarray's v2 ``_ARRAY_DIMENSIONS``)."""
    names = getattr(array.metadata, "dimension_names", None)
    if names:
        return tuple(names)
    dims = array.attrs.get("_ARRAY_DIMENSIONS")
    return tuple(str(d) for d in dims) if isinstance(dims, list) and dims else None


def lengths_along(
    store: Store,
    dim: str,
    *,
    writable: bool = False,
) -> dict[str, tuple[zarr.Array[Any], int]]:
    """Every array that has ``dim``: path -> (array, axis of dim). Ignores consolidated metadata,
    which may be stale after a crash."""
    group = zarr.open_group(store, mode="r+" if writable else "r", use_consolidated=False)
    found = {}
    with quiet_about_bookkeeping():
        members = group.members(max_depth=None, use_consolidated_for_children=False)
    for path, node in members:
        if isinstance(node, zarr.Array):
            dims = array_dims(node)
            if dims and dim in dims:
                found[path] = (node, dims.index(dim))
    return found


def roll_back(store: Store, dim: str, length: int) -> list[str]:
    """Shrink every array longer than ``length`` along ``dim`` back to it; returns their paths."""
    changed = []
    for path, (array, axis) in sorted(lengths_along(store, dim, writable=True).items()):
        if array.shape[axis] > length:
            shape = list(array.shape)
            shape[axis] = length
            log.warning(
                "rolling back %s from %d to %d along %s (an interrupted append)",
                path,
                array.shape[axis],
                length,
                dim,
            )
            array.resize(tuple(shape))
            changed.append(path)
        elif array.shape[axis] < length:
            raise RuntimeError(
                f"array {path} has {array.shape[axis]} entries along {dim} but the ingest record"
                f" says {length}: the dataset was changed outside ingest; repair it or start a "
                "new dataset"
            )
    return changed


def clear_dataset(store: Store) -> int:
    """Delete every key of a half-created dataset except swiftzarr's own bookkeeping."""

    async def keys() -> list[tuple[str, bool]]:
        return [
            (i.key, i.large) async for i in list_objects(store) if not is_bookkeeping_key(i.key)
        ]

    found = sync(keys())
    sync(delete_keys(store, [k for k, _ in found], large=[k for k, large in found if large]))
    return len(found)
