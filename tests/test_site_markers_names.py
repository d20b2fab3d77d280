"""Containers as people make them, on the real local Swift: directory markers (from the real
``swift`` CLI and from plain PUTs, as Horizon and Cyberduck make them) and legal names that a
bulk-delete request line cannot carry as usually encoded."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
import zarr
from zarr.core.buffer import default_buffer_prototype

from swiftzarr_batch import InvalidNameError, SwiftStore
from swiftzarr_batch.errors import BulkDeleteError
from swiftzarr_batch.swift import bulk
from swiftzarr_batch.transfer.copy import copy_store
from swiftzarr_batch.transfer.verify import verify_store

SWIFT_CLI = str(Path(sys.executable).parent / "swift")
SWIFTZARR = str(Path(sys.executable).parent / "swiftzarr")
PROTO = default_buffer_prototype()
#: Legal names (<= 1 024 UTF-8 bytes) whose usual percent-encoded bulk-delete line is too long.
LONG_NAMES = ("é" * 509, "\U0001f600" * 254, " " * 900, "漢" * 300)


def _store(swift_server, container, prefix="", **kw) -> SwiftStore:
    return SwiftStore(
        container,
        prefix,
        authurl=swift_server.auth_url,
        user=swift_server.user,
        key=swift_server.key,
        **kw,
    )


def _raw_names(swift_conn, container: str, prefix: str = "") -> list[str]:
    """Every object name, markers included, as python-swiftclient lists them."""
    _, listing = swift_conn.get_container(container, prefix=prefix, full_listing=True)
    return [entry["name"] for entry in listing]


# -- directory markers ---------------------------------------------------------------------------
@pytest.fixture
def marked(swift_server, swift_conn, container_name, tmp_path):
    """A zarr hierarchy at ``ds`` with directory markers in it, made the ways users make them."""
    store = _store(swift_server, container_name, "ds")
    root = zarr.group(store)
    root.create_array("a", shape=(6, 6), chunks=(3, 3), dtype="i4")[:] = np.arange(36).reshape(6, 6)
    root.create_group("g").create_array("b", shape=(4,), chunks=(2,), dtype="f8")[:] = 1.5
    keys = list(store.walk())
    # `swift upload` of a folder tree with empty folders in it: python-swiftclient's own markers
    (tmp_path / "ds" / "empty").mkdir(parents=True)
    (tmp_path / "ds" / "g" / "nothing").mkdir(parents=True)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ST_", "OS_"))},
        **swift_server.env,
    }
    done = subprocess.run(
        [SWIFT_CLI, "upload", container_name, "ds"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    # Horizon's "create folder" / Cyberduck: a PUT of `name/`, empty, application/directory
    for name in ("ds/", "ds/v/", "ds/a/", "ds/v/w/"):
        swift_conn.put_object(container_name, name, b"", content_type="application/directory")
    raw = set(_raw_names(swift_conn, container_name))
    assert {"ds/empty", "ds/g/nothing", "ds/", "ds/v/", "ds/a/", "ds/v/w/"} <= raw
    return store, keys


def test_markers_are_not_keys(marked, swift_server, container_name):
    store, keys = marked
    assert list(store.walk()) == keys and "" not in store.walk()
    assert store.listdir() == ["a", "g", "zarr.json"]  # not "empty", not "v" (markers only)
    assert store.listdir("g") == ["b", "zarr.json"]
    root = zarr.open_group(_store(swift_server, container_name, "ds", read_only=True), mode="r")
    assert sorted(name for name, _ in root.members()) == ["a", "g"]
    np.testing.assert_array_equal(root["a"][:], np.arange(36).reshape(6, 6))
    report = verify_store(store)
    assert report.ok and report.orphans == [], report.format()


def test_copies_skip_markers_and_deletes_remove_them(
    marked, swift_server, swift_conn, container_name, tmp_path
):
    store, keys = marked
    local = tmp_path / "copy.zarr"
    summary = copy_store(store, zarr.storage.LocalStore(local))
    assert summary.keys_copied == len(keys)
    files = sorted(str(p.relative_to(local)) for p in local.rglob("*") if p.is_file())
    assert files == keys
    assert not (local / "empty").exists() and not (local / "v").exists()

    dest = _store(swift_server, container_name, "copy")
    assert copy_store(store, dest).keys_copied == len(keys)  # server-side on one cluster
    assert sorted(n[len("copy/") :] for n in _raw_names(swift_conn, container_name, "copy/")) == (
        keys
    )

    zarr.group(store, overwrite=True)  # zarr's overwrite=True: delete_dir of the whole prefix
    assert _raw_names(swift_conn, container_name, "ds/") == ["ds/zarr.json"]


def test_cli_rm_du_tree_with_markers(marked, swift_conn, container_name, swift_env, cli, capsys):
    store, keys = marked
    url = f"swift://{container_name}/ds"
    assert cli("tree", url) == 0
    tree = capsys.readouterr().out
    assert "empty" not in tree and "v" not in tree.split() and "a" in tree.split()
    assert cli("du", "-s", "--bytes", url) == 0
    total = capsys.readouterr().out.split()
    assert int(total[1]) == len(keys)  # objects counted: the keys, not the markers
    assert cli("rm", "-y", url) == 0
    assert f"deleted {len(keys)} objects" in capsys.readouterr().out
    assert _raw_names(swift_conn, container_name, "ds") == []  # markers too


# -- names a bulk-delete line cannot carry percent-encoded -----------------------------------------
def _fill(store: SwiftStore, names) -> None:
    async def put_all() -> None:
        await asyncio.gather(
            *(store.set(n, PROTO.buffer.from_bytes(n.encode("utf-8")[:8])) for n in names)
        )

    zarr.core.sync.sync(put_all())


def test_delete_dir_with_long_legal_names(swift_server, swift_conn, container_name):
    store = _store(swift_server, container_name, "p")
    names = [f"d/k{i:02d}" for i in range(50)] + [f"d/{long}" for long in LONG_NAMES]
    for long in LONG_NAMES:
        assert len(f"p/d/{long}".encode()) <= 1024  # legal
        assert len(quote(f"/{container_name}/p/d/{long}")) > 2564  # too long as usually encoded
    _fill(store, names)
    assert len(_raw_names(swift_conn, container_name, "p/d/")) == 54
    log_before = len(swift_server.access_log_lines())
    zarr.core.sync.sync(store.delete_dir("d"))
    assert _raw_names(swift_conn, container_name) == []
    own = [ln for ln in swift_server.access_log_lines()[log_before:] if " BD " not in ln]
    # With UTF-8 sent raw, all but the spaces fit a line: one bulk request, one single DELETE.
    fits = [len(bulk.body_line(container_name, f"p/d/{n}")) <= 1282 for n in LONG_NAMES]
    assert fits == [True, True, False, True]
    singles = [ln for ln in own if " DELETE " in ln]
    assert len(singles) == 1 and "%2520%2520" in singles[0], singles  # the log quotes again
    assert sum(" POST " in ln and "bulk-delete" in ln for ln in own) == 1


def test_clear_rm_and_overwrite_with_all_long_names(
    swift_server, swift_conn, container_name, swift_env, cli
):
    names = [f"x{i:02d}" for i in range(50)] + list(LONG_NAMES)
    store = _store(swift_server, container_name, "c")
    _fill(store, names)
    zarr.core.sync.sync(store.clear())
    assert _raw_names(swift_conn, container_name) == []

    _fill(store, names)
    zarr.group(store, overwrite=True)
    assert _raw_names(swift_conn, container_name) == ["c/zarr.json"]

    _fill(store, names)
    assert cli("rm", "-y", f"swift://{container_name}/c") == 0
    assert _raw_names(swift_conn, container_name) == []


def test_a_refused_bulk_delete_names_the_refused_keys(swift_server, swift_conn, container_name):
    """Objects the cluster refuses to delete (here: a user who may only read them) are named
    in the error, long names included, and ``refused`` holds them."""
    names = ["k1", "é" * 509]
    _fill(_store(swift_server, container_name), names)
    swift_conn.post_container(container_name, {"X-Container-Read": "test:reader"})
    reader = SwiftStore(
        container_name,
        authurl=swift_server.auth_url,
        user="test:reader",
        key=swift_server.users["test:reader"],
    )
    container = zarr.core.sync.sync(reader.swift_container())
    with pytest.raises(BulkDeleteError) as caught:
        zarr.core.sync.sync(container.bulk_delete(names))
    assert sorted(caught.value.refused) == sorted(f"/{container_name}/{n}" for n in names)
    assert "k1" in str(caught.value) and "403" in str(caught.value)
    assert len(_raw_names(swift_conn, container_name)) == 2  # nothing was deleted


def test_a_lone_surrogate_is_an_invalid_name_before_any_request(swift_server, container_name):
    store = _store(swift_server, container_name)
    before = len(swift_server.access_log_lines())
    for bad in ("a/\ud800/zarr.json", "\udcff"):
        with pytest.raises(InvalidNameError, match="surrogate"):
            zarr.core.sync.sync(store.set(bad, PROTO.buffer.from_bytes(b"x")))
        with pytest.raises(InvalidNameError, match="surrogate"):
            zarr.core.sync.sync(store.get(bad, PROTO))
    with pytest.raises(InvalidNameError, match="surrogate"):
        _store(swift_server, container_name, "p\ud800")
    with pytest.raises(InvalidNameError, match="surrogate"):
        _store(swift_server, "c\ud800")
    assert len(swift_server.access_log_lines()) == before  # not one request


def test_a_marker_is_missing_to_every_read(marked, swift_server, swift_conn, container_name):
    """``swift upload`` of an empty folder leaves ``ds/empty`` (0 bytes, application/directory):
    listings hide it, so exists/get/getsize and the ``swift://`` file system say "missing" too;
    a real object next to it still reads."""
    store, _ = marked
    headers = swift_conn.head_object(container_name, "ds/empty")  # it is there, as a marker
    assert headers["content-type"] == "application/directory" and headers["content-length"] == "0"

    async def reads(key: str) -> tuple[bool, object, object]:
        ranged = zarr.abc.store.RangeByteRequest(0, 4)  # the server answers 416 for 0 bytes
        return (
            await store.exists(key),
            await store.get(key, PROTO),
            await store.get(key, PROTO, byte_range=ranged),
        )

    for key in ("empty", "g/nothing", "v/", "a/"):
        assert zarr.core.sync.sync(reads(key)) == (False, None, None), key
        with pytest.raises(FileNotFoundError):
            zarr.core.sync.sync(store.getsize(key))
    assert zarr.core.sync.sync(store.exists("zarr.json"))  # data beside the markers still reads

    from swiftzarr_batch.store.filesystem import SwiftFileSystem

    fs = SwiftFileSystem(
        authurl=swift_server.auth_url, user=swift_server.user, key=swift_server.key
    )
    assert not fs.isfile(f"{container_name}/ds/empty")
    with pytest.raises(FileNotFoundError):
        fs.info(f"{container_name}/ds/empty")
    assert fs.info(f"{container_name}/ds/zarr.json")["type"] == "file"


def test_listing_commands_refuse_a_missing_container(swift_env, cli, capsys, container_name):
    """``ls``/``du``/``tree``/``verify`` of a container that does not exist say so and exit 1,
    as ``swift list`` does (its listing would otherwise look empty)."""
    for argv in (
        ("ls", f"swift://{container_name}"),
        ("ls", f"swift://{container_name}/some/prefix"),
        ("du", f"swift://{container_name}"),
        ("tree", f"swift://{container_name}/ds"),
        ("verify", f"swift://{container_name}/ds"),
        ("copy", f"swift://{container_name}/ds", f"swift://{container_name}-dest/ds"),
    ):
        assert cli(*argv) == 1, argv
        err = capsys.readouterr().err
        assert f"container '{container_name}' not found" in err, (argv, err)
