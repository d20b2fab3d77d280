"""write_array / write_dataset / consolidate on dask's local scheduler, against the real Swift.

What is checked: the objects written are exactly those a single-process zarr write produces;
misaligned blocks are refused before anything is written; consolidation happens once, after
every data write (seen in the server's access log); appends in several runs equal one write, and
an interrupted append is finished, not duplicated, by re-running it.
"""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from dask.delayed import Delayed
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import MemoryStore
from zarr_reference import raw_arrays, reference_objects, swift_objects

from swiftzarr_batch import (
    AppendConflictError,
    ChunkAlignmentError,
    ConfigurationError,
    JobResult,
    RetryPolicy,
    SwiftHTTPError,
    SwiftStore,
    consolidate,
    write_array,
    write_dataset,
)
from swiftzarr_batch.auth import V1Password
from swiftzarr_batch.jobs.write_array import aligned_chunks, check_alignment
from swiftzarr_batch.jobs.write_dataset import PENDING_APPEND_KEY
from swiftzarr_batch.testing.faultproxy import FaultProxy

pytestmark = pytest.mark.filterwarnings("ignore::zarr.errors.ZarrUserWarning")

DATA = np.arange(512 * 384, dtype="<i4").reshape(512, 384)


def _store(server, container, prefix="", **kw) -> SwiftStore:
    return SwiftStore(
        container, prefix, authurl=server.auth_url, user=server.user, key=server.key, **kw
    )


def dataset(steps: int = 24) -> xr.Dataset:
    rng = np.random.default_rng(7)
    return xr.Dataset(
        {
            "temp": (("time", "y", "x"), rng.random((steps, 32, 48)).astype("f4"), {"units": "K"}),
            "count": (("time", "y"), rng.integers(0, 100, (steps, 32))),
            "mask": (("y", "x"), rng.random((32, 48)) > 0.5),
        },
        coords={
            "time": pd.date_range("2000-01-01", periods=steps, freq="D"),
            "y": np.arange(32),
            "x": np.arange(48.0),
        },
        attrs={"title": "test"},
    ).chunk({"time": 4, "y": 16, "x": 16})


# -- arrays -----------------------------------------------------------------------------------
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_write_array_writes_exactly_what_zarr_writes(
    swift_server, swift_conn, container_name, zarr_format
):
    store = _store(swift_server, container_name)
    darr = da.from_array(DATA, chunks=(128, 128))  # 4 x 3 blocks, each 2 x 2 zarr chunks
    lazy = write_array(darr, store, "a", chunks=(64, 64), zarr_format=zarr_format, compute=False)
    writes = [
        k
        for k in lazy.__dask_graph__()
        if isinstance(k, tuple) and k[0].startswith("swiftzarr-write-")
    ]
    assert len(writes) == 12  # one task per dask block
    result = dask.compute(lazy)[0]
    assert result == 48  # zarr chunks covered
    expected = reference_objects(DATA, "a", chunks=(64, 64), zarr_format=zarr_format)
    assert swift_objects(swift_conn, container_name) == expected


def test_misaligned_blocks_are_refused_before_anything_is_written(
    swift_server, swift_conn, container_name
):
    store = _store(swift_server, container_name)
    with pytest.raises(ChunkAlignmentError, match=r"axis 0.*index 100.*\[64, 128\).*rechunk=True"):
        write_array(da.from_array(DATA, chunks=(100, 128)), store, "a", chunks=(64, 64))
    with pytest.raises(ChunkAlignmentError, match=r"dimension 'x'.*zarr shard"):
        write_array(
            da.from_array(DATA, chunks=(128, 64)),
            store,
            "a",
            chunks=(64, 64),
            shards=(128, 128),
            dimension_names=["y", "x"],
        )
    headers, listing = (
        swift_conn.get_container(container_name)
        if _exists(swift_conn, container_name)
        else ({}, [])
    )
    assert listing == []


def _exists(conn, container: str) -> bool:
    from swiftclient.exceptions import ClientException

    try:
        conn.head_container(container)
        return True
    except ClientException as exc:
        if exc.http_status == 404:
            return False
        raise


def test_rechunk_aligns_irregular_blocks_to_shards(swift_server, swift_conn, container_name):
    store = _store(swift_server, container_name)
    darr = da.from_array(DATA, chunks=((100, 200, 212), (50, 334)))
    result = write_array(darr, store, "s", chunks=(64, 64), shards=(128, 128), rechunk=True)
    assert isinstance(result, JobResult) and result.chunks == 8 * 6
    np.testing.assert_array_equal(zarr.open_array(store, path="s", mode="r")[:], DATA)
    expected = reference_objects(DATA, "s", chunks=(64, 64), shards=(128, 128))
    assert swift_objects(swift_conn, container_name) == expected


