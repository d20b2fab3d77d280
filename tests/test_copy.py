"""copy_store on the real Swift server: every direction, server-side, resume, ordering, modes."""

from __future__ import annotations

import hashlib
import os
import re
import time

import numpy as np
import pytest
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore, WrapperStore

from swiftzarr_batch import SwiftStore
from swiftzarr_batch.errors import ConfigurationError, ReadOnlyError
from swiftzarr_batch.store.keys import is_metadata_key
from swiftzarr_batch.swift.session import process_counters
from swiftzarr_batch.transfer.copy import CopyConflictError, CopyError, copy_store

PROTO = default_buffer_prototype()


def _swift(swift_server, container, prefix="", **kw) -> SwiftStore:
    return SwiftStore(
        container,
        prefix,
        authurl=swift_server.auth_url,
        user=swift_server.user,
        key=swift_server.key,
        **kw,
    )


def build_hierarchy(store, zarr_format: int, seed: int = 0, big: bool = False) -> None:
    """Several arrays (random, hence incompressible, data) in nested groups, consolidated."""
    rng = np.random.default_rng(seed)
    root = zarr.group(store, zarr_format=zarr_format, attributes={"title": "copy test"})
    a = root.create_array("a", shape=(60, 40), chunks=(10, 10), dtype="f8")
    a[:] = rng.random((60, 40))
    b = root.create_group("g").create_array("b", shape=(50,), chunks=(7,), dtype="i4")
    b[:] = rng.integers(0, 1000, 50)
    c = root.create_group("g/h").create_array(
        "c", shape=(20, 20), chunks=(20, 5), dtype="u2", fill_value=7
    )
    c[:10] = rng.integers(0, 60000, (10, 20))
    c.attrs["units"] = "K"
    if big:  # 16 chunks of 32 KiB: bodies dwarf listings
        d = root.create_array("big", shape=(256, 256), chunks=(64, 64), dtype="f8")
        d[:] = rng.random((256, 256))
    zarr.consolidate_metadata(store)


def store_bytes(store) -> dict[str, bytes]:
    async def collect():
        out = {}
        async for key in store.list():
            out[key] = (await store.get(key, PROTO)).to_bytes()
        return out

    return sync(collect())


def _delta(before):
    after = process_counters()
    return {k: after[k] - before[k] for k in after}


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_round_trip_local_swift_swift_local_is_byte_identical(
    swift_server, container_name, tmp_path, zarr_format
):
    src = LocalStore(tmp_path / "src")
    build_hierarchy(src, zarr_format)
    original = store_bytes(src)
    assert len(original) > 40 and any(is_metadata_key(k) for k in original)

    one = _swift(swift_server, container_name, "one")
    seen = []
    s1 = copy_store(src, one, batch_size=8, progress=lambda *a: seen.append(a))
    assert (s1.keys_copied, s1.keys_total, s1.verified) == (len(original), len(original), True)
    chunk_steps = [a for a in seen if a[0] == "copy chunks"]
    assert len(chunk_steps) > 3 and chunk_steps[-1][1] == chunk_steps[-1][2]  # done == total
    assert [a[1] for a in chunk_steps] == sorted(a[1] for a in chunk_steps)
    assert s1.keys_server_side == 0 and s1.bytes_copied == sum(map(len, original.values()))

    two = _swift(swift_server, container_name + "-b", "x/two")
    s2 = copy_store(one, two)
    assert s2.server_side and s2.keys_server_side == len(original) and s2.verified

    back = LocalStore(tmp_path / "back")
    s3 = copy_store(two, back)
    assert s3.keys_copied == len(original) and s3.bytes_through_client == s1.bytes_copied
    assert store_bytes(back) == original
    np.testing.assert_array_equal(
        zarr.open_array(back, path="g/h/c", mode="r")[:],
        zarr.open_array(src, path="g/h/c", mode="r")[:],
    )


def requests_since(swift_server, started: float) -> list[str]:
    """Proxy access-log lines of requests that began after ``started`` (lines are written
    when a request ends, and may reach the file late: wait a moment, then filter by time)."""
    time.sleep(0.5)
    out = []
    for line in swift_server.access_log_lines():
        stamps = [float(f) for f in line.split() if re.fullmatch(r"1\d{9}\.\d+", f)]
        if stamps and stamps[0] >= started:
            out.append(line)
    return out


