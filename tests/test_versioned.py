"""Versioned repositories (``swiftzarr_batch.versioned``) on the real local Swift.

Server state is checked with python-swiftclient (``swift_conn``) or the ``swift`` CLI, never
with the repository's own reads. Settle times are short (0.1 s) to keep the file fast; the
protocol does not depend on them being long on a single local proxy.
"""

from __future__ import annotations

import hashlib
import itertools
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

from swiftzarr_batch import LeaseHeldError, Repository, SwiftStore
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
    # another branch from the first commit: main does not move
    repo.create_branch("dev", first)
    with repo.writable_session("dev") as s:
        zarr.open_array(s.store, path="x")[:] = 3
        dev = s.commit("dev work")
    assert repo.branches() == {"main": second, "dev": dev}
    assert repo.log("dev")[1].id == first
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


def test_a_lease_near_its_end_is_neither_renewed_nor_cleared(creds, container_name, swift_conn):
    """No conditional PUT in Swift: a read-then-write of the lease near its expiry could
    overwrite a new holder's lease (and its higher fence), so it is not written then."""
    from swiftzarr_batch.versioned.sessions import run

    repo = _repo(creds, container_name)
    session = repo.writable_session(lease_ttl=3)
    session.lease.stop_heartbeat()
    time.sleep(3 - (3 / 6 + SETTLE) + 0.2)  # inside the margin, before the end
    with pytest.raises(LeaseLostError, match="not renewed in time"):
        run(session.lease.renew())
    run(session.lease.release())  # left to expire: still ours at the server
    _, body = swift_conn.get_object(container_name, "ds/refs/lease.main.json")
    assert json.loads(body)["holder"] == session.lease.id


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


def _reachable_at_server(conn, container, prefix="ds") -> set[str]:
    """What the refs reach, walked with python-swiftclient and plain JSON (not our code)."""
    _, objs = conn.get_container(container, prefix=f"{prefix}/refs/", full_listing=True)
    todo = [
        json.loads(conn.get_object(container, o["name"])[1])["snapshot"]
        for o in objs
        if "/lease." not in o["name"]
    ]
    keep: set[str] = set()
    while todo:
        sid = todo.pop()
        if f"{prefix}/snapshots/{sid}" in keep:
            continue
        keep.add(f"{prefix}/snapshots/{sid}")
        snap = json.loads(conn.get_object(container, f"{prefix}/snapshots/{sid}")[1])
        for piece_id, *_ in snap["pieces"]:
            keep.add(f"{prefix}/manifests/{piece_id}")
            piece = json.loads(conn.get_object(container, f"{prefix}/manifests/{piece_id}")[1])
            for key, session, _size in piece["entries"]:
                keep.add(f"{prefix}/chunks/{piece['sessions'][session]}/{key}")
        if snap["parent"]:
            todo.append(snap["parent"])
    return keep


def test_gc_keeps_what_is_reachable_and_deletes_the_rest(creds, container_name, swift_conn):
    repo = _repo(creds, container_name, piece_entries=4)
    with repo.writable_session() as s:
        _write(s, 1)
        c1 = s.commit("1")
    with repo.writable_session() as s:
        zarr.open_array(s.store, path="a")[0:4] = 5
        c2 = s.commit("2")
    with repo.writable_session() as s:
        _write(s, 3)
        c3 = s.commit("3")
    repo.rollback("main", c2)  # c3 is now unreachable
    with repo.writable_session() as s:  # a session that never commits
        zarr.open_array(s.store, path="a")[:] = 9
    all_before = set(_server_names(swift_conn, container_name, "ds/"))

    assert repo.gc(older_than=3600).deleted == []  # everything is younger than the grace
    assert set(_server_names(swift_conn, container_name, "ds/")) == all_before

    report = repo.gc(older_than=0)
    after = set(_server_names(swift_conn, container_name, "ds/"))
    keep = _reachable_at_server(swift_conn, container_name)
    refs = {n for n in after if n.startswith("ds/refs/")} | {"ds/repo.json"}
    assert after == keep | refs
    assert {f"ds/{k}" for k in report.deleted} == all_before - after
    assert f"snapshots/{c3}" in report.deleted and report.deleted_snapshots == [c3]
    # counted at the server: c1's 10 keys + c2's one rewritten chunk, nothing of c3 or the
    # abandoned session, no session records
    assert len([n for n in after if n.startswith("ds/chunks/")]) == 11
    assert not [n for n in after if n.startswith("ds/sessions/")]
    assert (_read(repo.readonly_session(snapshot_id=c1)) == 1).all()
    assert _read(repo.readonly_session())[:5].tolist() == [5, 5, 5, 5, 1]
    with pytest.raises(RefNotFoundError):
        repo.readonly_session(snapshot_id=c3)