@pytest.mark.parametrize(
    "sizes,unit,offset",
    [
        ((100, 100, 37), 64, 0),
        ((7,) * 30, 4, 3),
        ((1000,), 64, 10),
        ((5, 5, 5), 8, 0),
        ((300, 1), 128, 127),
        ((0,), 4, 0),
    ],
)
def test_aligned_chunks_put_every_inner_edge_on_the_grid(sizes, unit, offset):
    out = aligned_chunks(sizes, unit, offset)
    assert sum(out) == sum(sizes) and all(s > 0 for s in out[:-1])
    edges = np.cumsum(out)[:-1] + offset
    assert all(e % unit == 0 for e in edges)
    check_alignment([out], [unit], what="x", offset=[offset])  # does not raise
    if len(sizes) > 1 and any((np.cumsum(sizes)[:-1] + offset) % unit):
        with pytest.raises(ChunkAlignmentError):
            check_alignment([sizes], [unit], what="x", offset=[offset])


def test_consolidates_once_after_every_write_and_standalone(
    swift_server, swift_conn, container_name
):
    store = _store(swift_server, container_name)
    darr = da.from_array(DATA, chunks=(64, 128))
    write_array(darr, store, "g/a", chunks=(64, 64), zarr_format=2, consolidated=True)
    lines = swift_server.access_log_lines()
    zmeta = [
        i for i, ln in enumerate(lines) if f"PUT /v1/AUTH_test/{container_name}/.zmetadata " in ln
    ]
    assert len(zmeta) == 1
    writes = [i for i, ln in enumerate(lines) if f"PUT /v1/AUTH_test/{container_name}/g/a/" in ln]
    assert len(writes) > 48 and max(writes) < zmeta[0]  # after every chunk and metadata PUT
    assert zarr.open_consolidated(store, zarr_format=2)["g/a"].shape == DATA.shape

    write_array(darr, store, "g/b", chunks=(64, 64), zarr_format=2)  # consolidated=False
    meta = zarr.open_consolidated(store, zarr_format=2).metadata.consolidated_metadata
    assert "g/a" in meta.flattened_metadata and "g/b" not in meta.flattened_metadata
    lazy = consolidate(store, compute=False)
    assert isinstance(lazy, Delayed)
    dask.compute(lazy)
    meta = zarr.open_consolidated(store, zarr_format=2).metadata.consolidated_metadata
    assert {"g/a", "g/b"} <= set(meta.flattened_metadata)


def test_lazy_result_writes_nothing_until_computed_and_shows_progress(
    swift_server, swift_conn, container_name, capsys
):
    store = _store(swift_server, container_name)
    lazy = write_array(
        da.from_array(DATA, chunks=(128, 128)), store, "a", chunks=(64, 64), compute=False
    )
    assert not any("/c/" in name for name in swift_objects(swift_conn, container_name))
    dask.compute(lazy)
    assert sum("/c/" in name for name in swift_objects(swift_conn, container_name)) == 48
    result = write_array(
        da.from_array(DATA, chunks=(128, 128)), store, "b", chunks=(64, 64), progress=True
    )
    assert "100% Completed" in capsys.readouterr().out
    assert result.counters["requests"] >= 48 and result.counters["bytes_sent"] >= DATA.nbytes // 4
    assert result.chunks_per_second and result.chunks_per_second > 0


def test_local_retries_rerun_a_failed_job(swift_server, swift_conn, container_name):
    with FaultProxy(swift_server.proxy_url, seed=3) as proxy:
        token = V1Password(
            swift_server.auth_url, swift_server.user, swift_server.key
        ).authenticate()
        store = SwiftStore(
            container_name,
            preauthurl=proxy.via(token.storage_url),
            preauthtoken=token.token,
            retry=RetryPolicy(attempts=1),
        )
        darr = da.from_array(DATA, chunks=(128, 128))
        proxy.inject("503", 1, method="PUT", path_contains="/a/c/")
        with pytest.raises(SwiftHTTPError) as err:
            write_array(darr, store, "a", chunks=(64, 64), retries=0)
        assert err.value.status == 503
        proxy.inject("503", 2, method="PUT", path_contains="/b/c/")
        result = write_array(darr, store, "b", chunks=(64, 64), retries=2)
        assert proxy.counts["503"] == 3
    assert result.chunks == 48
    np.testing.assert_array_equal(
        zarr.open_array(_store(swift_server, container_name), path="b", mode="r")[:], DATA
    )


