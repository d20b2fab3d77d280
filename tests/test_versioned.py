"""Versioned repositories (``swiftzarr_batch.versioned``) on the real local Swift.

Server state is checked with python-swiftclient (``swift_conn``) or the ``swift`` CLI, never
with the repository's own reads. Settle times are short (0.1 s) to keep the file fast; the
protocol does not depend on them being long on a single local proxy.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import zarr

from swiftzarr_batch import LeaseHeldError, Repository
from swiftzarr_batch.versioned import (
    BranchMovedError,
    CommitLostError,
    LeaseLostError,
    RefNotFoundError,
    SessionClosedError,
)

SETTLE = 0.1
SWIFT_CLI = str(Path(sys.executable).parent / "swift")


def _repo(creds, container, prefix="ds", **kw) -> Repository:
    kw.setdefault("settle", SETTLE)
    return Repository.open_or_create(container, prefix, **kw, **creds)


def _write(session, value: int, *, n: int = 8, chunk: int = 4) -> None:
    """The whole array ``a`` set to ``value``, and an attribute saying which commit it is."""
    arr = zarr.create_array(
        session.store,
        name="a",
        shape=(n * chunk,),
        chunks=(chunk,),
        dtype="i8",
        fill_value=0,
        overwrite=True,
        attributes={"commit": value},
    )
    arr[:] = value


def _read(session) -> np.ndarray:
    return zarr.open_array(session.store, path="a", mode="r")[:]


def _server_names(conn, container, prefix) -> list[str]:
    _, objs = conn.get_container(container, prefix=prefix, full_listing=True)
    return [o["name"] for o in objs]


def test_commit_log_rollback_time_travel_tag_diff(creds, container_name, swift_conn):
    repo = _repo(creds, container_name, piece_entries=3)
    assert (
        Repository.open(container_name, "ds", **creds).log()[0].message == "Repository initialized"
    )
    ids, times = [], []
    for value in (1, 2, 3):
        with repo.writable_session("main", lease_ttl=10) as session:
            _write(session, value)
            if value == 3:  # visible to its own session, invisible to readers until commit
                assert (_read(session) == 3).all()
                assert (_read(repo.readonly_session("main")) == 2).all()
            ids.append(session.commit(f"commit {value}"))
        times.append(datetime.now(UTC))
        time.sleep(0.05)
    log = repo.log("main")
    assert [e.id for e in log[:3]] == ids[::-1]
    assert [e.message for e in log[:3]] == ["commit 3", "commit 2", "commit 1"]
    assert log[0].parent == ids[1]

    # the head as the server holds it, read independently
    head = json.loads(swift_conn.get_object(container_name, "ds/refs/branch.main.json")[1])
    assert head["snapshot"] == ids[2]
    # snapshots are content-addressed: the name is the hash of the body
    body = swift_conn.get_object(container_name, f"ds/snapshots/{ids[0]}")[1]
    assert hashlib.sha256(body).hexdigest()[:32] == ids[0]

    # time travel by time and by tag
    assert (_read(repo.readonly_session(as_of=times[0])) == 1).all()
    assert (_read(repo.readonly_session("main", as_of=times[1])) == 2).all()
    with pytest.raises(RefNotFoundError):
        repo.readonly_session(as_of=datetime(2000, 1, 1, tzinfo=UTC))
    repo.tag("v1", ids[0])
    assert (_read(repo.readonly_session(tag="v1")) == 1).all()
    with pytest.raises(Exception, match="already exists"):
        repo.tag("v1", ids[1])

    # diff: only chunks and the array's metadata changed (attributes)
    diff = repo.diff(ids[0], ids[1])
    assert not diff.added and not diff.removed
    assert set(diff.modified) == {"a/zarr.json", *(f"a/c/{i}" for i in range(8))}

    # rollback: the older data byte-identical, by one head PUT
    before = {k: repo.readonly_session(snapshot_id=ids[0]).store for k in ["s"]}["s"]
    raw_before = [zarr.core.sync.sync(before.get(f"a/c/{i}")).to_bytes() for i in range(8)]
    assert repo.rollback("main", ids[0]) == ids[2]
    now = repo.readonly_session("main")
    assert now.snapshot_id == ids[0]
    raw_now = [zarr.core.sync.sync(now.store.get(f"a/c/{i}")).to_bytes() for i in range(8)]
    assert raw_now == raw_before
    _, raw_server = swift_conn.get_object(
        container_name,
        f"ds/chunks/{repo.log()[0].id and repo.readonly_session().snapshot.session}/a/c/0",
    )
    assert raw_server == raw_before[0]
    # the rolled-back snapshot stays readable by id
    assert (_read(repo.readonly_session(snapshot_id=ids[2])) == 3).all()


def test_session_semantics_and_listing(creds, container_name):
    repo = _repo(creds, container_name, piece_entries=4)
    with repo.writable_session() as s:
        root = zarr.open_group(s.store, mode="w")
        root.create_array("x", shape=(6,), chunks=(2,), dtype="u1", fill_value=0)[:] = 7
        root.create_array("y", shape=(4,), chunks=(2,), dtype="u1", fill_value=0)[:] = 9
        first = s.commit("two arrays")
    with pytest.raises(SessionClosedError):
        zarr.core.sync.sync(s.store.set("k", zarr.core.buffer.cpu.Buffer.from_bytes(b"1")))
    store = repo.readonly_session().store
    keys = sorted(zarr.core.sync.sync(_collect(store.list())))
    assert keys == [
        "x/c/0",
        "x/c/1",
        "x/c/2",
        "x/zarr.json",
        "y/c/0",
        "y/c/1",
        "y/zarr.json",
        "zarr.json",
    ]
    assert sorted(zarr.core.sync.sync(_collect(store.list_dir("")))) == ["x", "y", "zarr.json"]
    with pytest.raises(Exception, match="read-only"):
        zarr.core.sync.sync(store.set("x/c/0", zarr.core.buffer.cpu.Buffer.from_bytes(b"1")))

    with repo.writable_session() as s:
        zarr.core.sync.sync(s.store.delete_dir("y"))
        zarr.core.sync.sync(s.store.delete("x/c/2"))
        assert not zarr.core.sync.sync(s.store.exists("x/c/2"))
        assert zarr.core.sync.sync(s.store.get("y/zarr.json")) is None
        listed = sorted(zarr.core.sync.sync(_collect(s.store.list())))
        assert listed == ["x/c/0", "x/c/1", "x/zarr.json", "zarr.json"]
        second = s.commit("drop y and a chunk")
    assert sorted(zarr.core.sync.sync(_collect(repo.readonly_session().store.list()))) == listed
    diff = repo.diff(first, second)
    assert diff.removed == ["x/c/2", "y/c/0", "y/c/1", "y/zarr.json"] and not diff.added
    # a closed session without commit leaves the branch where it was and frees the lease
    with repo.writable_session() as s:
        zarr.open_array(s.store, path="x")[:] = 1
    assert repo.log()[0].id == second
    assert (zarr.open_array(repo.readonly_session().store, path="x", mode="r")[:4] == 7).all()


async def _collect(it):
    return [x async for x in it]


READER = textwrap.dedent(
    """
    import json, sys, time, zarr, numpy as np
    from swiftzarr_batch import Repository
    creds, container, out, deadline = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
    repo = Repository.open(container, "ds", **creds)
    seen = []
    while time.time() < deadline and not __import__("os").path.exists(out + ".stop"):
        s = repo.readonly_session("main")
        a = zarr.open_array(s.store, path="a", mode="r")
        data = a[:]
        seen.append([s.snapshot_id, a.attrs["commit"], sorted(set(data.tolist()))])
    json.dump(seen, open(out, "w"))
    """
)


def test_reader_never_sees_a_mix_during_20_commits(creds, container_name, tmp_path):
    repo = _repo(creds, container_name)
    with repo.writable_session() as s:
        _write(s, 0)
        s.commit("0")
    out = tmp_path / "seen.json"
    reader = subprocess.Popen(
        [
            sys.executable,
            "-c",
            READER,
            json.dumps(creds),
            container_name,
            str(out),
            str(time.time() + 120),
        ]
    )
    try:
        expected = {}
        for value in range(1, 21):
            with repo.writable_session(lease_ttl=10) as s:
                _write(s, value)
                expected[s.commit(str(value))] = value
        (tmp_path / "seen.json.stop").touch()
        assert reader.wait(timeout=60) == 0
    finally:
        reader.kill()
    seen = json.loads(out.read_text())
    assert len(seen) >= 5
    for snapshot_id, attr, values in seen:
        # one commit's data and metadata, whole: never two values, never another commit's attrs
        assert values == [attr], (snapshot_id, attr, values)
        assert expected.get(snapshot_id, 0) == attr
    assert len({v[1] for v in seen}) >= 2  # it did read while commits happened


WRITER = textwrap.dedent(
    """
    import json, sys, zarr
    from swiftzarr_batch import Repository
    creds, container = json.loads(sys.argv[1]), sys.argv[2]
    repo = Repository.open(container, "ds", settle=0.1, **creds)
    s = repo.writable_session("main", lease_ttl=10)
    a = zarr.open_array(s.store, path="a")
    a[:] = 2
    a.attrs["commit"] = 2
    print("committing", flush=True)
    s.commit("2")
    print("committed", flush=True)
    """
)


def test_kill_9_mid_commit_then_next_writer_after_lease_expiry(creds, container_name, swift_conn):
    # many small pieces: the killed commit spends its time writing them, before the head PUT
    repo = _repo(creds, container_name, piece_entries=2)
    with repo.writable_session() as s:
        _write(s, 1, n=100, chunk=1)
        first = s.commit("1")
    before = len(_server_names(swift_conn, container_name, "ds/manifests/"))
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, json.dumps(creds), container_name],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout.readline().strip() == "committing"
    # kill it as soon as its commit has written its first new manifest piece (of ~100)
    deadline = time.time() + 60
    while len(_server_names(swift_conn, container_name, "ds/manifests/")) == before:
        assert time.time() < deadline and writer.poll() is None
        time.sleep(0.01)
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    # it was mid-commit: it had written new pieces, and the head did not move
    head = json.loads(swift_conn.get_object(container_name, "ds/refs/branch.main.json")[1])
    assert head["snapshot"] == first
    r = repo.readonly_session()
    assert r.snapshot_id == first and (_read(r) == 1).all()
    assert r.store.__class__.__name__ == "SnapshotStore"
    # the dead writer's lease blocks the next writer until it expires
    with pytest.raises(LeaseHeldError, match="being written by"):
        repo.writable_session(lease_ttl=10)
    lease = json.loads(swift_conn.get_object(container_name, "ds/refs/lease.main.json")[1])
    time.sleep(max(0.0, lease["expires_at"] - time.time()) + 0.2)
    with repo.writable_session(lease_ttl=10) as s:
        assert s.parent.id == first
        _write(s, 3, n=100, chunk=1)
        third = s.commit("3")
    after = json.loads(swift_conn.get_object(container_name, "ds/refs/branch.main.json")[1])
    assert after["snapshot"] == third and after["fence"] > lease["fence"]
    assert (_read(repo.readonly_session()) == 3).all()


def test_two_writers_at_once_one_fails_clearly(creds, container_name):
    repo = _repo(creds, container_name, settle=0.5)
    with repo.writable_session() as s:
        _write(s, 1)
        s.commit("1")
    barrier = threading.Barrier(2)
    results: dict[int, object] = {}

    def writer(value: int) -> None:
        barrier.wait()
        try:
            with repo.writable_session(lease_ttl=10) as s:
                _write(s, value)
                results[value] = s.commit(str(value))
        except Exception as exc:
            results[value] = exc

    threads = [threading.Thread(target=writer, args=(v,)) for v in (10, 20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    failed = [v for v, r in results.items() if isinstance(r, Exception)]
    won = [v for v, r in results.items() if isinstance(r, str)]
    assert len(failed) == 1 and len(won) == 1, results
    assert isinstance(results[failed[0]], LeaseHeldError)
    assert "only one writable session per branch" in str(results[failed[0]])
    assert repo.readonly_session().snapshot_id == results[won[0]]
    assert (_read(repo.readonly_session()) == won[0]).all()


def test_fencing_refuses_a_writer_whose_lease_was_taken_over(creds, container_name):
    repo = _repo(creds, container_name)
    with repo.writable_session() as s:
        _write(s, 1)
        s.commit("1")
    stalled = repo.writable_session(lease_ttl=2)
    stalled.lease.stop_heartbeat()  # a writer that stops renewing (stalled, suspended)
    _write(stalled, 5)
    time.sleep(2.2)
    with repo.writable_session(lease_ttl=10) as s:
        _write(s, 7)
        newer = s.commit("7")
    with pytest.raises(LeaseLostError, match="taken over"):
        stalled.commit("5")
    assert repo.readonly_session().snapshot_id == newer
    assert (_read(repo.readonly_session()) == 7).all()


def test_racing_head_moves_lose_one_commit_detectably(creds, container_name, monkeypatch):
    """The race no lease prevents without compare-and-swap: two writers past their fence
    checks PUT the head at once. One head wins; the other writer learns it lost; both
    snapshots are intact."""
    repo = _repo(creds, container_name, settle=0.5)
    with repo.writable_session() as s:
        _write(s, 1)
        parent = s.commit("1")
    a = repo.writable_session(lease_ttl=30)
    _write(a, 2)
    a.lease.stop_heartbeat()
    # b took over a's lease while a stalled *after* its fence check (simulated: a's check and
    # its head read pass as they did before the stall)
    zarr.core.sync.sync(a.lease.release())
    b = repo.writable_session(lease_ttl=30)
    _write(b, 3)

    async def passed() -> None:
        return None

    monkeypatch.setattr(a.lease, "check", passed)
    barrier = threading.Barrier(2)
    results: dict[str, object] = {}

    def commit(name, session) -> None:
        barrier.wait()
        try:
            results[name] = session.commit(name)
        except Exception as exc:
            results[name] = exc

    threads = [threading.Thread(target=commit, args=(n, s)) for n, s in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    winners = {n: r for n, r in results.items() if isinstance(r, str)}
    losers = {n: r for n, r in results.items() if not isinstance(r, str)}
    assert len(winners) <= 1 and len(winners) + len(losers) == 2, results
    for exc in losers.values():
        assert isinstance(exc, (CommitLostError, BranchMovedError)), exc
    head = repo.readonly_session()
    if winners:
        assert head.snapshot_id == next(iter(winners.values()))
    values = {"a": 2, "b": 3}
    assert (_read(head) == (values[next(iter(winners))] if winners else 1)).all()
    # a lost commit's snapshot, when it was written, is whole and readable by id
    for exc in losers.values():
        if isinstance(exc, CommitLostError):
            lost_id = str(exc).split("snapshot ")[1].split(" ")[0]
            lost = repo.readonly_session(snapshot_id=lost_id)
            assert len(set(_read(lost).tolist())) == 1
            assert lost.snapshot.parent == parent