def test_export_is_plain_zarr_listed_by_the_swift_cli(creds, container_name, swift_conn):
    repo = _repo(creds, container_name, piece_entries=4)
    with repo.writable_session() as s:
        _write(s, 4)
        snap = s.commit("4")
    dest = SwiftStore(container_name, "plain", **creds)
    report = repo.export(snap, dest)
    assert report.server_side and report.keys == 10
    arr = zarr.open_array(SwiftStore(container_name, "plain", read_only=True, **creds), path="a")
    assert (arr[:] == 4).all() and arr.attrs["commit"] == 4
    other = f"{container_name}-x"
    repo.export("main", SwiftStore(other, "copy", **creds))
    if not Path(SWIFT_CLI).exists():
        pytest.skip(f"no swift CLI next to {sys.executable}")
    out = subprocess.run(
        [
            SWIFT_CLI,
            "-A",
            creds["authurl"],
            "-U",
            creds["user"],
            "-K",
            creds["key"],
            "list",
            other,
            "--prefix",
            "copy/",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    expected = sorted(zarr.core.sync.sync(_collect(repo.readonly_session().store.list())))
    assert out == [f"copy/{k}" for k in expected]
    assert (
        swift_conn.get_object(other, "copy/a/c/0")[1]
        == swift_conn.get_object(container_name, "plain/a/c/0")[1]
    )


def test_cli_log_tag_diff_rollback_gc_export(creds, container_name, swift_env, cli, capsys):
    repo = _repo(creds, container_name)
    with repo.writable_session() as s:
        _write(s, 1)
        c1 = s.commit("first")
    with repo.writable_session() as s:
        zarr.open_array(s.store, path="a")[0:4] = 2
        c2 = s.commit("second")
    url = f"swift://{container_name}/ds"
    capsys.readouterr()
    assert cli("log", url, "--json") == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows[:2]] == [c2, c1] and rows[0]["message"] == "second"
    assert cli("tag", url, "good", c1) == 0
    assert capsys.readouterr().out == f"tagged {c1} as good\n"
    assert cli("diff", url, "good", "main", "--json") == 0
    assert json.loads(capsys.readouterr().out) == {
        "added": [],
        "removed": [],
        "modified": ["a/c/0"],
    }
    assert cli("diff", url, "good", "main") == 0
    assert capsys.readouterr().out.split("\n")[0] == "M a/c/0"
    assert cli("rollback", url, "main", "good") == 0
    assert repo.readonly_session().snapshot_id == c1
    assert cli("gc", url, "--older-than", "0") == 0
    assert "snapshots" in capsys.readouterr().out  # c2 went
    assert cli("export", url, "main", f"swift://{container_name}/exported") == 0
    assert (
        zarr.open_array(SwiftStore(container_name, "exported", **creds), path="a")[:] == 1
    ).all()
    assert cli("log", f"swift://{container_name}/nothing-here") == 1
    assert "no versioned repository" in capsys.readouterr().err


def test_xarray_to_zarr_and_open_zarr_through_sessions(creds, container_name):
    xr = pytest.importorskip("xarray")
    repo = _repo(creds, container_name)
    ds = xr.Dataset(
        {"t": (("time", "x"), np.arange(24.0).reshape(6, 4))},
        coords={"time": np.arange(6), "x": np.arange(4)},
    )
    with repo.writable_session() as s:
        ds.to_zarr(s.store, mode="w", encoding={"t": {"chunks": (2, 4)}})
        first = s.commit("six steps")
    more = ds.assign_coords(time=np.arange(6, 12))
    with repo.writable_session() as s:
        more.to_zarr(s.store, append_dim="time")
        s.commit("twelve steps")
    now = xr.open_zarr(repo.readonly_session().store)
    assert now.sizes["time"] == 12
    xr.testing.assert_identical(now.isel(time=slice(6, 12)).load(), more.load())
    then = xr.open_zarr(repo.readonly_session(snapshot_id=first).store)
    assert then.sizes["time"] == 6
    xr.testing.assert_identical(then.load(), ds)


def test_dask_cluster_writes_through_a_writable_session(creds, container_name):
    da = pytest.importorskip("dask.array")
    distributed = pytest.importorskip("distributed")
    repo = _repo(creds, container_name)
    with repo.writable_session() as s:
        arr = zarr.create_array(
            s.store, name="x", shape=(40, 40), chunks=(10, 10), dtype="f8", fill_value=0.0
        )
        arr[:] = 1.0
        first = s.commit("ones")
    values = np.arange(1600.0).reshape(40, 40) + 1
    values[:10, :10] = 0.0  # a block of fill values: the worker deletes that chunk
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        distributed.Client(cluster),
        repo.writable_session() as s,
    ):
        target = zarr.open_array(s.store, path="x")
        da.from_array(values, chunks=(10, 10)).store(target, lock=False)
        assert repo.readonly_session().snapshot_id == first  # nothing visible before commit
        second = s.commit("from the workers")
    out = zarr.open_array(repo.readonly_session().store, path="x", mode="r")[:]
    assert np.array_equal(out, values)
    assert repo.diff(first, second).removed == ["x/c/0/0"]
    assert len(repo.diff(first, second).modified) == 15