# -- datasets ---------------------------------------------------------------------------------
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_write_dataset_round_trips_and_consolidates_last(swift_server, container_name, zarr_format):
    ds = dataset()
    store = _store(swift_server, container_name, "ds")
    result = write_dataset(ds, store, zarr_format=zarr_format)
    assert isinstance(result, JobResult) and result.tasks > 6 * 2 * 3
    back = xr.open_zarr(store, consolidated=True)
    xr.testing.assert_identical(back.load(), ds.load())
    reference = MemoryStore()
    ds.load().to_zarr(reference, zarr_format=zarr_format, consolidated=False)  # in-process
    assert raw_arrays(store) == raw_arrays(reference)  # the stored (encoded) bytes, per variable
    lines = swift_server.access_log_lines()
    final = ".zmetadata" if zarr_format == 2 else "zarr.json"
    last = [
        i for i, ln in enumerate(lines) if f" PUT /v1/AUTH_test/{container_name}/ds/{final} " in ln
    ]
    data = [
        i for i, ln in enumerate(lines) if f" PUT /v1/AUTH_test/{container_name}/ds/temp/" in ln
    ]
    assert last and data and max(data) < last[-1]
    if zarr_format == 2:
        assert len(last) == 1  # consolidated exactly once


def test_dataset_with_misaligned_encoding_is_refused_untouched(
    swift_server, swift_conn, container_name
):
    store = _store(swift_server, container_name, "ds")
    ds = dataset()
    with pytest.raises(ChunkAlignmentError, match=r"variable 'temp'.*dimension 'time'"):
        write_dataset(ds, store, encoding={"temp": {"chunks": (3, 16, 16)}})
    assert not _exists(swift_conn, container_name)
    write_dataset(ds, store, encoding={"temp": {"chunks": (3, 16, 16)}}, rechunk=True)
    xr.testing.assert_identical(xr.open_zarr(store).load(), ds.load())
    assert xr.open_zarr(store)["temp"].encoding["chunks"] == (3, 16, 16)


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_appending_in_runs_equals_one_write(swift_server, container_name, zarr_format):
    ds = dataset()
    store = _store(swift_server, container_name, "runs")
    write_dataset(ds.isel(time=slice(0, 8)), store, zarr_format=zarr_format)
    for part in (slice(8, 11), slice(11, 17), slice(17, 24)):  # 3 and 6: not chunk multiples
        write_dataset(ds.isel(time=part), store, mode="a", append_dim="time", rechunk=True)
    write_dataset(
        ds.isel(time=slice(17, 24)), store, mode="a", append_dim="time", rechunk=True
    )  # re-running the last append rewrites, never duplicates
    whole = _store(swift_server, container_name, "whole")
    write_dataset(ds, whole, zarr_format=zarr_format)
    got, want = xr.open_zarr(store).load(), xr.open_zarr(whole).load()
    xr.testing.assert_identical(got, want)
    xr.testing.assert_identical(got, ds.load())
    assert sync(store.get(PENDING_APPEND_KEY, default_buffer_prototype())) is None
    with pytest.raises(AppendConflictError, match="already in"):
        write_dataset(ds.isel(time=slice(2, 5)), store, mode="a", append_dim="time")
    with pytest.raises(ChunkAlignmentError, match="variable 'temp'"):  # 24 % 4 == 0, 3 != 4k
        write_dataset(
            dataset(30).isel(time=slice(24, 30)).chunk({"time": 3}),
            store,
            mode="a",
            append_dim="time",
        )
    with pytest.raises(AppendConflictError, match=r"missing: \['count'\]"):
        write_dataset(
            dataset(30).isel(time=slice(24, 30)).drop_vars("count"),
            store,
            mode="a",
            append_dim="time",
        )
    # refused appends changed nothing: no claim, no resize
    assert sync(store.get(PENDING_APPEND_KEY, default_buffer_prototype())) is None
    assert zarr.open_array(store, path="temp").shape[0] == 24
    xr.testing.assert_identical(xr.open_zarr(store, consolidated=False).load(), ds.load())


