"""Listing pages are prefetched and bulk deletes run as parallel requests: both must stay
complete and in order, on the real server (small page sizes make many pages cheaply)."""

from __future__ import annotations

import io
import json
import tarfile
import uuid

import pytest

from swiftzarr_batch import SwiftStore
from swiftzarr_batch.swift import container as container_mod


@pytest.fixture
def seeded(swift_server, swift_conn):
    """A container with 450 tiny objects under ``p/`` and 3 under ``q/`` (one extract-archive)."""
    name = f"pg-{uuid.uuid4().hex[:10]}"
    names = [f"p/o{i:04d}" for i in range(450)] + ["q/a", "q/b", "q/c"]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for n in names:
            info = tarfile.TarInfo(n)
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
    swift_conn.put_container(name)
    swift_conn.put_object(
        name,
        "",
        buf.getvalue(),
        query_string="extract-archive=tar",
        headers={"Accept": "application/json"},
    )
    return name, names


def _container(swift_server, name):
    store = SwiftStore(
        name, authurl=swift_server.auth_url, user=swift_server.user, key=swift_server.key
    )
    return container_mod.SwiftContainer(store.session, name)


async def test_prefetched_pages_are_complete_and_ordered(swift_server, seeded):
    name, names = seeded
    c = _container(swift_server, name)
    pages = [page async for page in c.list_pages("p/", limit=37)]
    assert [len(p) for p in pages] == [37] * 12 + [6]
    assert [e["name"] for p in pages for e in p] == names[:450]
    dirs = [e.get("subdir") async for e in _flatten(c.list_pages("", delimiter="/", limit=1))]
    assert dirs == ["p/", "q/"]


async def _flatten(pages):
    async for page in pages:
        for entry in page:
            yield entry


async def test_stopping_early_leaves_no_pending_request(swift_server, seeded):
    name, _ = seeded
    c = _container(swift_server, name)
    before = c.session.counters.requests
    pages = c.list_pages("p/", limit=50)
    first = await anext(pages)
    await pages.aclose()  # the prefetched second page is cancelled, not left running
    assert len(first) == 50
    assert c.session.counters.requests - before <= 2


async def test_parallel_bulk_delete_deletes_everything(
    swift_server, seeded, swift_conn, monkeypatch
):
    name, names = seeded
    monkeypatch.setattr(container_mod, "BULK_DELETE_MIN", 10)
    monkeypatch.setattr(container_mod, "BULK_DELETE_SPLIT", 40)  # 451 names -> 12 requests
    monkeypatch.setattr(container_mod, "BULK_DELETE_PARALLEL", 5)
    c = _container(swift_server, name)
    before = c.session.counters.requests
    assert await c.bulk_delete(names[:450] + ["p/missing"]) == 450
    assert c.session.counters.requests - before == 12
    _, left = swift_conn.get_container(name, full_listing=True)
    assert [e["name"] for e in left] == ["q/a", "q/b", "q/c"]


TRICKY = [
    't/a "name": "b',
    't/}, {"name": "x"}',
    "t/back\\slash\\",
    "t/ünïcødé ✓",
    't/"subdir": "s/',
    "t/zz",
]


def test_last_name_is_read_from_the_tail_of_a_full_page():
    entries = [{"hash": "h", "name": n, "bytes": 1} for n in TRICKY]
    body = json.dumps(entries).encode()
    assert container_mod.last_name_if_full(body, len(TRICKY)) == TRICKY[-1]
    for i in range(1, len(TRICKY)):  # whatever name comes last
        body = json.dumps(entries[:i]).encode()
        assert container_mod.last_name_if_full(body, i) == TRICKY[i - 1]
    assert container_mod.last_name_if_full(body, len(TRICKY)) is None  # not a full page
    dirs = json.dumps([{"name": "a", "hash": "h"}, {"subdir": 't/"name": "x/'}]).encode()
    assert container_mod.last_name_if_full(dirs, 2) == 't/"name": "x/'
    compact = json.dumps(entries, separators=(",", ":")).encode()
    assert container_mod.last_name_if_full(compact, len(TRICKY)) is None  # shortcut off


async def test_tricky_names_page_completely_with_one_request_per_page(swift_server, swift_conn):
    name = f"pg-{uuid.uuid4().hex[:10]}"
    swift_conn.put_container(name)
    for n in TRICKY:
        swift_conn.put_object(name, n, b"x")
    c = _container(swift_server, name)
    before = c.session.counters.requests
    pages = [page async for page in c.list_pages("t/", limit=2)]
    assert [e["name"] for p in pages for e in p] == sorted(TRICKY)
    # 3 full pages and the empty answer after the last: no request was sent twice
    assert c.session.counters.requests - before == 4