@pytest.mark.parametrize("seed", range(30))
async def test_manifest_merge_matches_a_dict_model(seed):
    """The split-manifest merge against a plain dict, on random keys, changes and deleted
    prefixes (no server: pieces saved in memory). Pieces stay sorted, disjoint and capped,
    and pieces no change touches are kept unread."""
    import random

    from swiftzarr_batch.versioned.manifests import ManifestReader, merge_pieces

    rng = random.Random(seed)
    cap = rng.choice([2, 3, 5, 8])
    saved: dict[str, bytes] = {}

    async def save(piece_id, body):
        saved[piece_id] = body

    async def load(piece_id):
        return saved[piece_id]

    def key() -> str:
        return f"{rng.choice('abc')}/c/{rng.randrange(40)}"

    async def stream(items):
        for item in items:
            yield item

    model: dict[str, tuple[str, int]] = {}
    pieces: list = []
    for step in range(4):
        changes = {
            key(): (None if rng.random() < 0.25 else (f"s{step}", rng.randrange(99)))
            for _ in range(rng.randrange(0, 25))
        }
        prefixes = {rng.choice(["a/", "b/c/1", "c/"])} if rng.random() < 0.3 else set()
        for k in list(model):
            if any(k.startswith(p) for p in prefixes):
                del model[k]
        for k, v in changes.items():
            if v is None:
                model.pop(k, None)
            else:
                model[k] = v
        parent = ManifestReader(pieces, load)
        pieces, stats = await merge_pieces(
            parent, stream(sorted(changes.items())), prefixes, cap, save
        )
        merged = {}
        for ref in pieces:
            piece = await ManifestReader(pieces, load).piece(ref)
            assert 0 < len(piece) <= cap and list(piece) == sorted(piece)
            assert (ref.first, ref.last) == (min(piece), max(piece))
            merged.update(piece)
        assert [p.first for p in pieces] == sorted(p.first for p in pieces)
        assert all(a.last < b.first for a, b in itertools.pairwise(pieces))
        assert merged == dict(sorted(model.items()))
        assert stats.keys == len(model)
        for k, v in model.items():
            assert await ManifestReader(pieces, load).lookup(k) == v