def test_interrupted_append_is_finished_by_running_it_again(swift_server, container_name):
    ds = dataset()
    store = _store(swift_server, container_name, "cut")
    write_dataset(ds.isel(time=slice(0, 12)), store)
    token = V1Password(swift_server.auth_url, swift_server.user, swift_server.key).authenticate()
    with FaultProxy(swift_server.proxy_url, seed=5) as proxy:
        faulty = SwiftStore(
            container_name,
            "cut",
            preauthurl=proxy.via(token.storage_url),
            preauthtoken=token.token,
            retry=RetryPolicy(attempts=1),
        )
        lazy = write_dataset(
            ds.isel(time=slice(12, 20)), faulty, mode="a", append_dim="time", compute=False
        )  # claimed + resized; now the data writes fail
        proxy.inject("503", 10**6, method="PUT", path_contains="/cut/temp/")
        with pytest.raises(SwiftHTTPError):
            dask.compute(lazy)
    assert sync(store.get(PENDING_APPEND_KEY, default_buffer_prototype())) is not None
    assert zarr.open_array(store, path="temp").shape[0] == 20
    with pytest.raises(AppendConflictError, match="did not finish"):
        write_dataset(ds.isel(time=slice(12, 24)), store, mode="a", append_dim="time")
    write_dataset(ds.isel(time=slice(12, 20)), store, mode="a", append_dim="time")
    write_dataset(ds.isel(time=slice(20, 24)), store, mode="a", append_dim="time")
    xr.testing.assert_identical(xr.open_zarr(store, consolidated=True).load(), ds.load())
    assert sync(store.get(PENDING_APPEND_KEY, default_buffer_prototype())) is None


def test_two_appends_started_at_once_cannot_both_claim(swift_server, container_name):
    import threading

    ds = dataset()
    store = _store(swift_server, container_name, "race")
    write_dataset(ds.isel(time=slice(0, 8)), store)
    parts = {"a": ds.isel(time=slice(8, 12)), "b": ds.isel(time=slice(8, 16))}
    barrier = threading.Barrier(2)
    outcome: dict = {}

    def append(name: str) -> None:
        mine = _store(swift_server, container_name, "race")
        barrier.wait()
        try:
            outcome[name] = write_dataset(
                parts[name], mine, mode="a", append_dim="time", compute=False
            )
        except AppendConflictError as exc:
            outcome[name] = exc

    threads = [threading.Thread(target=append, args=(n,)) for n in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    refused = [n for n, r in outcome.items() if isinstance(r, AppendConflictError)]
    assert len(refused) == 1, outcome
    (winner,) = set(parts) - set(refused)
    dask.compute(outcome[winner])
    want = xr.concat(
        [ds.isel(time=slice(0, 8)), parts[winner]],
        dim="time",
        data_vars="minimal",
        coords="minimal",
        compat="override",
    )
    xr.testing.assert_identical(xr.open_zarr(store, consolidated=True).load(), want.load())


def test_region_write_replaces_only_that_region(swift_server, container_name):
    ds = dataset()
    store = _store(swift_server, container_name, "reg")
    write_dataset(ds, store)
    patch = (ds[["temp", "count"]].isel(time=slice(4, 12)) * 0 + 1).astype(ds["temp"].dtype)
    patch["count"] = patch["count"].astype(ds["count"].dtype)
    write_dataset(
        patch.drop_vars(["time", "y", "x"]), store, mode="a", region={"time": slice(4, 12)}
    )
    got = xr.open_zarr(store, consolidated=True).load()
    want = ds.load().copy(deep=True)
    want["temp"][4:12] = 1
    want["count"][4:12] = 1
    xr.testing.assert_identical(got, want)
    with pytest.raises(ChunkAlignmentError, match=r"region time=2:6 .* \(multiples of 4"):
        write_dataset(
            patch.isel(time=slice(0, 4)).drop_vars(["time", "y", "x"]),
            store,
            mode="a",
            region={"time": slice(2, 6)},
        )
    with pytest.raises(ConfigurationError, match="append_dim and region need mode='a'"):
        write_dataset(patch, store, region={"time": slice(4, 12)})


def test_a_job_longer_than_its_token_warns_before_writing(swift_server, swift_conn, container_name):
    from swiftzarr_batch import TokenLifetimeWarning

    store = _store(swift_server, container_name, "lifetime")
    darr = da.from_array(DATA[:64, :64], chunks=(32, 32))
    with pytest.warns(TokenLifetimeWarning, match="expires in"):
        lazy = write_array(darr, store, "a", compute=False, needs_seconds=10 * 86400)
    dask.compute(lazy)  # a warning, not a refusal: the job still runs
    np.testing.assert_array_equal(zarr.open_array(store, path="a")[:], DATA[:64, :64])
    with pytest.warns(TokenLifetimeWarning):
        write_dataset(
            dataset(4), store.with_prefix("lifetime/ds"), compute=False, needs_seconds=10 * 86400
        )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", TokenLifetimeWarning)
        write_array(darr, store, "b", needs_seconds=60)  # the token outlives this one
