"""Values above the cluster's max_file_size become Static Large Objects, transparently.

A Swift whose max_file_size is 2 MiB stands in for the default 5 GiB, so the data stays small.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import zarr
from zarr.abc.store import RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from swiftzarr_batch import RetryPolicy, SwiftStore
from swiftzarr_batch.auth import V1Password
from swiftzarr_batch.swift.large_objects import limits
from swiftzarr_batch.testing.faultproxy import FaultProxy
from swiftzarr_batch.testing.swift_server import LocalSwift

LIMIT = 2 * 1024 * 1024
PROTO = default_buffer_prototype()


@pytest.fixture(scope="module")
def small_server():
    with LocalSwift(max_file_size=LIMIT) as server:
        yield server


@pytest.fixture
def store(small_server, container_name):
    return SwiftStore(
        container_name, authurl=small_server.auth_url, user=small_server.user, key=small_server.key
    )


@pytest.fixture
def conn(small_server):
    from swiftclient.client import Connection

    c = Connection(authurl=small_server.auth_url, user=small_server.user, key=small_server.key)
    yield c
    c.close()


def _segments(conn, container) -> list[str]:
    try:
        return [
            o["name"] for o in conn.get_container(f"{container}_segments", full_listing=True)[1]
        ]
    except Exception as e:
        if getattr(e, "http_status", None) == 404:
            return []
        raise


def _payload(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).bytes(n)


def test_limits_come_from_the_cluster_info(store):
    got = sync(limits(store.session))
    assert got.max_file_size == LIMIT and got.slo and got.max_manifest_segments >= 2


def test_a_value_above_the_limit_is_written_as_slo_and_read_back(store, conn, container_name):
    data = _payload(5 * 1024 * 1024 + 17)
    sync(store.set("big", PROTO.buffer.from_bytes(data)))
    headers = conn.head_object(container_name, "big")
    assert headers.get("x-static-large-object") == "True"
    assert headers["x-object-meta-swiftzarr-body-md5"] == hashlib.md5(data).hexdigest()
    assert len(_segments(conn, container_name)) == 3  # 2 MiB + 2 MiB + 1 MiB + 17 bytes
    assert sync(store.get("big", PROTO)).to_bytes() == data
    assert conn.get_object(container_name, "big")[1] == data  # the swift CLI sees the same
    assert sync(store.getsize("big")) == len(data)
    assert (
        sync(store.get("big", PROTO, RangeByteRequest(LIMIT - 5, LIMIT + 5))).to_bytes()
        == (data[LIMIT - 5 : LIMIT + 5])
    )
    assert sync(store.get("big", PROTO, SuffixByteRequest(3))).to_bytes() == data[-3:]
    assert list(store.walk()) == ["big"]  # segments live in their own container


def test_a_value_at_the_limit_stays_a_plain_object(store, conn, container_name):
    data = _payload(LIMIT, 1)
    sync(store.set("edge", PROTO.buffer.from_bytes(data)))
    assert "x-static-large-object" not in conn.head_object(container_name, "edge")
    assert _segments(conn, container_name) == []


def test_zarr_chunks_larger_than_the_limit_round_trip(store):
    z = zarr.create_array(
        store, name="a", shape=(2, 600_000), chunks=(1, 600_000), dtype="f8", compressors=None
    )  # 4.8 MB per chunk
    data = np.random.default_rng(2).random((2, 600_000))
    z[:] = data
    np.testing.assert_array_equal(zarr.open_array(store, path="a", mode="r")[:], data)


def test_delete_removes_the_segments_too(store, conn, container_name):
    sync(store.set("big", PROTO.buffer.from_bytes(_payload(3 * 1024 * 1024))))
    assert len(_segments(conn, container_name)) == 2
    sync(store.delete("big"))
    assert _segments(conn, container_name) == []
    assert sync(store.exists("big")) is False


def test_delete_dir_removes_large_objects_with_their_segments(store, conn, container_name):
    for i in range(2):
        sync(store.set(f"d/big{i}", PROTO.buffer.from_bytes(_payload(3 * 1024 * 1024, i))))
    sync(store.set("d/small", PROTO.buffer.from_bytes(b"x")))
    sync(store.set("keep", PROTO.buffer.from_bytes(b"y")))
    assert len(_segments(conn, container_name)) == 4
    sync(store.delete_dir("d"))
    assert _segments(conn, container_name) == []
    assert list(store.walk()) == ["keep"]


def test_overwriting_a_large_object_removes_the_old_segments(store, conn, container_name):
    sync(store.set("big", PROTO.buffer.from_bytes(_payload(3 * 1024 * 1024, 1))))
    first = set(_segments(conn, container_name))
    data = _payload(5 * 1024 * 1024, 2)
    sync(store.set("big", PROTO.buffer.from_bytes(data)))
    second = set(_segments(conn, container_name))
    assert len(second) == 3 and not first & second
    assert sync(store.get("big", PROTO)).to_bytes() == data


def test_set_if_not_exists_keeps_the_first_large_value_and_no_stray_segments(
    store, conn, container_name
):
    first = _payload(3 * 1024 * 1024, 3)
    sync(store.set_if_not_exists("big", PROTO.buffer.from_bytes(first)))
    sync(store.set_if_not_exists("big", PROTO.buffer.from_bytes(_payload(3 * 1024 * 1024, 4))))
    assert sync(store.get("big", PROTO)).to_bytes() == first
    assert len(_segments(conn, container_name)) == 2


def test_a_corrupted_large_object_read_is_caught_by_the_stored_md5(
    small_server, store, container_name
):
    data = _payload(3 * 1024 * 1024, 5)
    sync(store.set("big", PROTO.buffer.from_bytes(data)))
    token = V1Password(small_server.auth_url, small_server.user, small_server.key).authenticate()
    with FaultProxy(small_server.proxy_url) as fp:
        faulty = SwiftStore(
            container_name,
            preauthurl=fp.via(token.storage_url),
            preauthtoken=token.token,
            read_only=True,
            retry=RetryPolicy(attempts=3, base_delay=0.01),
        )
        fp.inject("corrupt", 1, method="GET", path_contains="/big")
        assert sync(faulty.get("big", PROTO)).to_bytes() == data
        assert fp.counts["corrupt"] == 1 and faulty.counters["retries"] == 1


def test_the_manifest_lists_segments_in_the_swiftclient_layout(store, conn, container_name):
    sync(store.set("big", PROTO.buffer.from_bytes(_payload(3 * 1024 * 1024, 6))))
    manifest = json.loads(
        conn.get_object(container_name, "big", query_string="multipart-manifest=get")[1]
    )
    assert [m["bytes"] for m in manifest] == [LIMIT, 3 * 1024 * 1024 - LIMIT]
    assert all(m["name"].startswith(f"/{container_name}_segments/big/slo/") for m in manifest)
