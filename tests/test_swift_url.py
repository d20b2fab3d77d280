"""``swift://container/prefix`` as zarr, xarray and dask users type it (issue 14, part 2).

Against the real local Swift: the URL goes through zarr's own ``make_store`` -> fsspec ->
``SwiftFileSystem`` (registered by the ``fsspec.specs`` entry point) -> ``FsspecStore``; what is
stored is checked with python-swiftclient, independently of our data path.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tomllib
import uuid
from importlib.metadata import entry_points
from pathlib import Path

import dask.array as da
import fsspec
import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.core.buffer import Buffer, cpu
from zarr.storage import FsspecStore
from zarr.testing.store import StoreTests

from swiftzarr_batch.errors import (
    AuthenticationError,
    ConfigurationError,
    PermissionDeniedError,
    ReadOnlyError,
    SwiftHTTPError,
)
from swiftzarr_batch.store.filesystem import SwiftFileSystem

pytestmark = [
    pytest.mark.filterwarnings("ignore::zarr.errors.ZarrUserWarning"),
    pytest.mark.filterwarnings("ignore:Consolidated metadata:UserWarning"),
]

REPO = Path(__file__).resolve().parents[1]


def _dataset(n: int = 24) -> xr.Dataset:
    rng = np.random.default_rng(14)
    return xr.Dataset(
        {
            "t": (("time", "x"), rng.random((n, 6))),
            "flag": (("time",), np.arange(n, dtype="i2")),
        },
        coords={"time": np.arange(n) * 10, "x": list("abcdef")},
        attrs={"title": "by url"},
    )


def _objects(conn, container: str, prefix: str) -> dict[str, int]:
    _, listing = conn.get_container(container, prefix=prefix + "/", full_listing=True)
    return {e["name"][len(prefix) + 1 :]: e["bytes"] for e in listing}


def test_xarray_round_trip_by_url_with_environment_credentials(
    swift_env, container_name, swift_conn
):
    ds = _dataset().chunk({"time": 8})
    ds.to_zarr(f"swift://{container_name}/run/ds", mode="w", consolidated=True)

    stored = _objects(swift_conn, container_name, "run/ds")
    assert {"zarr.json", "t/zarr.json", "flag/zarr.json", "t/c/0/0", "t/c/2/0"} <= set(stored)
    back = xr.open_zarr(f"swift://{container_name}/run/ds", consolidated=True)
    assert isinstance(back.t.data, da.Array)
    xr.testing.assert_identical(back.load(), ds.load())
    # zarr built its own FsspecStore over our file system
    group = zarr.open_group(f"swift://{container_name}/run/ds", mode="r")
    assert isinstance(group.store, FsspecStore) and isinstance(group.store.fs, SwiftFileSystem)


def test_storage_options_are_the_stores_arguments_and_win_over_the_environment(
    swift_server, container_name, monkeypatch
):
    monkeypatch.setenv("ST_AUTH", swift_server.auth_url)
    monkeypatch.setenv("ST_USER", swift_server.user)
    monkeypatch.setenv("ST_KEY", "not-the-key")  # the environment is wrong...
    good = {"authurl": swift_server.auth_url, "user": swift_server.user, "key": swift_server.key}
    ds = _dataset(8)
    url = f"swift://{container_name}/opts"
    ds.to_zarr(url, mode="w", storage_options=good)  # ...the options are used
    xr.testing.assert_identical(xr.open_zarr(url, storage_options=good).load(), ds)
    with pytest.raises(AuthenticationError):
        xr.open_zarr(url)  # the environment alone: its wrong key
    # and the other way round: right environment, wrong options -> the options' failure
    monkeypatch.setenv("ST_KEY", swift_server.key)
    xr.testing.assert_identical(xr.open_zarr(url).load(), ds)
    with pytest.raises(AuthenticationError):
        xr.open_zarr(url, storage_options={**good, "key": "wrong-too"})
    with pytest.raises(ConfigurationError, match="authurl, user and key go together"):
        xr.open_zarr(url, storage_options={"user": swift_server.user})
    with pytest.raises(ConfigurationError, match=r"unknown storage option.*'colour'"):
        xr.open_zarr(url, storage_options={"colour": "blue"})


def test_zarr_open_and_open_group_by_url(swift_env, container_name, swift_conn):
    root = zarr.open_group(f"swift://{container_name}/z", mode="w")
    a = root.create_array("grid/a", shape=(40, 30), chunks=(10, 10), dtype="f8", fill_value=-1)
    data = np.arange(1200, dtype="f8").reshape(40, 30)
    a[:] = data
    a[:10, :10] = -1  # all fill value: zarr deletes that chunk
    assert "grid/a/c/0/0" not in _objects(swift_conn, container_name, "z")
    assert "grid/a/c/3/2" in _objects(swift_conn, container_name, "z")

    back = zarr.open(f"swift://{container_name}/z/grid/a", mode="r")
    expected = data.copy()
    expected[:10, :10] = -1
    np.testing.assert_array_equal(back[:], expected)  # the missing chunk: only its 404
    group = zarr.open_group(f"swift://{container_name}/z", mode="r")
    assert list(group.group_keys()) == ["grid"] and list(group["grid"].array_keys()) == ["a"]
    # mode="w" again clears the old hierarchy (zarr's delete_dir: our bulk delete)
    zarr.open_group(f"swift://{container_name}/z", mode="w")
    assert set(_objects(swift_conn, container_name, "z")) == {"zarr.json"}


def test_a_refusal_is_an_error_never_a_fill_value(swift_server, swift_env, container_name):
    zarr.create_array(f"swift://{container_name}/p", shape=(4,), dtype="i4", fill_value=7)[:] = 1
    reader = {"authurl": swift_server.auth_url, "user": "test:reader", "key": "reading"}
    with pytest.raises(PermissionDeniedError):  # 403 on the metadata: not "no array"
        zarr.open_array(f"swift://{container_name}/p", mode="r", storage_options=reader)


def test_dask_to_zarr_by_url(swift_env, container_name):
    arr = da.random.default_rng(3).random((300, 200), chunks=(100, 50))
    da.to_zarr(arr, f"swift://{container_name}/dask/a", mode="w")
    back = da.from_zarr(f"swift://{container_name}/dask/a")
    assert back.chunks == arr.chunks
    np.testing.assert_array_equal(back.compute(), arr.compute())


def test_account_query_opens_another_account_with_the_same_token(
    swift_server, swift_env, container_name
):
    from swiftclient.client import Connection

    other = Connection(authurl=swift_server.auth_url, user="test2:tester2", key="testing2")
    other.put_container(container_name, headers={"X-Container-Read": "test:tester"})
    theirs = {"preauthurl": swift_server.storage_url("test2"), "preauthtoken": other.get_auth()[1]}
    ds = _dataset(6)
    ds.to_zarr(f"swift://{container_name}/shared", mode="w", storage_options=theirs)
    url = f"swift://{container_name}/shared?account=AUTH_test2"
    xr.testing.assert_identical(xr.open_zarr(url).load(), ds)  # test:tester's token, by ACL
    with pytest.raises(SwiftHTTPError, match="403"):  # the ACL is read-only: refused, loudly
        ds.to_zarr(url, mode="w")
    # only ?account= is an option: anything else after a '?' is part of the name (the names
    # rule of swift:// paths), so a misspelt option names a dataset that is not there
    with pytest.raises(FileNotFoundError):
        xr.open_zarr(f"swift://{container_name}/shared?acount=AUTH_test2")


def test_a_public_container_by_url_with_no_credentials(swift_server, container_name, swift_conn):
    ds = _dataset(6)
    creds = {"authurl": swift_server.auth_url, "user": swift_server.user, "key": swift_server.key}
    ds.to_zarr(f"swift://{container_name}/pub", mode="w", storage_options=creds)
    swift_conn.post_container(container_name, {"X-Container-Read": ".r:*,.rlistings"})
    public = {"preauthurl": swift_server.storage_url(), "anonymous": True}
    back = xr.open_zarr(f"swift://{container_name}/pub", storage_options=public)
    xr.testing.assert_identical(back.load(), ds)
    with pytest.raises(ReadOnlyError):  # anonymous is read-only, before any request
        ds.to_zarr(f"swift://{container_name}/pub2", mode="w", storage_options=public)


def test_missing_credentials_are_a_clear_error(container_name):
    with pytest.raises(ConfigurationError, match="no Swift credentials found.*ST_AUTH"):
        xr.open_zarr(f"swift://{container_name}/ds")
    with pytest.raises(ConfigurationError, match="no Swift credentials found"):
        zarr.open_group(f"swift://{container_name}/g", mode="w")


def test_repr_pickle_and_json_carry_no_key(swift_server, swift_env, container_name):
    key = swift_server.key
    opts = {"authurl": swift_server.auth_url, "user": "test:tester", "key": key}
    zarr.open_group(f"swift://{container_name}/k", mode="w", storage_options=opts)
    group = zarr.open_group(f"swift://{container_name}/k", mode="r", storage_options=opts)
    fs = group.store.fs
    token = fs.store(container_name).session.token.token
    texts = [repr(fs), str(fs), repr(group.store), fs.to_json(), str(fs.to_dict())]
    for text in texts:
        assert key not in text and token not in text
    blob = pickle.dumps(group.store)
    assert key.encode() not in blob
    assert token.encode() in blob  # what travels instead: the token, as with SwiftStore
    copy = pickle.loads(blob)
    assert copy.fs.asynchronous and "storage_url" in repr(copy.fs)
    assert list(zarr.open_group(copy, mode="r").keys()) == []


def test_file_system_semantics_on_swift(swift_env, container_name, swift_conn):
    fs = fsspec.filesystem("swift")
    body = bytes(range(256)) * 4
    fs.pipe_file(f"{container_name}/f/a/b.bin", body)
    fs.pipe_file(f"{container_name}/f/top", b"x")
    swift_conn.put_object(  # a directory marker as Horizon and `swift upload` make them
        container_name, "f/a/", b"", content_type="application/directory"
    )
    assert fs.cat_file(f"swift://{container_name}/f/a/b.bin") == body
    for start, end in [(0, 10), (10, None), (-7, None), (5, -5), (-20, -10), (1000, 2000)]:
        assert (
            fs.cat_file(f"{container_name}/f/a/b.bin", start=start, end=end) == (body[start:end])
        ), (start, end)
    assert fs.info(f"{container_name}/f/a/b.bin")["size"] == len(body)
    assert fs.info(f"{container_name}/f/a")["type"] == "directory"
    assert fs.ls(f"{container_name}/f", detail=False) == [
        f"{container_name}/f/a",
        f"{container_name}/f/top",
    ]
    assert fs.find(f"{container_name}/f") == [
        f"{container_name}/f/a/b.bin",
        f"{container_name}/f/top",
    ]
    assert fs.find(f"{container_name}/f", withdirs=True) == [
        f"{container_name}/f",
        f"{container_name}/f/a",
        f"{container_name}/f/a/b.bin",
        f"{container_name}/f/top",
    ]
    with pytest.raises(FileNotFoundError):
        fs.cat_file(f"{container_name}/f/nope")
    with pytest.raises(FileNotFoundError):
        fs.info(f"{container_name}/f/no")
    assert not fs.exists(f"{container_name}/f/no") and fs.exists(f"{container_name}/f/top")
    fs.rm(f"{container_name}/f/a", recursive=True)
    assert set(_objects(swift_conn, container_name, "f")) == {"top"}


def test_a_localcluster_of_processes_reads_by_url_on_the_pickled_token(
    swift_server, swift_env, container_name, monkeypatch
):
    from distributed import Client, LocalCluster

    ds = _dataset(40).chunk({"time": 5})
    url = f"swift://{container_name}/cluster"
    ds.to_zarr(url, mode="w")
    lazy = xr.open_zarr(url)
    for name in ("ST_AUTH", "ST_USER", "ST_KEY"):  # the workers get no credentials at all
        monkeypatch.delenv(name)
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,
    ):
        before = len(swift_server.access_log_lines())
        total = client.compute(lazy.t.sum()).result()
        pids = client.run(os.getpid)
    assert float(total) == pytest.approx(float(ds.t.sum()))
    assert set(pids.values()) - {os.getpid()}  # another process did the reading
    during = swift_server.access_log_lines()[before:]
    assert sum(f" GET /v1/AUTH_test/{container_name}/cluster/t/c/" in ln for ln in during) >= 8
    assert not [ln for ln in during if " GET /auth/v1.0 " in ln]  # nobody authenticated again


def test_the_entry_point_is_declared_and_found_without_importing_the_package(
    swift_env, container_name
):
    declared = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]
    assert declared["fsspec.specs"]["swift"] == "swiftzarr_batch.store.filesystem:SwiftFileSystem"
    if "swift" not in {e.name for e in entry_points(group="fsspec.specs")}:
        pytest.skip("this environment's installed metadata predates the entry point")
    zarr.create_array(f"swift://{container_name}/ep", shape=(3,), dtype="i4")[:] = [4, 5, 6]
    code = (  # a fresh interpreter that never imports swiftzarr_batch itself
        "import sys, zarr; a = zarr.open_array(sys.argv[1], mode='r'); "
        "assert 'swiftzarr_batch' in sys.modules['fsspec'].registry['swift'].__module__; "
        "print(list(a[:]))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, f"swift://{container_name}/ep"],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[np.int32(4), np.int32(5), np.int32(6)]"


class TestFsspecStoreOverSwiftConformance(StoreTests[FsspecStore, cpu.Buffer]):
    """zarr's own Store conformance suite, on the FsspecStore zarr builds for a swift:// URL."""

    store_cls = FsspecStore
    buffer_cls = cpu.Buffer

    @pytest.fixture
    def store_kwargs(self, swift_server) -> dict:
        fs = SwiftFileSystem(
            authurl=swift_server.auth_url,
            user=swift_server.user,
            key=swift_server.key,
            asynchronous=True,
        )
        return {"fs": fs, "path": f"conf-{uuid.uuid4().hex[:10]}/some/prefix"}

    async def set(self, store: FsspecStore, key: str, value: Buffer) -> None:
        container, prefix = store.path.split("/", 1)  # bypass the store: python-swiftclient
        conn = _conn(store)
        conn.put_container(container)
        conn.put_object(container, f"{prefix}/{key}", value.to_bytes())

    async def get(self, store: FsspecStore, key: str) -> Buffer:
        container, prefix = store.path.split("/", 1)
        _, body = _conn(store).get_object(container, f"{prefix}/{key}")
        return self.buffer_cls.from_bytes(body)

    def test_store_repr(self, store: FsspecStore) -> None:
        assert "SwiftFileSystem" in repr(store)

    def test_store_supports_writes(self, store: FsspecStore) -> None:
        assert store.supports_writes

    def test_store_supports_listing(self, store: FsspecStore) -> None:
        assert store.supports_listing


def _conn(store: FsspecStore):
    from swiftclient.client import Connection

    token = store.fs.store(store.path.split("/", 1)[0]).session.token
    return Connection(preauthurl=token.storage_url, preauthtoken=token.token)