def test_server_side_copy_sends_no_object_body_through_the_client(swift_server, container_name):
    src = _swift(swift_server, container_name, "ds")
    build_hierarchy(src, 3, big=True)
    data = store_bytes(src)
    total = sum(map(len, data.values()))
    dst = _swift(swift_server, container_name + "-dst")
    started = time.time()
    before = process_counters()
    summary = copy_store(src, dst)
    cost = _delta(before)
    assert summary.keys_server_side == len(data) and summary.bytes_through_client == 0
    assert cost["bytes_sent"] == 0  # not a byte of any body went up
    # only JSON came down: the listings, and the lagging-listing probe's (transfer.unlisted)
    # second listing of the source and its metadata documents (to learn the chunk grids)
    assert cost["bytes_received"] < total / 5
    assert summary.unlisted_probes == 0 and summary.keys_unlisted == 0  # all listed: no HEADs
    # The proxy's own log: our PUTs carried no body; the reads were the copy middleware's (SSC)
    lines = requests_since(swift_server, started)
    puts = [ln.split() for ln in lines if " PUT /v1/AUTH_test/" + container_name + "-dst/" in ln]
    assert len(puts) == len(data)
    for fields in puts:
        assert "SSC" not in fields and fields[fields.index("HTTP/1.0") + 7] == "-"  # bytes in
    client_gets = [
        ln for ln in lines if f" GET /v1/AUTH_test/{container_name}/ds/" in ln and " SSC " not in ln
    ]
    # the probe for lagging listings reads metadata documents (zarr.json, .zarray); no chunk
    assert all(re.search(r"/(zarr\.json|\.zarray|\.zgroup|\.zattrs) ", ln) for ln in client_gets)
    assert store_bytes(dst) == data


def test_server_side_copy_across_accounts(swift_server, container_name, swift_conn):
    from swiftclient.client import Connection

    other = Connection(authurl=swift_server.auth_url, user="test2:tester2", key="testing2")
    other.put_container(container_name, headers={"X-Container-Read": "test:tester"})
    me = _swift(swift_server, container_name + "-mine")
    token = me.session.token
    theirs = SwiftStore(
        container_name,
        "shared",
        preauthurl=swift_server.storage_url("test2"),
        preauthtoken=other.get_auth()[1],
    )
    build_hierarchy(theirs, 2)
    # the same token (test:tester's) opens the other account, read-only by ACL
    src = SwiftStore(
        container_name,
        "shared",
        preauthurl=swift_server.storage_url("test2"),
        preauthtoken=token.token,
        read_only=True,
    )
    summary = copy_store(src, me, server_side=True)
    assert summary.keys_server_side == summary.keys_total > 0 and summary.verified
    assert store_bytes(me) == store_bytes(theirs)
    # the same, from location strings and environment credentials
    from swiftzarr_batch.store.locations import open_store

    env = swift_server.env
    by_url = open_store(
        f"swift://{container_name}/shared?account=AUTH_test2", read_only=True, env=env
    )
    into = open_store(f"swift://{container_name}-mine/again", env=env)
    again = copy_store(by_url, into, server_side=True)
    assert again.keys_server_side == summary.keys_total and again.verified


def test_server_side_required_but_impossible_is_a_clear_error(
    swift_server, container_name, tmp_path
):
    with pytest.raises(ConfigurationError, match="server-side copy needs two Swift stores"):
        copy_store(LocalStore(tmp_path), _swift(swift_server, container_name), server_side=True)


class SimulatedCrash(Exception):
    pass


class FailingSource(WrapperStore):
    """A real LocalStore that dies (like a killed client) after ``budget`` chunk reads."""

    def __init__(self, store, budget: int) -> None:
        super().__init__(store)
        self.budget = budget
        self.reads = 0

    async def get(self, key, prototype=None, byte_range=None):
        self.reads += 1
        if self.reads > self.budget:
            raise SimulatedCrash(key)
        return await self._store.get(key, prototype or PROTO, byte_range)


