"""The helpers on a real multi-process ``LocalCluster`` (2 worker processes with nannies).

This module starts its own Swift server, so its proxy access log holds only this module's
requests: the server, not our counters, proves how many auth requests a job made and when the
consolidated metadata was written. One cluster is shared by the module (starting one is slow).
"""

from __future__ import annotations

import os
import signal
import threading
import time
import urllib.request

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from zarr.storage import MemoryStore
from zarr_reference import raw_arrays, reference_objects, swift_objects

from swiftzarr_batch import (
    AppendConflictError,
    RetryPolicy,
    SwiftHTTPError,
    SwiftStore,
    job_counters,
    write_array,
    write_dataset,
)
from swiftzarr_batch.auth import V1Password
from swiftzarr_batch.swift.session import process_counters
from swiftzarr_batch.testing.faultproxy import FaultProxy
from swiftzarr_batch.testing.swift_server import LocalSwift

distributed = pytest.importorskip("distributed")
pytestmark = [
    pytest.mark.filterwarnings("ignore::zarr.errors.ZarrUserWarning"),
    pytest.mark.timeout(300),
]

DATA = np.arange(1024 * 1024, dtype="<i4").reshape(1024, 1024)  # 16 x 16 = 256 chunks of 64x64
AUTH = " GET /auth/v1.0 "


@pytest.fixture(scope="module")
def swift():
    with LocalSwift() as server:
        yield server


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=2,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


@pytest.fixture
def conn(swift):
    from swiftclient.client import Connection

    c = Connection(authurl=swift.auth_url, user=swift.user, key=swift.key)
    yield c
    c.close()


def make_store(server, container, prefix="", user="test:tester", **kw) -> SwiftStore:
    return SwiftStore(
        container, prefix, authurl=server.auth_url, user=user, key=server.users[user], **kw
    )


def dataset(steps: int = 24) -> xr.Dataset:
    rng = np.random.default_rng(11)
    return xr.Dataset(
        {
            "temp": (("time", "y", "x"), rng.random((steps, 32, 48)).astype("f4"), {"units": "K"}),
            "count": (("time", "y"), rng.integers(0, 100, (steps, 32))),
            "flag": (("time",), rng.random(steps) > 0.5),
            "mask": (("y", "x"), rng.random((32, 48)) > 0.5),
        },
        coords={
            "time": pd.date_range("2000-01-01", periods=steps, freq="6h"),
            "y": np.arange(32),
            "x": np.arange(48.0),
        },
        attrs={"title": "cluster test"},
    ).chunk({"time": 4, "y": 16, "x": 16})


def slow_blocks(seconds: float):
    """A block function that takes a while, so a job can be interrupted half-way.

    A closure: plain pickle can't ship it, so distributed sends it by value with cloudpickle
    (worker processes need not import tests/).
    """

    def slow(block: np.ndarray) -> np.ndarray:
        time.sleep(seconds)
        return block

    return slow


def log_count(server, fragment: str) -> int:
    return sum(fragment in line for line in server.access_log_lines())


