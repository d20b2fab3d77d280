"""SwiftStore behaviour on the real server: listings, deletes, errors, pickling, read-only."""

from __future__ import annotations

import asyncio
import io
import pickle
import tarfile
import uuid

import numpy as np
import pytest
import zarr
from zarr.core.buffer import cpu, default_buffer_prototype

from swiftzarr_batch import (
    AuthenticationError,
    ConfigurationError,
    IntegrityError,
    InvalidNameError,
    ReadOnlyError,
    SwiftStore,
    TokenExpiredError,
)

PROTO = default_buffer_prototype()


def _store(swift_server, container, prefix="", **kw) -> SwiftStore:
    return SwiftStore(
        container,
        prefix,
        authurl=swift_server.auth_url,
        user=swift_server.user,
        key=swift_server.key,
        **kw,
    )


def _bulk_upload(swift_conn, container: str, prefix: str, count: int) -> None:
    """Create ``count`` tiny objects in one request (the bulk middleware's extract-archive)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(count):
            data = str(i).encode()
            info = tarfile.TarInfo(f"{prefix}/k{i:06d}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    swift_conn.put_container(container)
    resp: dict = {}
    swift_conn.put_object(
        container,
        "",
        buf.getvalue(),
        query_string="extract-archive=tar",
        headers={"Accept": "application/json"},
        response_dict=resp,
    )
    assert resp["status"] == 201 or resp["status"] == 200


@pytest.fixture(scope="module")
def big_prefix(swift_server):
    from swiftclient.client import Connection

    conn = Connection(authurl=swift_server.auth_url, user=swift_server.user, key=swift_server.key)
    container = f"big-{uuid.uuid4().hex[:8]}"
    _bulk_upload(conn, container, "many", 10_050)
    return container


async def test_listing_over_10000_objects_is_complete(swift_server, big_prefix):
    store = _store(swift_server, big_prefix, "many")
    keys = [k async for k in store.list()]
    assert len(keys) == 10_050
    assert keys == sorted(keys) and keys[0] == "k000000" and keys[-1] == "k010049"
    assert len([k async for k in store.list_dir("")]) == 10_050
    assert await store.getsize_prefix("") == sum(len(str(i)) for i in range(10_050))


async def test_delete_dir_over_10000_objects(swift_server, big_prefix, swift_conn):
    store = _store(swift_server, big_prefix)
    await store.delete_dir("many")
    _, listing = swift_conn.get_container(big_prefix, full_listing=True)
    assert listing == []


async def test_list_dir_and_prefix_semantics(swift_server, container_name):
    store = _store(swift_server, container_name, "root/p")
    for key in ["a/zarr.json", "a/c/0", "b", "ab/x"]:
        await store.set(key, cpu.Buffer.from_bytes(key.encode()))
    other = _store(swift_server, container_name, "root/p2")  # a sibling prefix must not leak in
    await other.set("zzz", cpu.Buffer.from_bytes(b"z"))
    assert sorted([k async for k in store.list_dir("")]) == ["a", "ab", "b"]
    assert sorted([k async for k in store.list_dir("a")]) == ["c", "zarr.json"]
    assert sorted([k async for k in store.list_prefix("a")]) == ["a/c/0", "a/zarr.json", "ab/x"]
    assert store.listdir() == ["a", "ab", "b"]
    assert list(store.walk()) == ["a/c/0", "a/zarr.json", "ab/x", "b"]
    assert list(store.walk("a")) == ["a/c/0", "a/zarr.json"]
    await store.delete_dir("a")
    assert list(store.walk()) == ["ab/x", "b"]
    assert list(other.walk()) == ["zzz"]


async def test_bad_token_raises_never_fill_values(swift_server, container_name):
    good = _store(swift_server, container_name)
    arr = zarr.create_array(good, name="x", shape=(4,), chunks=(2,), dtype="i4", fill_value=-1)
    arr[:] = [1, 2, 3, 4]
    bad = SwiftStore(container_name, preauthurl=good.storage_url, preauthtoken="AUTH_tkbogus")
    with pytest.raises(TokenExpiredError) as info:
        await bad.get("x/c/0", PROTO)
    assert "AUTH_tkbogus" not in str(info.value)
    with pytest.raises(TokenExpiredError):
        zarr.open_array(bad.with_read_only(True), path="x")[:]


async def test_wrong_key_is_a_clear_authentication_error(swift_server, container_name):
    store = SwiftStore(
        container_name,
        authurl=swift_server.auth_url,
        user=swift_server.user,
        key="not-the-key-0xdeadbeef",
    )
    with pytest.raises(AuthenticationError) as info:
        await store.get("x", PROTO)
    assert "not-the-key-0xdeadbeef" not in str(info.value)
    assert swift_server.user in str(info.value)


def test_unreachable_auth_url(container_name):
    store = SwiftStore(container_name, authurl="http://127.0.0.1:9/auth/v1.0", user="u", key="k")
    with pytest.raises(AuthenticationError, match="could not reach auth URL"):
        store.walk()


def test_missing_credentials_error_lists_what_is_accepted(container_name):
    with pytest.raises(ConfigurationError) as info:
        SwiftStore(container_name)
    for accepted in ("authurl+user+key", "preauthurl+preauthtoken", "ST_AUTH", "OS_STORAGE_URL"):
        assert accepted in str(info.value)
    with pytest.raises(ConfigurationError, match="missing: key"):
        SwiftStore(container_name, authurl="http://127.0.0.1:1/auth/v1.0", user="u")


@pytest.mark.parametrize("bad", ["", "a/b", "x\x00y", "c" * 257, ".."])
def test_invalid_container_names(bad, swift_server):
    with pytest.raises(InvalidNameError):
        _store(swift_server, bad)


@pytest.mark.parametrize("bad", ["/lead", "a/../b", "a//b", "n\x00ul"])
async def test_invalid_prefixes_and_keys(bad, swift_server, container_name):
    with pytest.raises(InvalidNameError):
        _store(swift_server, container_name, bad)
    store = _store(swift_server, container_name)
    with pytest.raises(InvalidNameError):
        await store.set(bad, cpu.Buffer.from_bytes(b"x"))
    with pytest.raises(InvalidNameError):
        await store.set("k" * 1100, cpu.Buffer.from_bytes(b"x"))


async def test_pickle_carries_token_not_user_key(swift_server, container_name):
    store = _store(swift_server, container_name, "p")
    await store.set("k", cpu.Buffer.from_bytes(b"v"))
    data = pickle.dumps(store)
    assert swift_server.key.encode() not in data
    assert swift_server.user.encode() not in data
    clone = pickle.loads(data)
    assert clone == store
    assert (await clone.get("k", PROTO)).to_bytes() == b"v"
    # Unpickled copies share the same session (one pool, no new auth).
    assert clone.session is store.session


async def test_read_only_store_refuses_writes_and_never_creates_container(
    swift_server, container_name, swift_conn
):
    ro = _store(swift_server, container_name, read_only=True)
    await ro._open()
    with pytest.raises(ReadOnlyError, match="read-only"):
        await ro.set("k", cpu.Buffer.from_bytes(b"v"))
    with pytest.raises(ReadOnlyError):
        await ro.delete_dir("")
    with pytest.raises(ValueError):
        zarr.create_array(ro, shape=(2,), dtype="i1")
    assert container_name not in [c["name"] for c in swift_conn.get_account(full_listing=True)[1]]
    rw = ro.with_read_only(False)
    await rw._open()  # opening for writes creates the container
    assert container_name in [c["name"] for c in swift_conn.get_account(full_listing=True)[1]]


async def test_upload_with_wrong_etag_is_rejected(swift_server, container_name):
    store = _store(swift_server, container_name)
    await store._open()
    session = store.session
    with pytest.raises(IntegrityError):
        await session.request(
            "PUT", f"{container_name}/obj", body=b"payload", headers={"ETag": "0" * 32}
        )
    assert await store.get("obj", PROTO) is None


async def test_byte_ranges_and_bad_ranges(swift_server, container_name):
    from zarr.abc.store import OffsetByteRequest, RangeByteRequest, SuffixByteRequest

    store = _store(swift_server, container_name)
    await store.set("k", cpu.Buffer.from_bytes(b"0123456789"))
    cases = {
        RangeByteRequest(2, 5): b"234",
        OffsetByteRequest(7): b"789",
        SuffixByteRequest(3): b"789",
        RangeByteRequest(4, 4): b"",
        RangeByteRequest(8, 20): b"89",
        RangeByteRequest(12, 20): b"",
    }
    for req, want in cases.items():
        assert (await store.get("k", PROTO, req)).to_bytes() == want, req
    for bad in (
        RangeByteRequest(5, 2),
        RangeByteRequest(-1, 2),
        OffsetByteRequest(-3),
        SuffixByteRequest(-1),
    ):
        with pytest.raises(ValueError):
            await store.get("k", PROTO, bad)
    assert await store.get("missing", PROTO, RangeByteRequest(0, 2)) is None


async def test_set_if_not_exists_is_atomic(swift_server, container_name):
    store = _store(swift_server, container_name)
    results = await asyncio.gather(
        *(store.set_if_not_exists("lock", cpu.Buffer.from_bytes(str(i).encode())) for i in range(8))
    )
    assert results == [None] * 8
    value = (await store.get("lock", PROTO)).to_bytes()
    await store.set_if_not_exists("lock", cpu.Buffer.from_bytes(b"later"))
    assert (await store.get("lock", PROTO)).to_bytes() == value


def test_store_conn_helpers_and_second_store(swift_server, container_name):
    store = _store(swift_server, container_name, "a")
    z = zarr.zeros((6,), chunks=(3,), dtype="i2", store=store, zarr_format=2)
    z[:] = 7
    second = SwiftStore(
        container_name, "b", preauthurl=store.conn.url, preauthtoken=store.conn.token
    )
    z2 = zarr.zeros((6,), chunks=(3,), dtype="i2", store=second, zarr_format=2)
    z2[:] = np.arange(6)
    assert list(second.walk()) == [".zarray", ".zattrs", "0", "1"]
    root = SwiftStore(container_name, preauthurl=store.conn.url, preauthtoken=store.conn.token)
    assert root.listdir() == ["a", "b"]
