"""Streaming listings, plans, deletes and large-object copies on a real Swift whose
``container_listing_limit`` is lowered to 100, so a couple of thousand objects make many
listing pages (the paths a million-object container takes, at a size CI can seed)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
import textwrap
import tracemalloc
import uuid

import pytest
from swiftclient.client import Connection
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore

from swiftzarr_batch import SwiftStore
from swiftzarr_batch.swift import bulk_stream
from swiftzarr_batch.swift import container as container_mod
from swiftzarr_batch.testing.swift_server import LocalSwift
from swiftzarr_batch.transfer.copy import copy_store
from swiftzarr_batch.transfer.sorted_listing import sorted_entries, sorted_objects

PAGE = 100
N = 800
MAX_FILE = 2 * 1024 * 1024
PROTO = default_buffer_prototype()
# byte order around "/": "-" (0x2d) and "." (0x2e) sort before it, "0" (0x30) after; and
# non-ASCII names, whose UTF-8 byte order must be Python's str order
TRICKY = ["a-b", "a.b", "a/b", "a/c/d", "a0", "é/x", "ü", "z\u4e2d", "zz"]


@pytest.fixture(scope="module")
def server():
    with LocalSwift(container_listing_limit=PAGE, max_file_size=MAX_FILE) as s:
        yield s


def _store(server, container, prefix="", user=None, key=None):
    return SwiftStore(
        container,
        prefix,
        authurl=server.auth_url,
        user=user or server.user,
        key=key or server.key,
    )


def _seed(server, container, names, body=b"x"):
    """Many objects in one request (the bulk middleware's extract-archive)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for n in names:
            info = tarfile.TarInfo(n)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    conn = Connection(authurl=server.auth_url, user=server.user, key=server.key)
    conn.put_container(container)
    conn.put_object(
        container,
        "",
        buf.getvalue(),
        query_string="extract-archive=tar",
        headers={"Accept": "application/json"},
    )
    return conn


def _names(store):
    return list(store.walk())


@pytest.fixture(scope="module")
def seeded(server):
    name = f"st-{uuid.uuid4().hex[:8]}"
    keys = [f"ds/d{i // 200}/o{i:05d}" for i in range(N)] + [f"ds/{t}" for t in TRICKY]
    conn = _seed(server, name, keys)
    conn.close()
    return name, sorted(k[3:] for k in keys)


def test_listing_is_paged_at_the_clusters_limit_and_sorted_like_python(server, seeded):
    name, keys = seeded
    store = _store(server, name, "ds")
    before = store.session.counters.requests
    walked = store.walk()
    first = next(walked)  # a generator: one page at a time
    assert first == keys[0]
    assert [first, *walked] == keys  # Swift's UTF-8 byte order is str order
    assert container_mod.listing_page_size(store.session.storage_url) == PAGE  # learned from 412
    pages = store.session.counters.requests - before
    assert len(keys) // PAGE <= pages <= len(keys) // PAGE + 3


def test_copy_streams_resumes_and_deletes_extra(server, seeded, monkeypatch):
    name, keys = seeded
    src = _store(server, name, "ds")
    dst = _store(server, f"{name}-dst", "copy")
    dry = copy_store(src, dst, dry_run=True)
    assert (dry.keys_copied, dry.keys_total, dry.bytes_copied) == (len(keys),) * 2 + (len(keys),)
    assert _names(dst) == []

    first = copy_store(src, dst, batch_size=64)
    assert first.keys_copied == first.keys_server_side == len(keys) and first.verified
    assert _names(dst) == keys

    # an interrupted copy, changed and extra keys at the destination
    sync(dst.delete_dir("d0"))  # d0/ holds 200 keys
    gone = [k for k in keys if k.startswith("d0/")]
    sync(dst.set("d1/o00200", PROTO.buffer.from_bytes(b"changed")))
    extras = [f"d9/extra{i}" for i in range(250)] + ["a/zzz"]
    for k in extras:
        sync(dst.set(k, PROTO.buffer.from_bytes(b"e")))
    plan = copy_store(src, dst, dry_run=True, delete_extra=True)
    assert (plan.keys_copied, plan.keys_conflicting, plan.keys_deleted) == (
        len(gone),
        1,
        len(extras),
    )
    sizes = []
    real = container_mod.SwiftContainer.bulk_delete

    async def recording(self, names):
        names = list(names)
        sizes.append(len(names))
        return await real(self, names)

    monkeypatch.setattr(container_mod.SwiftContainer, "bulk_delete", recording)
    monkeypatch.setattr(bulk_stream, "BATCH", 100)
    again = copy_store(src, dst, delete_extra=True, if_exists="overwrite", batch_size=64)
    assert again.keys_copied == len(gone) + 1 and again.keys_skipped == len(keys) - len(gone) - 1
    assert again.keys_deleted == len(extras) and again.verified
    assert _names(dst) == keys
    assert sizes and max(sizes) <= 100  # handed over in batches, not as one list
    assert sync(dst.get("d1/o00200", PROTO)).to_bytes() == b"x"


def test_local_source_is_walked_in_order_and_copied(server, tmp_path):
    root = tmp_path / "src"
    keys = sorted([*(f"g/c/{i}/{j}" for i in range(12) for j in range(25)), *TRICKY])
    for k in keys:
        (root / k).parent.mkdir(parents=True, exist_ok=True)
        (root / k).write_bytes(k.encode())
    src = LocalStore(root)

    async def walk(run):
        return [(i.key, i.size) async for i in sorted_objects(src, "", run=run)]

    for run in (7, 10_000):  # spilled to sorted runs on disk, or not
        assert sync(walk(run)) == [(k, len(k.encode())) for k in keys]
    dst = _store(server, f"loc-{uuid.uuid4().hex[:8]}", "x")
    first = copy_store(src, dst, batch_size=32)
    assert first.keys_copied == len(keys) and first.verified and _names(dst) == keys
    (root / "g/c/0/0").write_bytes(b"new content")  # same key, other bytes: hashed, recopied
    (root / "g/c/0/0b").write_bytes(b"added")
    sync(dst.set("stale/x", PROTO.buffer.from_bytes(b"s")))
    again = copy_store(src, dst, if_exists="overwrite", delete_extra=True)
    assert (again.keys_copied, again.keys_deleted, again.verified) == (2, 1, True)
    assert again.keys_skipped == len(keys) - 1
    assert sync(dst.get("g/c/0/0", PROTO)).to_bytes() == b"new content"


def test_sorted_entries_spill_runs_and_merge():
    items = [(f"k{(i * 7919) % 1000:04d}", i) for i in range(1000)]
    assert list(sorted_entries(items, run=33)) == sorted(items)
    names = ["b\nc", "b", "a\u00e9", "a/"]  # a newline in a name survives the spill
    assert [n for (n,) in sorted_entries([(n,) for n in names], run=1)] == sorted(names)


def _plan_peak(tmp_path, files):
    root = tmp_path / f"n{files}"
    for d in range(files // 500):
        (root / f"d{d:03d}").mkdir(parents=True)
        for i in range(500):
            (root / f"d{d:03d}" / f"c{i}").write_bytes(b"")
    src, dst = LocalStore(root), LocalStore(tmp_path / f"empty{files}")
    copy_store(src, dst, dry_run=True)  # warm: imports, caches
    tracemalloc.start()
    summary = copy_store(src, dst, dry_run=True, delete_extra=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert summary.keys_copied == files
    return peak


def test_a_dry_run_plan_holds_no_names(tmp_path):
    small, large = _plan_peak(tmp_path, 6_000), _plan_peak(tmp_path, 24_000)
    # holding the names would cost ~100 bytes each: 18 000 more names, ~1.8 MB more
    assert large < small + 600_000, (small, large)


CHILD = textwrap.dedent(
    """
    import json, sys
    from swiftzarr_batch import SwiftStore
    from swiftzarr_batch.transfer.copy import copy_store

    def rss(field):
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1]) * 1024

    a = json.loads(sys.argv[1])
    src = SwiftStore(a["src"], "ds", authurl=a["auth"], user=a["user"], key=a["key"])
    dst = SwiftStore(a["dst"], "ds", authurl=a["auth"], user=a["user2"], key=a["key2"])
    list(src.walk()), list(dst.walk())  # connections, tokens
    copy_store(src.with_prefix("none"), dst.with_prefix("none"))  # imports (dask), threads
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS: the peak from here on
    base = rss("VmRSS:")
    summary = copy_store(src, dst)
    print(json.dumps({"growth": rss("VmHWM:") - base, "through": summary.bytes_through_client,
                      "verified": summary.verified, "copied": summary.keys_copied}))
    """
)


def test_a_large_object_is_copied_a_segment_at_a_time(server):
    size = 24 * MAX_FILE + 12345  # 25 segments
    name = f"slo-{uuid.uuid4().hex[:8]}"
    src = _store(server, name, "ds")
    body = os.urandom(size)
    sync(src.set("big", PROTO.buffer.from_bytes(body)))
    conn = Connection(authurl=server.auth_url, user=server.user, key=server.key)
    assert conn.head_object(name, "ds/big").get("x-static-large-object") == "True"

    same_cluster = _store(server, f"{name}-dst", "ds")  # same token: server-side
    summary = copy_store(src, same_cluster)
    assert summary.keys_server_side == 1 and summary.bytes_through_client == 0
    assert summary.verified and sync(same_cluster.get("big", PROTO)).to_bytes() == body

    user2, key2 = "test2:tester2", server.users["test2:tester2"]
    args = {
        "src": name,
        "dst": f"{name}-other",
        "auth": server.auth_url,
        "user": server.user,
        "key": server.key,
        "user2": user2,
        "key2": key2,
    }
    import json

    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["verified"] and got["copied"] == 1 and got["through"] == size
    # measured: 13 MB at 25 MB and at 50 MB (flat): a few segments, never the whole body
    assert got["growth"] < size / 3, got
    other = _store(server, f"{name}-other", "ds", user=user2, key=key2)
    assert sync(other.get("big", PROTO)).to_bytes() == body
    again = copy_store(src, other)  # compared by the MD5 it carries, not by reading it
    assert again.keys_skipped == 1 and again.bytes_through_client == 0
    conn.close()