def test_resume_after_interruption_resends_nothing_already_copied(
    swift_server, container_name, tmp_path
):
    src = LocalStore(tmp_path / "src")
    build_hierarchy(src, 3)
    data = store_bytes(src)
    dst = _swift(swift_server, container_name)
    with pytest.raises(SimulatedCrash):
        copy_store(FailingSource(src, budget=20), dst, batch_size=5, concurrency=2)
    time.sleep(0.5)  # a task still running in the other thread fails at its next read
    present = store_bytes(dst)
    assert 0 < len(present) < len(data)
    assert not any(is_metadata_key(k) for k in present)  # metadata comes last: none yet
    assert all(data[k] == v for k, v in present.items())

    before = process_counters()
    summary = copy_store(src, dst)
    cost = _delta(before)
    missing = {k: v for k, v in data.items() if k not in present}
    assert summary.keys_skipped == len(present) and summary.keys_copied == len(missing)
    assert cost["bytes_sent"] == sum(map(len, missing.values()))  # exactly what was missing
    assert store_bytes(dst) == data
    again = copy_store(src, dst)
    assert again.keys_copied == 0 and again.keys_skipped == len(data)


def test_metadata_is_written_deepest_first_after_every_chunk(
    swift_server, container_name, tmp_path
):
    src = LocalStore(tmp_path / "src")
    build_hierarchy(src, 3)
    data = store_bytes(src)
    chunks = [k for k in data if not is_metadata_key(k)]
    dst = _swift(swift_server, container_name)
    with pytest.raises(SimulatedCrash):  # dies after all chunks and two metadata documents
        copy_store(FailingSource(src, budget=len(chunks) + 2), dst, concurrency=1)
    time.sleep(0.5)
    present = store_bytes(dst)
    assert set(chunks) <= set(present)
    written = [k for k in present if is_metadata_key(k)]
    pending = [k for k in data if is_metadata_key(k) and k not in present]
    assert len(written) == 2 and "g/h/c/zarr.json" in written  # the deepest node first
    assert min(k.count("/") for k in written) >= max(k.count("/") for k in pending)
    assert "zarr.json" in pending  # the root (with the consolidated metadata) comes last


def test_failed_chunk_stops_before_metadata_and_names_the_key(
    swift_server, container_name, tmp_path
):
    src = _swift(swift_server, container_name, "ds")
    build_hierarchy(src, 3)
    bad_key = "a/c/2/3"
    corrupt_on_disk(swift_server, container_name, f"ds/{bad_key}")
    dst = LocalStore(tmp_path / "dst")
    with pytest.raises(CopyError, match=re.escape(bad_key)) as info:
        copy_store(src, dst)
    assert info.value.summary.keys_failed == 1
    assert "reads as 404" in info.value.summary.problems[0]  # quarantined by the object server
    assert not any(is_metadata_key(k) for k in store_bytes(dst))


def object_data_file(swift_server, container: str, name: str):
    """The object server's .data file of an object (found by the name in its xattr metadata)."""
    want = f"/AUTH_test/{container}/{name}".encode()
    for path in (swift_server.data_dir / "srv").rglob("*.data"):
        raw = b"".join(
            os.getxattr(path, a)
            for a in sorted(os.listxattr(path))
            if a.startswith("user.swift.metadata")
        )
        if want in raw:  # the pickled metadata holds the full name
            return path
    raise AssertionError(f"no data file for {container}/{name}")


def corrupt_on_disk(swift_server, container: str, name: str) -> None:
    """Flip the object's bytes in place (same size): its content no longer matches its ETag."""
    path = object_data_file(swift_server, container, name)
    body = path.read_bytes()
    path.write_bytes(bytes(b ^ 0xFF for b in body))


def test_if_exists_modes(swift_server, container_name, tmp_path):
    src = LocalStore(tmp_path / "src")
    build_hierarchy(src, 3)
    dst = _swift(swift_server, container_name)
    copy_store(src, dst)
    changed = "g/b/c/3"
    sync(dst.set(changed, PROTO.buffer.from_bytes(b"something else")))
    with pytest.raises(CopyConflictError, match=changed) as info:
        copy_store(src, dst, if_exists="fail")
    assert info.value.summary.keys_conflicting == 1
    kept = copy_store(src, dst, if_exists="skip")
    assert (kept.keys_conflicting, kept.keys_copied, kept.verified) == (1, 0, True)
    assert store_bytes(dst)[changed] == b"something else"
    fixed = copy_store(src, dst, if_exists="overwrite")
    assert fixed.keys_copied == 1 and store_bytes(dst) == store_bytes(src)
    with pytest.raises(ConfigurationError, match="if_exists"):
        copy_store(src, dst, if_exists="replace")