def wait_for(condition, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def settle(client) -> None:
    """Wait until no task runs anywhere (cancelled tasks finish what they started)."""
    wait_for(lambda: not any(client.processing().values()), what="idle workers")


# -- round trips ------------------------------------------------------------------------------
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_256_chunk_array_round_trips_and_counters_sum_workers(
    swift, client, conn, zarr_format, record_property
):
    container = f"arr{zarr_format}"
    store = make_store(swift, container)
    store.storage_url  # authenticate now, so the log below holds only the job's requests
    lines_before = len(swift.access_log_lines())
    darr = da.from_array(DATA, chunks=(128, 128))  # 64 tasks, 4 zarr chunks each
    result = write_array(darr, store, "a", chunks=(64, 64), zarr_format=zarr_format)
    # without the proxy's own subrequests (user agent "Swift"), e.g. the account HEAD it sends
    # when its cached account info is older than a minute (a slow, loaded run)
    job_lines = [x for x in swift.access_log_lines()[lines_before:] if " - Swift - " not in x]
    assert result.chunks == 256
    # every request of the job came from the client or a worker, and was counted there
    assert result.counters["requests"] == len(job_lines)
    assert result.counters["bytes_sent"] >= DATA.nbytes // 20  # zstd on a ramp
    rate = result.chunks_per_second
    record_property(f"chunks_per_second_v{zarr_format}", rate)
    print(
        f"\nv{zarr_format}: 256 chunks in {result.seconds:.2f} s = {rate:.0f} objects/s "
        f"on 2 workers x 2 threads; counters {result.counters}"
    )
    expected = reference_objects(DATA, "a", chunks=(64, 64), zarr_format=zarr_format)
    assert swift_objects(conn, container) == expected
    totals = job_counters(client)
    assert totals["requests"] >= result.counters["requests"]


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_dataset_round_trips_byte_identical(swift, client, zarr_format):
    ds = dataset()
    store = make_store(swift, f"ds{zarr_format}", "ds")
    write_dataset(ds, store, zarr_format=zarr_format)
    reference = MemoryStore()
    ds.load().to_zarr(reference, zarr_format=zarr_format, consolidated=False)  # in-process
    assert raw_arrays(store) == raw_arrays(reference)
    xr.testing.assert_identical(xr.open_zarr(store, consolidated=True).load(), ds.load())


def test_a_whole_job_authenticates_once_on_the_client(swift, client):
    """Seen from the server: one auth request, though 2 worker processes wrote the data."""
    before = log_count(swift, AUTH)
    store = make_store(swift, "auth-once", user="test2:tester2")  # not used elsewhere here
    r1 = write_array(da.from_array(DATA[:512], chunks=(64, 128)), store, "a", chunks=(64, 64))
    r2 = write_dataset(dataset(), store, path="ds")
    assert log_count(swift, AUTH) - before == 1
    assert r1.counters["auth_calls"] + r2.counters["auth_calls"] == 1
    workers = client.run(process_counters)
    assert len(workers) == 2 and all(c["auth_calls"] == 0 for c in workers.values())
    assert all(c["requests"] > 0 for c in workers.values())  # both workers did write


# -- failures ---------------------------------------------------------------------------------
def test_task_retries_travel_with_the_lazy_result(swift, client):
    token = V1Password(swift.auth_url, swift.user, swift.key).authenticate()
    with FaultProxy(swift.proxy_url, seed=9) as proxy:
        store = SwiftStore(
            "retries",
            preauthurl=proxy.via(token.storage_url),
            preauthtoken=token.token,
            retry=RetryPolicy(attempts=1),
        )
        darr = da.from_array(DATA[:256], chunks=(64, 256))
        lazy = write_array(darr, store, "a", chunks=(64, 64), retries=0, compute=False)
        proxy.inject("503", 1, method="PUT", path_contains="/a/c/")
        with pytest.raises(SwiftHTTPError):
            client.compute(lazy).result()
        lazy = write_array(darr, store, "b", chunks=(64, 64), retries=3, compute=False)
        proxy.inject("503", 2, method="PUT", path_contains="/b/c/")
        assert client.compute(lazy).result() == 64  # no retries= here: the graph carries them
        assert proxy.counts["503"] == 3
    np.testing.assert_array_equal(
        zarr.open_array(make_store(swift, "retries"), path="b", mode="r")[:], DATA[:256]
    )


def test_killing_a_worker_mid_write_loses_nothing(swift, client, conn):
    store = make_store(swift, "kill")
    darr = da.from_array(DATA, chunks=(64, 64)).map_blocks(slow_blocks(0.05), dtype=DATA.dtype)
    lazy = write_array(darr, store, "a", chunks=(64, 64), compute=False)
    pids = client.run(os.getpid)
    future = client.compute(lazy)
    wait_for(lambda: log_count(swift, "PUT /v1/AUTH_test/kill/a/c/") >= 40, what="40 chunk PUTs")
    processing = client.processing()
    victim = max(processing, key=lambda addr: len(processing[addr]))
    assert processing[victim], "the victim must be busy when it dies"
    os.kill(pids[victim], signal.SIGKILL)
    assert future.result(timeout=240) == 256
    assert swift_objects(conn, "kill") == reference_objects(DATA, "a", chunks=(64, 64))
    client.wait_for_workers(2, timeout=60)
    now = set(client.run(os.getpid).values())
    assert pids[victim] not in now and len(now - set(pids.values())) == 1  # nanny restarted it


def test_interrupted_write_rerun_has_no_extra_objects(swift, client, conn):
    store = make_store(swift, "rerun")
    darr = da.from_array(DATA, chunks=(64, 64)).map_blocks(slow_blocks(0.05), dtype=DATA.dtype)
    future = client.compute(
        write_array(darr, store, "a", chunks=(64, 64), consolidated=True, compute=False)
    )
    wait_for(lambda: log_count(swift, "PUT /v1/AUTH_test/rerun/a/c/") >= 30, what="30 PUTs")
    client.cancel(future)
    settle(client)
    written = swift_objects(conn, "rerun")
    assert 30 <= sum("/c/" in k for k in written) < 256 and "zarr.json" in written
    assert "consolidated_metadata" not in written["zarr.json"].decode()  # never got that far
    write_array(darr, store, "a", chunks=(64, 64), consolidated=True)
    got = swift_objects(conn, "rerun")
    assert {k: v for k, v in got.items() if k != "zarr.json"} == {
        k: v for k, v in reference_objects(DATA, "a", chunks=(64, 64)).items() if k != "zarr.json"
    }
    assert zarr.open_consolidated(store)["a"].shape == DATA.shape


def test_interrupted_append_rerun_finishes_it(swift, client):
    ds = dataset(48)
    ds["temp"] = ds["temp"].copy(data=ds["temp"].data.map_blocks(slow_blocks(0.2), dtype="f4"))
    store = make_store(swift, "append", "ds")
    write_dataset(ds.isel(time=slice(0, 16)), store)
    puts = "PUT /v1/AUTH_test/append/ds/temp/c/"
    before = log_count(swift, puts)
    future = client.compute(
        write_dataset(
            ds.isel(time=slice(16, 40)), store, mode="a", append_dim="time", compute=False
        )
    )
    wait_for(lambda: log_count(swift, puts) - before >= 8, what="some of the append's PUTs")
    client.cancel(future)
    settle(client)
    assert log_count(swift, puts) - before < 6 * 2 * 3  # of 36 chunks: cut half-way
    with pytest.raises(AppendConflictError, match="did not finish"):
        write_dataset(ds.isel(time=slice(16, 48)), store, mode="a", append_dim="time")
    write_dataset(ds.isel(time=slice(16, 40)), store, mode="a", append_dim="time")
    write_dataset(ds.isel(time=slice(40, 48)), store, mode="a", append_dim="time")
    got = xr.open_zarr(store, consolidated=True)
    assert got.sizes["time"] == 48
    xr.testing.assert_identical(got.load(), ds.load())


def test_a_dataset_write_outlives_workers_that_leave_together(swift, conn):
    """Workers that reach their lifetime together (as Slurm jobs submitted together do) take
    their finished results with them; an adaptive cluster (as ``SLURMCluster`` is) starts new
    ones. The write needs about 10 s of two workers' time and each generation lives 5 s, so
    it spans generations: finished block writes must not be done again, or no generation ever
    finishes the job (xarray's graph alone: 184 chunk PUTs for 32 blocks, not done after 200 s).
    """
    from distributed import Client, LocalCluster

    rng = np.random.default_rng(5)
    ds = xr.Dataset(
        {"t": (("time", "x"), rng.random((32, 8)).astype("f4"))},
        coords={"time": np.arange(32), "x": np.arange(8.0)},
    ).chunk({"time": 1})
    ds["t"] = ds["t"].copy(data=ds["t"].data.map_blocks(slow_blocks(0.3), dtype="f4"))
    store = make_store(swift, "generations", "ds")
    puts = "PUT /v1/AUTH_test/generations/ds/t/c/"
    done: list[object] = []
    seen: set[str] = set()
    with (
        LocalCluster(
            n_workers=0,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            lifetime="5s",
            lifetime_stagger="0s",
        ) as cluster,
        Client(cluster) as generations,
    ):
        cluster.adapt(minimum=2, maximum=2, interval="250ms")
        generations.wait_for_workers(2, timeout=120)
        writer = threading.Thread(target=lambda: done.append(write_dataset(ds, store)))
        writer.start()
        deadline = time.monotonic() + 200
        while writer.is_alive() and time.monotonic() < deadline:
            seen |= set(generations.scheduler_info()["workers"])
            writer.join(0.2)
        assert done, f"not done after 200 s: {log_count(swift, puts)} chunk PUTs for 32 blocks"
    assert len(seen) > 2, "no worker left mid-job: the test proves nothing"
    # a departure may cost the task its worker was running (1 thread per worker) and one that
    # finished as it left, before the client fetched its result; never the generation's work
    departures = len(seen) - 2
    assert 32 <= log_count(swift, puts) <= 32 + 2 * departures, (log_count(swift, puts), seen)
    xr.testing.assert_identical(xr.open_zarr(store, consolidated=True).load(), ds.load())


# -- without the helpers, and what users watch ------------------------------------------------
def test_plain_dask_and_xarray_writes_work_on_the_cluster(swift, client):
    store = make_store(swift, "plain")
    darr = da.from_array(DATA, chunks=(256, 256))
    da.to_zarr(darr, store, component="a", zarr_format=3)
    np.testing.assert_array_equal(zarr.open_array(store, path="a", mode="r")[:], DATA)
    ds = dataset()
    dstore = make_store(swift, "plain", "ds")
    delayed = ds.to_zarr(dstore, compute=False, mode="w")
    client.compute(delayed).result()
    xr.testing.assert_identical(xr.open_zarr(dstore).load(), ds.load())


def test_progress_and_dashboard_show_the_job(swift, client, capsys):
    store = make_store(swift, "progress")
    write_array(
        da.from_array(DATA[:256], chunks=(64, 64)), store, "a", chunks=(64, 64), progress=True
    )
    assert "100% Completed" in capsys.readouterr().out
    prefixes = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    assert {"swiftzarr-write", "swiftzarr-finish"} <= set(prefixes)
    lazy = write_array(
        da.from_array(DATA[:256], chunks=(64, 64)), store, "b", chunks=(64, 64), compute=False
    )
    future = client.compute(lazy)
    distributed.progress(future)  # what users call on the lazy result
    assert future.result() == 64
    link = client.dashboard_link
    assert link.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(link.replace("/status", "/individual-progress"), timeout=30) as r:
        assert r.status == 200
