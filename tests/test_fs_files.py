"""The swift:// file system as a file system (not as zarr's store), on the real local Swift:
file objects, large files, names, listings against fsspec's MemoryFileSystem, markers, bad
input. What the server holds is read back with python-swiftclient."""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from swiftzarr_batch.errors import InvalidNameError, ReadOnlyError, SwiftHTTPError
from swiftzarr_batch.store.filesystem import SwiftFileSystem
from swiftzarr_batch.swift.retry import RetryPolicy
from swiftzarr_batch.testing.faultproxy import FaultProxy

SWIFT_CLI = str(Path(sys.executable).parent / "swift")
MiB = 2**20


def _fs(server, **kw) -> SwiftFileSystem:
    return SwiftFileSystem(authurl=server.auth_url, user=server.user, key=server.key, **kw)


def _conn(server):
    from swiftclient.client import Connection

    return Connection(authurl=server.auth_url, user=server.user, key=server.key)


def _names(conn, container: str) -> list[str]:
    try:
        return [e["name"] for e in conn.get_container(container, full_listing=True)[1]]
    except Exception as exc:  # a segment container never made
        if getattr(exc, "http_status", None) == 404:
            return []
        raise


@pytest.fixture
def fs(swift_server):
    return _fs(swift_server)


@pytest.fixture
def small_fs(small_swift):
    return _fs(small_swift)


# -- listings: the same answers as fsspec's MemoryFileSystem -----------------------------------
TREE = ["a.txt", "b/c.txt", "b/d/e.txt", "b/d/f/g.txt", "h/i/j/k.txt", "h/l.txt", "m n/ö?#%.txt"]


def test_find_glob_walk_du_expand_path_agree_with_memory_fs(fs, container_name):
    memory = MemoryFileSystem()
    mroot = f"/{container_name}"
    for i, name in enumerate(TREE):
        fs.pipe_file(f"{container_name}/{name}", b"x" * (i + 1))
        memory.pipe_file(f"{mroot}/{name}", b"x" * (i + 1))

    def ours(value):
        return sorted(value) if isinstance(value, list | set) else value

    def theirs(value):
        if isinstance(value, dict):
            return {k.removeprefix("/"): v for k, v in value.items()}
        return sorted(v.removeprefix("/") for v in value)

    differences = []
    for sub, maxdepth, withdirs in itertools.product(
        ["", "/b", "/h"], [None, 1, 2, 3], [False, True]
    ):
        got = ours(fs.find(container_name + sub, maxdepth=maxdepth, withdirs=withdirs))
        want = theirs(memory.find(mroot + sub, maxdepth=maxdepth, withdirs=withdirs))
        if got != want:
            differences.append(("find", sub, maxdepth, withdirs, got, want))
    for pattern in ["*", "*/*", "b/*", "**", "b/**", "**/*.txt", "?.txt", "b/d/*", "h/*/*"]:
        got = sorted(fs.glob(f"{container_name}/{pattern}"))
        want = theirs(memory.glob(f"{mroot}/{pattern}"))
        if got != want:
            differences.append(("glob", pattern, got, want))
    for maxdepth in (None, 1, 2):
        got = [(r, sorted(d), sorted(f)) for r, d, f in fs.walk(container_name, maxdepth=maxdepth)]
        want = [
            (r.removeprefix("/"), sorted(d), sorted(f))
            for r, d, f in memory.walk(mroot, maxdepth=maxdepth)
        ]
        if got != want:
            differences.append(("walk", maxdepth, got, want))
    for recursive, maxdepth in [(False, None), (True, None), (True, 1), (True, 2)]:
        got = sorted(fs.expand_path(f"{container_name}/b", recursive=recursive, maxdepth=maxdepth))
        want = theirs(memory.expand_path(f"{mroot}/b", recursive=recursive, maxdepth=maxdepth))
        if got != want:
            differences.append(("expand_path", recursive, maxdepth, got, want))
    assert fs.du(container_name) == memory.du(mroot) == sum(range(1, len(TREE) + 1))
    assert fs.du(f"{container_name}/b", total=False) == theirs(memory.du(f"{mroot}/b", total=False))
    assert differences == []


