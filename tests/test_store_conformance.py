"""zarr-python's own Store conformance suite, run against SwiftStore on the real local server."""

from __future__ import annotations

import uuid

import pytest
from zarr.core.buffer import Buffer, cpu, default_buffer_prototype
from zarr.testing.store import StoreTests

from swiftzarr_batch import SwiftStore


class TestSwiftStoreConformance(StoreTests[SwiftStore, cpu.Buffer]):
    store_cls = SwiftStore
    buffer_cls = cpu.Buffer

    @pytest.fixture
    def store_kwargs(self, swift_server) -> dict:
        return {
            "container": f"conf-{uuid.uuid4().hex[:10]}",
            "prefix": "some/prefix",
            "authurl": swift_server.auth_url,
            "user": swift_server.user,
            "key": swift_server.key,
        }

    async def set(self, store: SwiftStore, key: str, value: Buffer) -> None:
        # Bypass the store: write with python-swiftclient.
        conn = _conn(store)
        conn.put_container(store.container)
        conn.put_object(store.container, f"{store.prefix}/{key}", value.to_bytes())

    async def get(self, store: SwiftStore, key: str) -> Buffer:
        _, body = _conn(store).get_object(store.container, f"{store.prefix}/{key}")
        return self.buffer_cls.from_bytes(body)

    def test_store_repr(self, store: SwiftStore) -> None:
        text = repr(store)
        assert store.container in text and "some/prefix" in text
        assert store.conn.token not in text

    def test_store_supports_writes(self, store: SwiftStore) -> None:
        assert store.supports_writes

    def test_store_supports_listing(self, store: SwiftStore) -> None:
        assert store.supports_listing


def _conn(store: SwiftStore):
    from swiftclient.client import Connection

    return Connection(preauthurl=store.storage_url, preauthtoken=store.conn.token)


async def test_get_missing_returns_none_only_for_404(swift_server) -> None:
    store = SwiftStore(
        f"c-{uuid.uuid4().hex[:8]}",
        authurl=swift_server.auth_url,
        user=swift_server.user,
        key=swift_server.key,
    )
    assert await store.get("nope", default_buffer_prototype()) is None
