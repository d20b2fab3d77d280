"""verify_store on the real Swift server: missing chunks, corrupt objects, orphans, staleness."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore

from swiftzarr_batch import SwiftStore
from swiftzarr_batch.transfer.verify import verify_store

PROTO = default_buffer_prototype()


def _swift(swift_server, container, prefix="") -> SwiftStore:
    return SwiftStore(
        container,
        prefix,
        authurl=swift_server.auth_url,
        user=swift_server.user,
        key=swift_server.key,
    )


def build(store, zarr_format: int) -> dict[str, int]:
    """Arrays in nested groups, every chunk written; returns path -> number of chunks."""
    rng = np.random.default_rng(1)
    root = zarr.group(store, zarr_format=zarr_format)
    a = root.create_array("a", shape=(30, 20), chunks=(10, 10), dtype="f8")
    a[:] = rng.random((30, 20))
    b = root.create_group("g").create_array("b", shape=(9,), chunks=(4,), dtype="i2")
    b[:] = rng.integers(1, 100, 9)
    s = root.create_array("s", shape=(), dtype="f4")
    s[...] = 3.5
    zarr.consolidate_metadata(store)
    return {"a": 6, "g/b": 3, "s": 1}


def object_data_file(swift_server, container: str, name: str):
    want = f"/AUTH_test/{container}/{name}".encode()
    for path in (swift_server.data_dir / "srv").rglob("*.data"):
        raw = b"".join(
            os.getxattr(path, a)
            for a in sorted(os.listxattr(path))
            if a.startswith("user.swift.metadata")
        )
        if want in raw:
            return path
    raise AssertionError(f"no data file for {container}/{name}")


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_intact_hierarchy_verifies(swift_server, container_name, zarr_format):
    store = _swift(swift_server, container_name, "ds")
    chunks = build(store, zarr_format)
    report = verify_store(store)
    assert report.ok, report.format()
    assert {a.path: (a.expected, a.present) for a in report.arrays} == {
        p: (n, n) for p, n in chunks.items()
    }
    assert report.content_checked and report.objects_read == report.keys > sum(chunks.values())
    assert report.groups == 2 and report.missing_chunks == 0
    assert json.loads(json.dumps(report.as_dict()))["ok"] is True


def test_deleted_chunk_corrupt_object_orphan_and_stale_consolidation(
    swift_server, container_name, swift_conn
):
    store = _swift(swift_server, container_name, "ds")
    build(store, 3)
    swift_conn.delete_object(container_name, "ds/a/c/1/1")
    swift_conn.put_object(container_name, "ds/g/stray.bin", b"left over")
    swift_conn.put_object(container_name, "ds/a/c/9/9", b"beyond the grid")
    data_file = object_data_file(swift_server, container_name, "ds/g/b/c/2")
    body = data_file.read_bytes()
    data_file.write_bytes(bytes(b ^ 0x55 for b in body))  # same size, other bytes
    zarr.open_array(store, path="g/b").resize((13,))  # now 4 chunks; consolidation is stale

    report = verify_store(store)
    assert not report.ok
    by_path = {a.path: a for a in report.arrays}
    assert by_path["a"].missing == ["a/c/1/1"] and by_path["a"].present == 5
    assert by_path["g/b"].missing == ["g/b/c/3"]  # the resize added a chunk never written
    assert [c.split(":")[0] for c in report.corrupt] == ["g/b/c/2"]
    assert "ETag" in report.corrupt[0]
    assert report.orphans == ["a/c/9/9", "g/stray.bin"]
    assert report.stale_consolidated == [
        "g/b: consolidated metadata says shape (9,), the array has (13,)"
    ]
    text = report.format()
    assert "CORRUPT" in text and "a/c/1/1" in text and "PROBLEMS FOUND" in text
    assert "reading as fill_value 0" in text


def test_absent_fill_value_chunks_are_reported_apart_and_can_be_accepted(
    swift_server, container_name
):
    store = _swift(swift_server, container_name)
    arr = zarr.create_array(
        store,
        name="sparse",
        shape=(40,),
        chunks=(10,),
        dtype="f4",
        fill_value=np.nan,
        config={"write_empty_chunks": False},
    )
    arr[:] = np.nan
    arr[12:15] = 1.0  # only chunk 1 holds data; zarr does not write the all-NaN chunks
    strict = verify_store(store)
    assert not strict.ok and strict.missing_chunks == 3 and not strict.corrupt
    assert "reading as fill_value nan" in strict.format()
    lenient = verify_store(store, allow_missing=True)
    assert lenient.ok and lenient.missing_chunks == 3
    assert "accepted" in lenient.format()


def test_unparseable_metadata_is_reported_and_the_rest_still_checked(
    swift_server, container_name, swift_conn
):
    store = _swift(swift_server, container_name, "ds")
    build(store, 2)
    swift_conn.put_object(container_name, "ds/g/b/.zarray", b"{not json")
    report = verify_store(store, check_content=False)
    assert [e.split(":")[0] for e in report.metadata_errors] == ["g/b/.zarray"]
    assert {a.path for a in report.arrays} == {"a", "s"}
    assert report.orphans == ["g/b/0", "g/b/1", "g/b/2"]  # nothing claims them now
    assert not report.content_checked and not report.ok


def test_sharded_array_expects_shard_objects(swift_server, container_name):
    store = _swift(swift_server, container_name)
    arr = zarr.create_array(
        store, name="sh", shape=(16, 16), chunks=(4, 4), shards=(8, 8), dtype="u1"
    )
    arr[:] = 1
    report = verify_store(store)
    assert report.ok and report.arrays[0].expected == 4 and report.arrays[0].chunks == [8, 8]


def test_local_store_structure_is_checked_without_etags(tmp_path):
    store = LocalStore(tmp_path)
    build(store, 3)
    (tmp_path / "a" / "c" / "2" / "0").unlink()
    report = verify_store(store)
    assert not report.content_checked
    assert [a.missing for a in report.arrays if a.path == "a"] == [["a/c/2/0"]]
    assert not report.ok


def test_bookkeeping_objects_are_not_orphans(swift_server, container_name):
    store = _swift(swift_server, container_name)
    build(store, 3)
    sync(store.set(".swiftzarr/ingest.json", PROTO.buffer.from_bytes(b"{}")))
    sync(store.set(".swiftzarr/locks/ingest", PROTO.buffer.from_bytes(b"{}")))
    assert verify_store(store).ok