def test_info_and_ls_details(fs, swift_server, container_name):
    fs.pipe_file(f"{container_name}/d/table.csv", b"a,b\n1,2\n")
    info = fs.info(f"{container_name}/d/table.csv")
    stat = _conn(swift_server).head_object(container_name, "d/table.csv")
    assert info["type"] == "file" and info["size"] == 8
    assert info["ETag"] == hashlib.md5(b"a,b\n1,2\n").hexdigest() == stat["etag"]
    assert info["content_type"] == "text/csv" == stat["content-type"]
    [listed] = fs.ls(f"{container_name}/d")
    assert listed["ETag"] == info["ETag"] and listed["content_type"] == "text/csv"
    assert listed["last_modified"] and fs.modified(f"{container_name}/d/table.csv").year >= 2024
    assert fs.ukey(f"{container_name}/d/table.csv") == info["ETag"]
    assert fs.info(f"{container_name}/d")["type"] == "directory"
    assert fs.info(container_name)["type"] == "directory"


# -- names ---------------------------------------------------------------------------------------
LITERAL = ["what?is=this", "hash#tag", "100%", "two words", "ünï/cödé ✓", "q?.txt"]


def test_names_are_literal_and_only_account_is_an_option(fs, swift_server, container_name):
    conn = _conn(swift_server)
    for name in LITERAL:
        fs.pipe_file(f"{container_name}/{name}", name.encode())
    assert sorted(_names(conn, container_name)) == sorted(LITERAL)  # as named, not cut
    conn.put_object(container_name, "real?name", b"theirs")  # another client's '?'
    assert fs.cat_file(f"{container_name}/real?name") == b"theirs"
    assert fs.cat_file(f"swift://{container_name}/real?name") == b"theirs"
    for name in LITERAL:
        assert fs.cat_file(f"swift://{container_name}/{name}") == name.encode()
    # in a glob pattern '?' is the wildcard (one character), as everywhere in fsspec
    assert fs.glob(f"{container_name}/q?.txt") == [f"{container_name}/q?.txt"]
    assert fs.glob(f"{container_name}/?.txt") == []
    assert fs.glob(f"{container_name}/q[?].txt") == [f"{container_name}/q?.txt"]
    url = f"swift://{container_name}/what?is=this?account=AUTH_test"
    fs2, path = fsspec.core.url_to_fs(
        url, authurl=swift_server.auth_url, user="test:tester", key="testing"
    )
    assert path == f"{container_name}/what?is=this" and fs2.cat_file(path) == b"what?is=this"


def test_bad_container_names_fail_before_any_request():
    fs = SwiftFileSystem(preauthurl="http://127.0.0.1:9/v1/AUTH_nobody", preauthtoken="t")
    for bad in ("x" * 257 + "/k", "./k", "../k"):
        with pytest.raises(InvalidNameError):
            fs.open(bad, "wb")
        with pytest.raises(InvalidNameError):
            fs.cat_file(bad)
    with pytest.raises(InvalidNameError):
        fs.pipe_file("c/a//b", b"")


def test_writes_are_refused_at_open_when_the_fs_cannot_write(swift_server, container_name):
    fs = _fs(swift_server)
    fs.pipe_file(f"{container_name}/f", b"1")
    anonymous = SwiftFileSystem(anonymous=True, preauthurl=swift_server.storage_url())
    read_only = _fs(swift_server, read_only=True)
    for which, other in (("anonymous", anonymous), ("read_only", read_only)):
        with pytest.raises(ReadOnlyError, match=which):
            other.open(f"{container_name}/g", "wb")
        with pytest.raises(ReadOnlyError):
            other.pipe_file(f"{container_name}/g", b"")
    assert read_only.cat_file(f"{container_name}/f") == b"1"
    with pytest.raises(NotImplementedError, match="ab"):
        fs.open(f"{container_name}/f", "ab")


