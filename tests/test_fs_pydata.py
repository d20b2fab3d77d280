"""The PyData stack on swift:// through fsspec, on the real local Swift: pandas (CSV,
Parquet), dask.dataframe over many files on a multi-process LocalCluster, xarray's NetCDF
(h5netcdf) through ``fs.open``, and put/get of a file far larger than the memory they may use."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from swiftzarr_batch.store.filesystem import SwiftFileSystem


@pytest.fixture
def options(swift_server) -> dict[str, str]:
    return {"authurl": swift_server.auth_url, "user": swift_server.user, "key": swift_server.key}


def _frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"id": np.arange(rows), "x": rng.random(rows), "name": [f"n{i % 7}" for i in range(rows)]}
    )


def test_pandas_csv_and_parquet_round_trip(options, swift_conn, container_name):
    df = _frame(2000, 1)
    df.to_csv(f"swift://{container_name}/t/df.csv", index=False, storage_options=options)
    df.to_parquet(f"swift://{container_name}/t/df.parquet", storage_options=options)
    head = swift_conn.head_object(container_name, "t/df.csv")  # stored, typed
    assert head["content-type"] == "text/csv" and int(head["content-length"]) > 20_000
    body = swift_conn.get_object(container_name, "t/df.csv")[1]
    assert body.startswith(b"id,x,name\n0,")
    back = pd.read_csv(f"swift://{container_name}/t/df.csv", storage_options=options)
    pd.testing.assert_frame_equal(back, df)
    back = pd.read_parquet(f"swift://{container_name}/t/df.parquet", storage_options=options)
    pd.testing.assert_frame_equal(back, df)


def test_dask_read_csv_of_many_files_on_a_local_cluster(options, container_name):
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    fs = SwiftFileSystem(**options)
    parts = [_frame(300, seed) for seed in range(6)]
    for i, part in enumerate(parts):
        fs.pipe_file(f"{container_name}/csv/part-{i}.csv", part.to_csv(index=False).encode())
    fs.pipe_file(f"{container_name}/csv/readme.txt", b"not a csv")
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        frame = dd.read_csv(f"swift://{container_name}/csv/*.csv", storage_options=options)
        assert frame.npartitions == 6
        got = client.compute(frame).result()
        ran_on = client.run(lambda: "swiftzarr_batch.store.filesystem" in sys.modules)
    assert all(ran_on.values())  # the workers read Swift themselves
    want = pd.concat(parts, ignore_index=True)
    pd.testing.assert_frame_equal(got.reset_index(drop=True), want, check_dtype=False)


def test_xarray_opens_netcdf_through_fs_open(options, container_name, tmp_path):
    ds = xr.Dataset(
        {"t": (("time", "x"), np.random.default_rng(3).random((50, 40)))},
        coords={"time": np.arange(50), "x": np.linspace(0, 1, 40)},
        attrs={"title": "on swift"},
    )
    local = tmp_path / "ds.nc"
    ds.to_netcdf(local, engine="h5netcdf")
    fs = SwiftFileSystem(**options)
    fs.put_file(str(local), f"{container_name}/nc/ds.nc")
    with fs.open(f"{container_name}/nc/ds.nc", "rb", block_size=64 * 1024) as f:
        opened = xr.open_dataset(f, engine="h5netcdf")
        xr.testing.assert_identical(opened.load(), ds)
    # HDF5 writers seek back, which a streamed upload cannot: the error comes through, and
    # nothing is left behind under the name
    with pytest.raises(OSError, match="Seek"), fs.open(f"{container_name}/nc/ds2.nc", "wb") as f:
        ds.to_netcdf(f, engine="h5netcdf")
    assert not fs.exists(f"{container_name}/nc/ds2.nc")


BOUNDED = """
import json, os, resource, sys
from swiftzarr_batch.store import fs_transfers
fs_transfers.SEGMENT = 2 * 2**20  # segments and ranges of 2 MiB, 4 in flight: ~8 MiB
from swiftzarr_batch.store.filesystem import SwiftFileSystem
auth, user, key, local, remote, size = sys.argv[1:7]
size = int(size)
with open(local, "wb") as f:  # written in 1 MiB steps, never held
    for i in range(size // 2**20):
        f.write(os.urandom(2**20))
fs = SwiftFileSystem(authurl=auth, user=user, key=key)
fs.pipe_file(remote + ".warm", b"x" * 3 * 2**20)  # auth, pools, buffers: before the baseline
fs.get_file(remote + ".warm", local + ".warm")
fs.put_file(local + ".warm", remote + ".warm2")
def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
before = peak()
fs.put_file(local, remote)
after_put = peak()
fs.get_file(remote, local + ".back")
after_get = peak()
print(json.dumps({"before": before, "put": after_put, "get": after_get,
                  "info": fs.info(remote)}))
"""


def test_put_and_get_stream_a_file_far_larger_than_their_memory(
    small_swift, container_name, tmp_path
):
    """A 96 MiB file through a Swift whose max_file_size is 1 MiB (a large object of 1 MiB
    segments) with 2 MiB transfer steps: the process's peak memory grows by far less than
    the file (the bound is a few steps in flight, not the size)."""
    size = 96 * 2**20
    local = tmp_path / "big.bin"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            BOUNDED,
            small_swift.auth_url,
            small_swift.user,
            small_swift.key,
            str(local),
            f"{container_name}/big.bin",
            str(size),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["info"]["size"] == size and seen["info"]["large"]
    assert (tmp_path / "big.bin.back").read_bytes() == local.read_bytes()
    growth = max(seen["put"], seen["get"]) - seen["before"]
    assert growth < 32 * 2**20, f"peak memory grew by {growth / 2**20:.0f} MiB for 96 MiB"