def test_ingest_workflow_commits_once_per_run(
    swift_server, creds, container_name, tmp_path, monkeypatch
):
    """``versioned = true``: each run is one commit, made after the run verified; a run that
    finds the branch leased exits 75 and commits nothing."""
    xr = pytest.importorskip("xarray")
    from test_workflows import expected, make_file, write_config

    from swiftzarr_batch.workflows.common import EXIT_LOCKED
    from swiftzarr_batch.workflows.ingest import run_from_config as ingest

    for name, value in swift_server.env.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "in").mkdir()
    for i in range(3):
        make_file(tmp_path / "in", i)
    cfg = write_config(tmp_path, container_name, extra="", per_commit=2)
    cfg.write_text(
        cfg.read_text().replace("lock_ttl_seconds", "versioned = true\nlock_ttl_seconds")
    )
    assert ingest(cfg) == 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    repo = Repository.open(container_name, "ds.zarr", **creds)
    assert summary["verified"] and summary["snapshot"] == repo.log()[0].id
    assert len(repo.log()) == 2  # the empty first snapshot, then one commit for 3 files
    first = summary["snapshot"]
    got = xr.open_zarr(repo.readonly_session().store, consolidated=True).load()
    xr.testing.assert_identical(got, expected(tmp_path, 3))

    for i in range(3, 5):
        make_file(tmp_path / "in", i)
    with repo.writable_session(lease_ttl=30):  # another writer holds the branch
        assert ingest(cfg) == EXIT_LOCKED
    assert repo.log()[0].id == first
    assert ingest(cfg) == 0
    assert [e.message for e in repo.log()[:2]] == ["ingest: 2 files", "ingest: 3 files"]
    xr.testing.assert_identical(
        xr.open_zarr(repo.readonly_session().store).load(), expected(tmp_path, 5)
    )
    before = xr.open_zarr(repo.readonly_session(snapshot_id=first).store).load()
    xr.testing.assert_identical(before, expected(tmp_path, 3))


def test_mirror_workflow_from_and_into_repositories(
    swift_server, creds, container_name, tmp_path, monkeypatch
):
    """``source_versioned``: the source repository's head, one snapshot, is copied;
    ``versioned``: the target is a repository committed once per run."""
    from test_workflows import write_mirror_config

    from swiftzarr_batch.workflows.mirror import run_from_config as mirror

    for name, value in swift_server.env.items():
        monkeypatch.setenv(name, value)
    src = _repo(creds, container_name, "src")
    with src.writable_session() as s:
        _write(s, 6)
        head = s.commit("6")
    with src.writable_session() as s:  # a commit in progress: the mirror must not see it
        _write(s, 7)
        extra = "source_versioned = true\nversioned = true\n"
        cfg = write_mirror_config(
            tmp_path, f"swift://{container_name}/src", f"swift://{container_name}/dst", extra
        )
        assert mirror(cfg) == 0
    summary = json.loads((tmp_path / "mirror.json").read_text())
    assert summary["source_snapshot"] == head and summary["verified"]
    dst = Repository.open(container_name, "dst", **creds)
    assert dst.log()[0].id == summary["snapshot"] and dst.log()[0].message.startswith("mirror")
    assert (_read(dst.readonly_session()) == 6).all()
    assert dst.diff(dst.log()[1].id, summary["snapshot"]).added == sorted(
        zarr.core.sync.sync(_collect(src.readonly_session().store.list()))
    )