# -- writing: all or nothing -----------------------------------------------------------------------
def test_a_small_file_is_one_put_with_its_type_and_exclusive_create(
    fs, swift_server, container_name
):
    conn = _conn(swift_server)
    with fs.open(f"{container_name}/notes.json", "wb") as f:
        f.write(b'{"a": 1}')
        assert _names(conn, container_name) == []  # nothing before close
    head = conn.head_object(container_name, "notes.json")
    assert head["content-type"] == "application/json" and "x-static-large-object" not in head
    with pytest.raises(FileExistsError):
        fs.open(f"{container_name}/notes.json", "xb")
    with pytest.raises(FileExistsError):
        fs.pipe_file(f"{container_name}/notes.json", b"new", mode="create")
    assert conn.get_object(container_name, "notes.json")[1] == b'{"a": 1}'
    # created by someone else between open("xb") and close: If-None-Match wins, not us
    f = fs.open(f"{container_name}/race", "xb")
    f.write(b"ours")
    conn.put_object(container_name, "race", b"theirs")
    with pytest.raises(FileExistsError):
        f.close()
    assert conn.get_object(container_name, "race")[1] == b"theirs"
    fs.touch(f"{container_name}/empty")
    assert conn.head_object(container_name, "empty")["content-length"] == "0"


