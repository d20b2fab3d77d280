"""What zarr itself stores, to compare Swift's objects with (shared by the dask tests)."""

from __future__ import annotations

import numpy as np
import zarr
from zarr.storage import MemoryStore


def swift_objects(conn, container: str, prefix: str = "") -> dict[str, bytes]:
    """Every object under ``prefix``, read with python-swiftclient (not our data path)."""
    _, listing = conn.get_container(container, prefix=prefix, full_listing=True)
    return {o["name"][len(prefix) :]: conn.get_object(container, o["name"])[1] for o in listing}


def reference_objects(data: np.ndarray, path: str, **create) -> dict[str, bytes]:
    """The objects zarr itself writes for ``data`` in one process (the expected result)."""
    stored: dict = {}
    z = zarr.create_array(
        MemoryStore(stored), name=path, shape=data.shape, dtype=data.dtype, **create
    )
    z[:] = data
    return {k: v.to_bytes() for k, v in stored.items()}


def raw_arrays(store) -> dict[str, tuple[str, tuple[int, ...], bytes]]:
    """dtype, shape and bytes of every array of a group as stored (before CF decoding)."""
    group = zarr.open_group(store, mode="r", use_consolidated=False)
    return {name: (str(a.dtype), a.shape, a[...].tobytes()) for name, a in group.arrays()}