def test_delete_extra_and_dry_run(swift_server, container_name, tmp_path):
    src = _swift(swift_server, container_name, "src")
    build_hierarchy(src, 2)
    dst = _swift(swift_server, container_name, "dst")
    copy_store(src, dst)
    zarr.open_group(src).create_array("new", shape=(3,), chunks=(3,), dtype="i1")[:] = 1
    sync(src.delete_dir("g/h"))
    zarr.consolidate_metadata(src)
    before, wanted = store_bytes(dst), store_bytes(src)
    plan = copy_store(src, dst, if_exists="overwrite", delete_extra=True, dry_run=True)
    assert plan.dry_run and plan.keys_deleted == len([k for k in before if k.startswith("g/h/")])
    changed = [k for k, v in wanted.items() if before.get(k) != v]
    assert "new/.zarray" in changed and ".zmetadata" in changed
    assert plan.keys_copied == len(changed) and plan.keys_skipped == len(wanted) - len(changed)
    assert store_bytes(dst) == before  # nothing written
    done = copy_store(src, dst, if_exists="overwrite", delete_extra=True)
    assert done.verified and done.keys_deleted == plan.keys_deleted
    assert store_bytes(dst) == store_bytes(src)


def test_subpaths_and_refusals(swift_server, container_name, tmp_path):
    src = _swift(swift_server, container_name, "all")
    build_hierarchy(src, 3)
    dst = LocalStore(tmp_path / "d")
    summary = copy_store(src, dst, source_path="g", dest_path="copied/g")
    assert summary.keys_copied == len([k for k in store_bytes(src) if k.startswith("g/")])
    assert zarr.open_array(dst, path="copied/g/b", mode="r")[:].shape == (50,)
    with pytest.raises(ConfigurationError, match="overlap"):
        copy_store(src, _swift(swift_server, container_name, "all/inner"))
    with pytest.raises(ReadOnlyError):
        copy_store(src, LocalStore(tmp_path / "ro", read_only=True))


def test_copy_on_distributed_worker_processes(swift_server, container_name, tmp_path):
    """Stores are pickled to spawned workers: the token travels, the key does not."""
    from swiftzarr_batch.jobs.runner import dask_context

    src = LocalStore(tmp_path / "src")
    build_hierarchy(src, 3)
    dst = _swift(swift_server, container_name)
    with dask_context(workers=2) as client:
        assert client is not None
        summary = copy_store(src, dst, batch_size=20)
        assert summary.requests > summary.keys_copied  # counted on the workers, summed here
    assert summary.verified and store_bytes(dst) == store_bytes(src)
    assert (
        hashlib.md5(store_bytes(dst)["a/c/0/0"]).hexdigest()
        == hashlib.md5(store_bytes(src)["a/c/0/0"]).hexdigest()
    )


def test_large_objects_are_copied_segment_by_segment_and_deleted_with_their_segments():
    """An SLO's ETag is not its MD5 and a server-side copy of its manifest would try to make one
    object of it: its segments are copied server-side, one by one, under a new manifest."""
    from swiftclient.client import Connection

    from swiftzarr_batch.testing.swift_server import LocalSwift
    from swiftzarr_batch.transfer.verify import verify_store

    limit = 2 * 1024 * 1024
    with LocalSwift(max_file_size=limit) as server:

        def store(container, prefix=""):
            return SwiftStore(
                container, prefix, authurl=server.auth_url, user=server.user, key=server.key
            )

        src = store("src", "ds")
        root = zarr.group(src)
        big = root.create_array(
            "big", shape=(2, 400_000), chunks=(1, 400_000), dtype="f8", compressors=None
        )  # 3.2 MB chunks: above max_file_size
        big[:] = np.random.default_rng(3).random((2, 400_000))
        root.create_array("small", shape=(4,), chunks=(2,), dtype="i2")[:] = 1
        dst = store("dst", "ds")
        summary = copy_store(src, dst)
        assert summary.keys_copied == summary.keys_total == 7
        assert summary.keys_server_side == 7 and summary.bytes_through_client == 0
        assert store_bytes(dst) == store_bytes(src)
        conn = Connection(authurl=server.auth_url, user=server.user, key=server.key)
        head = conn.head_object("dst", "ds/big/c/0/0")
        assert head.get("x-static-large-object") == "True"
        report = verify_store(dst)
        assert report.ok and report.content_checked, report.format()
        assert copy_store(src, dst).keys_skipped == 7  # re-run: nothing to do (compared by MD5)

        sync(src.delete_dir("big"))
        pruned = copy_store(src, dst, delete_extra=True)
        assert pruned.keys_deleted == 3 and pruned.verified
        assert conn.get_container("dst_segments", full_listing=True)[1] == []
        conn.close()