def test_a_large_file_streams_segments_and_appears_at_close(small_fs, small_swift, container_name):
    conn = _conn(small_swift)
    data = os.urandom(5 * MiB + 123)
    with small_fs.open(f"{container_name}/big.bin", "wb", block_size=MiB) as f:
        for start in range(0, len(data), 700_000):
            f.write(data[start : start + 700_000])
        deadline = time.monotonic() + 20  # full blocks went out as segments (in flight)
        while not _names(conn, f"{container_name}_segments") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _names(conn, f"{container_name}_segments")
        assert _names(conn, container_name) == []  # yet the file is not there before close
    head = conn.head_object(container_name, "big.bin")
    assert head["x-static-large-object"] == "True" and int(head["content-length"]) == len(data)
    assert conn.get_object(container_name, "big.bin")[1] == data
    with small_fs.open(f"{container_name}/big.bin", "rb", block_size=MiB // 2) as f:
        f.seek(3 * MiB + 5)
        assert f.read(MiB) == data[3 * MiB + 5 : 4 * MiB + 5]
        f.seek(10)
        assert f.read(20) == data[10:30]
    # overwritten by another large file: the old segments go
    old = set(_names(conn, f"{container_name}_segments"))
    small_fs.pipe_file(f"{container_name}/big.bin", data[: 3 * MiB])
    assert not old & set(_names(conn, f"{container_name}_segments"))
    # server-side copy, segment by segment; then mv and rm take the segments along
    small_fs.cp_file(f"{container_name}/big.bin", f"{container_name}/copy.bin")
    assert conn.get_object(container_name, "copy.bin")[1] == data[: 3 * MiB]
    small_fs.mv(f"{container_name}/copy.bin", f"{container_name}/moved.bin")
    assert sorted(_names(conn, container_name)) == ["big.bin", "moved.bin"]
    small_fs.rm(container_name, recursive=True)
    assert _names(conn, container_name) == [] == _names(conn, f"{container_name}_segments")


def test_an_exception_inside_with_writes_nothing(small_fs, small_swift, container_name):
    conn = _conn(small_swift)
    small_fs.pipe_file(f"{container_name}/keep", b"old")
    with pytest.raises(RuntimeError), small_fs.open(f"{container_name}/keep", "wb") as f:
        f.write(os.urandom(3 * MiB))  # segments sent
        raise RuntimeError("the producer failed")
    assert conn.get_object(container_name, "keep")[1] == b"old"
    assert _names(conn, f"{container_name}_segments") == []


def test_a_failing_upload_raises_and_leaves_nothing(small_swift, container_name):
    conn = _conn(small_swift)
    conn.put_container(container_name)
    token = conn.get_auth()
    with FaultProxy(small_swift.proxy_url) as proxy:
        fs = SwiftFileSystem(
            preauthurl=proxy.via(token[0]),
            preauthtoken=token[1],
            retry=RetryPolicy(attempts=2, base_delay=0.01),
        )
        proxy.inject("503", 100, method="PUT", path_contains="/00000002")  # the third segment
        f = fs.open(f"{container_name}/doomed.bin", "wb", block_size=MiB)
        with pytest.raises(SwiftHTTPError, match="503"):
            f.write(os.urandom(6 * MiB))
            f.close()
        f.close()  # closing again is no way round: nothing more is written
    assert _names(conn, container_name) == []
    assert _names(conn, f"{container_name}_segments") == []


WRITER = """
import os, sys, time
from swiftzarr_batch.store.filesystem import SwiftFileSystem
fs = SwiftFileSystem(authurl=sys.argv[1], user=sys.argv[2], key=sys.argv[3])
f = fs.open(sys.argv[4], "wb", block_size=2**20)
f.write(os.urandom(3 * 2**20))
print("written", flush=True)
time.sleep(60)
"""


def test_a_killed_writer_leaves_no_visible_file(small_swift, container_name):
    conn = _conn(small_swift)
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            WRITER,
            small_swift.auth_url,
            small_swift.user,
            small_swift.key,
            f"{container_name}/partial.bin",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout is not None and writer.stdout.readline().strip() == "written"
        deadline = time.monotonic() + 30
        while not _names(conn, f"{container_name}_segments") and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        writer.kill()  # SIGKILL: no close(), no cleanup
        writer.wait(10)
    assert _names(conn, f"{container_name}_segments")  # it was writing
    assert _names(conn, container_name) == []  # and nothing is visible
    with pytest.raises(FileNotFoundError):
        _fs(small_swift).info(f"{container_name}/partial.bin")


def test_clean_segments_deletes_what_a_killed_writer_left_and_nothing_else(
    small_swift, container_name, cli, capsys, monkeypatch
):
    """The documented cleanup after a kill -9: ``swiftzarr clean-segments`` deletes the
    segments no manifest points at, once old enough, and keeps every live large object's."""
    test_a_killed_writer_leaves_no_visible_file(small_swift, container_name)
    conn = _conn(small_swift)
    orphans = set(_names(conn, f"{container_name}_segments"))
    kept = os.urandom(3 * MiB + 5)
    _fs(small_swift).pipe_file(f"{container_name}/kept.bin", kept)  # a live large object
    live = set(_names(conn, f"{container_name}_segments")) - orphans
    assert live and orphans
    for name, value in small_swift.env.items():
        monkeypatch.setenv(name, value)
    url = f"swift://{container_name}"
    assert cli("clean-segments", url) == 0  # default --older-than 1d: a fresh upload may run
    assert "deleted 0 orphaned segments" in capsys.readouterr().out
    time.sleep(1.2)
    assert cli("clean-segments", url, "--older-than", "1s", "--dry-run") == 0
    said = capsys.readouterr().out
    assert f"would delete {len(orphans)} orphaned segments" in said and "partial.bin/slo/" in said
    assert set(_names(conn, f"{container_name}_segments")) == orphans | live  # dry run
    assert cli("clean-segments", url, "--older-than", "1s") == 0
    assert f"deleted {len(orphans)} orphaned segments" in capsys.readouterr().out
    assert set(_names(conn, f"{container_name}_segments")) == live  # read by swiftclient
    assert conn.get_object(container_name, "kept.bin")[1] == kept


def test_put_get_of_a_directory_and_sign(fs, swift_server, container_name, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "x.csv").write_bytes(b"1,2\n")
    (src / "y.bin").write_bytes(os.urandom(1000))
    fs.put(str(src), f"{container_name}/up", recursive=True)
    conn = _conn(swift_server)
    assert sorted(_names(conn, container_name)) == ["up/sub/x.csv", "up/y.bin"]
    assert conn.head_object(container_name, "up/sub/x.csv")["content-type"] == "text/csv"
    fs.get(f"{container_name}/up", str(tmp_path / "down"), recursive=True)
    assert (tmp_path / "down" / "y.bin").read_bytes() == (src / "y.bin").read_bytes()
    url = fs.sign(f"{container_name}/up/sub/x.csv", expiration=60, create_key=True)
    assert "temp_url_sig=" in url
    with urllib.request.urlopen(url, timeout=10) as answer:  # no token: the signature only
        assert answer.read() == b"1,2\n"


def test_storage_options_delete_after_and_mkdir(swift_server, container_name):
    fs = _fs(swift_server, delete_after=3600)
    fs.mkdir(container_name)  # a container: created
    fs.makedirs(container_name, exist_ok=True)
    with pytest.raises(FileExistsError):
        fs.makedirs(container_name)
    fs.mkdir(f"{container_name}/no/such/dir")  # no empty directories in Swift: nothing made
    assert not fs.exists(f"{container_name}/no")
    with fs.open(f"{container_name}/tmp.txt", "wb") as f:
        f.write(b"short-lived")
    head = _conn(swift_server).head_object(container_name, "tmp.txt")
    assert 3500 < int(head["x-delete-at"]) - time.time() <= 3600


# -- directory markers are not files (issue 24, the file system's side) ----------------------------
def test_directory_markers_are_neither_files_nor_directories(
    fs, swift_server, container_name, tmp_path
):
    (tmp_path / "up" / "emptydir").mkdir(parents=True)
    (tmp_path / "up" / "full").mkdir()
    (tmp_path / "up" / "full" / "f.txt").write_text("data")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ST_", "OS_"))},
        **swift_server.env,
    }
    done = subprocess.run(
        [SWIFT_CLI, "upload", container_name, "up"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    conn = _conn(swift_server)
    conn.put_object(container_name, "up/folder/", b"", content_type="application/directory")
    assert {"up/emptydir", "up/folder/"} <= set(_names(conn, container_name))
    for marker in ("up/emptydir", "up/folder"):
        path = f"{container_name}/{marker}"
        assert not fs.exists(path) and not fs.isfile(path) and not fs.isdir(path)
        with pytest.raises(FileNotFoundError):
            fs.info(path)
    assert fs.ls(f"{container_name}/up", detail=False) == [f"{container_name}/up/full"]
    assert fs.find(container_name) == [f"{container_name}/up/full/f.txt"]
    assert fs.isdir(f"{container_name}/up/full")


def test_the_parallel_readahead_serves_every_read_right_in_one_window_of_memory():
    from swiftzarr_batch.store.fs_readahead import ParallelReadahead

    data = os.urandom(100_000)
    asked: list[list[tuple[int, int]]] = []

    def many(ranges):
        asked.append(ranges)
        return [data[a:b] for a, b in ranges]

    cache = ParallelReadahead(4096, lambda a, b: data[a:b], len(data), fetch_many=many)
    position = 0
    while position < len(data):  # sequential: a window of 4 ranges per miss
        step = 3000 + position % 7000
        assert cache._fetch(position, position + step) == data[position : position + step]
        position += step
        assert len(cache.cache) <= 4096 * 4 + 10_000
    assert all(len(r) <= 4 for r in asked) and max(len(r) for r in asked) == 4
    rng = __import__("random").Random(1)
    for _ in range(200):  # and random reads, anywhere, past the end too
        a = rng.randrange(0, len(data) + 10)
        b = a + rng.randrange(0, 20_000)
        assert cache._fetch(a, b) == data[a:b]
