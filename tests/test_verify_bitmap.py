"""verify_store's bounded-memory paths on the real local Swift: chunk bitmaps for every chunk key
encoding, sharded arrays, directory markers, bounded samples with complete counts, and
metadata documents the hierarchy walk does not read."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from swiftzarr_batch import SwiftStore
from swiftzarr_batch.store.hierarchy import parse_hierarchy
from swiftzarr_batch.transfer.chunk_presence import ChunkPresence
from swiftzarr_batch.transfer.verify import verify_store


def _swift(swift_server, container, prefix="ds") -> SwiftStore:
    return SwiftStore(
        container,
        prefix,
        authurl=swift_server.auth_url,
        user=swift_server.user,
        key=swift_server.key,
    )


def _array(store, zarr_format: int, separator: str, name: str = "a"):
    if zarr_format == 2:
        arr = zarr.create_array(
            store,
            name=name,
            shape=(6, 4),
            chunks=(2, 2),
            dtype="i4",
            zarr_format=2,
            chunk_key_encoding={"name": "v2", "separator": separator},
        )
    else:
        arr = zarr.create_array(
            store,
            name=name,
            shape=(6, 4),
            chunks=(2, 2),
            dtype="i4",
            chunk_key_encoding={"name": "default", "separator": separator},
        )
    arr[:] = np.arange(24, dtype="i4").reshape(6, 4) + 1
    return arr


@pytest.mark.parametrize(("zarr_format", "separator"), [(2, "."), (2, "/"), (3, "/"), (3, ".")])
def test_missing_chunk_and_orphan_found_for_each_key_encoding(
    swift_server, container_name, swift_conn, zarr_format, separator
):
    store = _swift(swift_server, container_name)
    zarr.group(store, zarr_format=zarr_format)
    _array(store, zarr_format, separator)
    prefix = "c" + separator if zarr_format == 3 else ""
    key = lambda i, j: f"a/{prefix}{i}{separator}{j}"  # noqa: E731
    swift_conn.delete_object(container_name, f"ds/{key(1, 1)}")
    swift_conn.put_object(container_name, f"ds/{key(3, 0)}", b"outside the 3 x 2 grid")
    swift_conn.put_object(container_name, f"ds/{key(0, '01')}", b"not a canonical index")
    swift_conn.put_object(container_name, "ds/a/", b"")  # a directory marker: not an orphan
    report = verify_store(store, check_content=False)
    (a,) = report.arrays
    assert (a.expected, a.present, a.missing, a.missing_count) == (6, 5, [key(1, 1)], 1)
    assert report.orphans == sorted([key(3, 0), key(0, "01")]) and report.orphan_count == 2
    assert not report.ok


def test_sharded_array_missing_shard_and_inner_chunk_key_is_orphan(
    swift_server, container_name, swift_conn
):
    store = _swift(swift_server, container_name)
    zarr.group(store)
    arr = zarr.create_array(
        store, name="sh", shape=(16, 16), chunks=(4, 4), shards=(8, 8), dtype="u1"
    )
    arr[:] = 1
    swift_conn.delete_object(container_name, "ds/sh/c/1/0")
    swift_conn.put_object(container_name, "ds/sh/c/2/0", b"a shard beyond the grid")
    report = verify_store(store, check_content=False)
    (sh,) = report.arrays
    assert (sh.expected, sh.present, sh.missing) == (4, 3, ["sh/c/1/0"])
    assert report.orphans == ["sh/c/2/0"]


def test_samples_are_bounded_counts_complete(swift_server, container_name, swift_conn):
    store = _swift(swift_server, container_name)
    zarr.group(store)
    arr = zarr.create_array(store, name="big", shape=(40,), chunks=(1,), dtype="u1")
    arr[:5] = 7  # 35 of 40 chunks never written
    for i in range(7):
        swift_conn.put_object(container_name, f"ds/stray/{i}", b"x")
    report = verify_store(store, check_content=False, sample=3)
    (big,) = report.arrays
    assert big.missing == ["big/c/5", "big/c/6", "big/c/7"] and big.missing_count == 35
    assert report.missing_chunks == 35
    assert report.orphans == ["stray/0", "stray/1", "stray/2"] and report.orphan_count == 7
    text = report.format(max_items=2)
    assert "(35):" in text and "... and 33 more" in text and "... and 5 more" in text
    assert report.as_dict()["orphan_count"] == 7


def test_node_inside_array_and_v2_attrs_are_read_from_the_listing(
    swift_server, container_name, swift_conn
):
    store = _swift(swift_server, container_name)
    zarr.group(store, zarr_format=2)
    _array(store, 2, ".")
    swift_conn.put_object(container_name, "ds/a/.zattrs", b"{broken")
    swift_conn.put_object(container_name, "ds/a/sub/.zgroup", b'{"zarr_format": 2}')
    report = verify_store(store, check_content=False)
    errors = sorted(e.split(":")[0] for e in report.metadata_errors)
    assert errors == ["a/.zattrs", "a/sub/.zgroup"]
    assert "inside array a" in " ".join(report.metadata_errors)
    assert report.orphan_count == 0 and report.arrays[0].missing_count == 0


def test_a_deep_hierarchy_is_walked_without_listing_array_chunks(swift_server, container_name):
    """Nested groups (v3) below the verified path, arrays at several depths."""
    store = _swift(swift_server, container_name)
    root = zarr.group(store)
    deep = root.create_group("x").create_group("y")
    for parent, name in ((root, "top"), (deep, "low")):
        arr = parent.create_array(name, shape=(4,), chunks=(2,), dtype="u1")
        arr[:] = 3
    report = verify_store(store)
    assert report.ok, report.format()
    assert sorted(a.path for a in report.arrays) == ["top", "x/y/low"]
    assert report.groups == 3 and report.objects_read == report.keys


def test_round_trip_of_every_chunk_of_a_grid():
    """The decoding is the encoder's inverse: every chunk of a ragged 3-D grid, both ways."""
    doc = zarr.create_array(
        zarr.storage.MemoryStore(), shape=(5, 3, 7), chunks=(2, 2, 3), dtype="u1"
    ).metadata.to_dict()
    import json

    spec = parse_hierarchy({"a/zarr.json": json.dumps(doc).encode()}).arrays["a"]
    presence = ChunkPresence(spec)
    keys = list(spec.chunk_keys())
    assert len(keys) == presence.expected == 3 * 2 * 3
    for i, key in enumerate(keys):
        assert presence.index(key[2:]) == i
    assert all(presence.record(k) for k in keys[::2])
    assert presence.missing_keys(100) == keys[1::2]
    assert not presence.record("a/c/3/0/0") and not presence.record("b/c/0/0/0")
