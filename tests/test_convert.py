"""Converting copies on the real Swift: zarr 2 -> 3 sharded and back, rechunking, codecs,
xarray round trips, resume after an outage, corruption found, the memory cap."""

from __future__ import annotations

import json
import math
import sys
import tracemalloc
from pathlib import Path

import cloudpickle
import numpy as np
import pytest
import xarray as xr
import zarr
from zarr.storage import LocalStore

from swiftzarr_batch import RetryPolicy, SwiftStore
from swiftzarr_batch.auth import V1Password
from swiftzarr_batch.errors import ConfigurationError
from swiftzarr_batch.testing.faultproxy import FaultProxy
from swiftzarr_batch.transfer.convert import (
    MANIFEST_KEY,
    ConvertConflictError,
    ConvertError,
    ConvertSummary,
    verify_conversion,
)
from swiftzarr_batch.transfer.convert_plan import (
    ConvertMemoryError,
    Target,
    auto_block,
    make_plan,
    parse_codec,
    parse_shape,
    parse_size,
)
from swiftzarr_batch.transfer.convert_tasks import TaskSpec, convert_blocks, region_digest
from swiftzarr_batch.transfer.copy import copy_store

cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _swift(server, container, prefix="", **kw) -> SwiftStore:
    return SwiftStore(
        container, prefix, authurl=server.auth_url, user=server.user, key=server.key, **kw
    )


def _puts(server, container, fragment, since=0):
    """PUT requests the Swift proxy logged for objects of ``container`` whose path has ``fragment``."""
    return [
        ln
        for ln in server.access_log_lines()[since:]
        if f" PUT /v1/AUTH_test/{container}/" in ln
        and fragment in ln.split(" PUT ", 1)[1].split()[0]
    ]


def _v2_array(tmp_path, shape=(64, 64), chunks=(8, 8), seed=0, **kw):
    store = LocalStore(tmp_path / "src")
    data = np.random.default_rng(seed).random(shape)
    a = zarr.create_array(store, shape=shape, chunks=chunks, dtype="f8", zarr_format=2, **kw)
    a[:] = data
    return store, data


def _convert(source, dest, target, **kw) -> ConvertSummary:
    summary = copy_store(source, dest, convert=target, **kw)
    assert isinstance(summary, ConvertSummary)
    return summary


def _dataset() -> xr.Dataset:
    rng = np.random.default_rng(3)
    temp = rng.random((6, 20, 12)).astype("f4")
    temp[0, 0, :3] = np.nan
    ds = xr.Dataset(
        {
            "temp": (("time", "y", "x"), temp, {"units": "K", "long_name": "temperature"}),
            "count": (("y", "x"), rng.integers(0, 100, (20, 12)).astype("i4")),
            "mask": (("y", "x"), rng.random((20, 12)) > 0.5),
        },
        coords={
            "time": np.arange(6) * 3600,
            "y": np.linspace(-5, 5, 20),
            "x": np.arange(12, dtype="f8"),
            "label": ("x", [f"column {i}" for i in range(12)]),  # strings, a non-index coord
        },
        attrs={"title": "convert test", "nested": {"a": [1, 2]}},
    )
    ds["time"].attrs["units"] = "seconds"
    return ds


# -- the plan ---------------------------------------------------------------------------------
def test_auto_shards_grow_the_chunk_grid_to_the_target_size_and_stop_at_the_array():
    assert auto_block((128, 128), (8192, 8192), 4, 4 << 20) == (1024, 1024)  # W8: 64 chunks
    # 3 chunks across at most; doubling the other way again would make 6 MiB
    assert auto_block((128, 128), (8192, 300), 4, 4 << 20) == (2048, 384)
    assert auto_block((10,), (5,), 8, 1 << 30) == (10,)  # never below one chunk
    assert parse_shape("4096x512") == (4096, 512)
    assert parse_size("64MiB") == 64 << 20 and parse_size("2GB") == 2_000_000_000
    assert parse_codec("zstd:7", 3).level == 7 and parse_codec("none", 2) is None
    for bad in (
        lambda: parse_shape("4x0"),
        lambda: parse_size("lots"),
        lambda: parse_codec("lzma", 3),
    ):
        with pytest.raises(ConfigurationError):
            bad()
    with pytest.raises(ConfigurationError, match="zarr_format=3"):
        Target(zarr_format=2, shards=(8, 8))


def test_shards_that_do_not_tile_the_chunks_are_refused(tmp_path):
    source, _ = _v2_array(tmp_path)
    with pytest.raises(ConfigurationError, match=r"multiple of the chunks \(8, 8\)"):
        make_plan(source, "", Target(shards=(12, 16)))


def test_memory_cap_refuses_before_anything_is_written(
    swift_server, swift_conn, container_name, tmp_path
):
    source, _ = _v2_array(tmp_path)
    dest = _swift(swift_server, container_name)
    plan = make_plan(source, "", Target(shards=(32, 32)))
    needed = plan.task_bytes
    assert needed >= 4 * 32 * 32 * 8  # the stated peak covers the region four times
    with pytest.raises(ConvertMemoryError) as err:
        _convert(source, dest, Target(shards=(32, 32), max_memory=needed - 1))
    assert err.value.needed == needed and err.value.limit == needed - 1
    assert str(needed) in str(err.value) and "(32, 32)" in str(err.value)
    assert container_name not in [c["name"] for c in swift_conn.get_account()[1]]
    # Unsharded targets shrink their blocks of chunks to fit instead of refusing.
    fitted = make_plan(source, "", Target(zarr_format=2, chunks=(8, 8), max_memory=1_100_000))
    assert fitted.task_bytes <= 1_100_000 and fitted.blocks > 1


def test_a_task_stays_within_its_stated_memory(tmp_path):
    source, _ = _v2_array(tmp_path, shape=(512, 512), chunks=(32, 32))
    plan = make_plan(source, "", Target(chunks=(32, 32), shards=(256, 256)))
    spec = TaskSpec("", "", {a.path: a for a in plan.arrays}, 4)
    dest = LocalStore(tmp_path / "dst")
    convert_blocks([("", (0, 0))], source, dest, spec)  # warm-up: imports, codec objects
    tracemalloc.start()
    try:
        (result,) = convert_blocks([("", (1, 1))], source, dest, spec)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.ok and len(result.objects) == 1
    region = 256 * 256 * 8
    assert region < peak <= plan.task_bytes, (peak, plan.task_bytes)


# -- formats, shards, chunks, codecs ----------------------------------------------------------
def test_v2_to_sharded_v3_writes_each_shard_once_and_metadata_last(
    swift_server, container_name, tmp_path
):
    source, data = _v2_array(tmp_path)
    dest = _swift(swift_server, container_name, "out")
    since = len(swift_server.access_log_lines())
    summary = _convert(source, dest, Target(zarr_format=3, shards=(32, 32), compressors="zstd:3"))
    assert summary.verified and summary.blocks_total == 4 and summary.objects_written == 4
    arr = zarr.open_array(dest, mode="r")
    assert arr.metadata.zarr_format == 3 and arr.shards == (32, 32) and arr.chunks == (8, 8)
    lines = swift_server.access_log_lines()[since:]  # before reading it back
    np.testing.assert_array_equal(arr[:], data)
    shard_puts = [
        i for i, ln in enumerate(lines) if f"/{container_name}/out/c/" in ln and " PUT " in ln
    ]
    shard_gets = [ln for ln in lines if f"/{container_name}/out/c/" in ln and " GET " in ln]
    meta_put = [
        i
        for i, ln in enumerate(lines)
        if f" PUT /v1/AUTH_test/{container_name}/out/zarr.json " in ln
    ]
    assert len(shard_puts) == 4 and not shard_gets  # one PUT per shard, never read-modify-write
    assert meta_put and min(meta_put) > max(shard_puts)


def test_sharded_v3_on_swift_back_to_local_v2_with_small_chunks(
    swift_server, container_name, tmp_path
):
    data = np.arange(40 * 30, dtype="i4").reshape(40, 30)
    remote = _swift(swift_server, container_name, "v3")
    root = zarr.create_group(remote, zarr_format=3, attributes={"k": "v"})
    a = root.create_array(
        "a",
        shape=data.shape,
        chunks=(10, 10),
        shards=(20, 30),
        dtype="i4",
        dimension_names=["y", "x"],
    )
    a[:] = data
    zarr.consolidate_metadata(remote)
    local = LocalStore(tmp_path / "v2")
    summary = _convert(remote, local, Target(zarr_format=2, chunks=(4, 5), compressors="gzip:1"))
    assert summary.verified
    back = zarr.open_group(local, mode="r", zarr_format=2)
    assert back.attrs["k"] == "v"
    b = back["a"]
    assert b.metadata.zarr_format == 2 and b.chunks == (4, 5)
    assert b.attrs["_ARRAY_DIMENSIONS"] == ["y", "x"]  # dimension names, the v2 way
    assert type(b.compressors[0]).__name__ == "GZip"
    np.testing.assert_array_equal(b[:], data)
    chunk_files = [p for p in (tmp_path / "v2" / "a").iterdir() if not p.name.startswith(".")]
    assert len(chunk_files) == 10 * 6  # every small chunk


def test_rechunk_with_irregular_edges_and_a_new_compressor(swift_server, container_name, tmp_path):
    source, data = _v2_array(tmp_path, shape=(37, 23), chunks=(5, 7), fill_value=-1.0)
    dest = _swift(swift_server, container_name)
    target = Target(zarr_format=3, chunks=(6, 4), shards=(12, 8), compressors="blosc:lz4:5")
    summary = _convert(source, dest, target)
    assert summary.blocks_total == math.ceil(37 / 12) * math.ceil(23 / 8) == summary.blocks_written
    arr = zarr.open_array(dest, mode="r")
    assert arr.chunks == (6, 4) and arr.shards == (12, 8) and arr.fill_value == -1.0
    assert (
        type(arr.compressors[0]).__name__ == "BloscCodec"
        and getattr(arr.compressors[0].cname, "value", arr.compressors[0].cname) == "lz4"
    )
    np.testing.assert_array_equal(arr[:], data)
    assert verify_conversion(source, dest, target).ok


def test_fill_value_regions_are_not_written_and_still_verify(
    swift_server, container_name, tmp_path
):
    store = LocalStore(tmp_path / "src")
    a = zarr.create_array(
        store, shape=(40, 40), chunks=(10, 10), dtype="u2", fill_value=7, zarr_format=2
    )
    a[:20, :20] = 3  # one shard of four holds data; the rest reads as the fill value
    dest = _swift(swift_server, container_name)
    summary = _convert(store, dest, Target(shards=(20, 20)))
    assert summary.blocks_written == 4 and summary.objects_written == 1 and summary.verified
    back = zarr.open_array(dest, mode="r")
    assert back.fill_value == 7 and (back[20:, :] == 7).all() and (back[:20, :20] == 3).all()


def test_region_digest_is_about_values_not_bytes():
    a = np.array([[1.0, np.nan], [3.0, 4.0]], dtype=">f8")
    b = np.asfortranarray(a.astype("<f8"))
    b[0, 1] = -np.nan
    assert region_digest(a) == region_digest(b)
    b[1, 1] = 5.0
    assert region_digest(a) != region_digest(b)


# -- xarray -----------------------------------------------------------------------------------
def test_xarray_dataset_v2_to_v3_sharded_and_back_is_identical(
    swift_server, container_name, tmp_path
):
    ds = _dataset()
    src = LocalStore(tmp_path / "ds2")
    ds.to_zarr(
        src, zarr_format=2, encoding={"temp": {"chunks": (2, 5, 4)}, "count": {"chunks": (5, 4)}}
    )
    original = xr.open_zarr(src).load()
    remote = _swift(swift_server, container_name, "ds3")
    summary = _convert(
        src,
        remote,
        Target(zarr_format=3, chunks={"temp": (1, 10, 12)}, shards="auto", shard_size=4096),
    )
    assert summary.verified
    v3 = xr.open_zarr(remote)
    xr.testing.assert_identical(v3.load(), original)
    temp = zarr.open_group(remote, mode="r")["temp"]
    assert (
        temp.metadata.dimension_names == ("time", "y", "x")
        and "_ARRAY_DIMENSIONS" not in temp.attrs
    )
    assert temp.chunks == (1, 10, 12) and temp.shards is not None
    again = LocalStore(tmp_path / "again2")
    _convert(remote, again, Target(zarr_format=2, chunks={"temp": (2, 5, 4)}))
    xr.testing.assert_identical(xr.open_zarr(again).load(), original)


# -- resume and verification ------------------------------------------------------------------
def test_resume_after_an_outage_writes_only_the_missing_shards(
    swift_server, swift_conn, container_name, tmp_path
):
    source, data = _v2_array(tmp_path, shape=(96, 96), chunks=(8, 8))
    target = Target(zarr_format=3, shards=(16, 16), checkpoint_seconds=0)  # 36 shards
    with FaultProxy(swift_server.proxy_url, seed=4) as proxy:
        token = V1Password(
            swift_server.auth_url, swift_server.user, swift_server.key
        ).authenticate()
        dest = SwiftStore(
            container_name,
            preauthurl=proxy.via(token.storage_url),
            preauthtoken=token.token,
            retry=RetryPolicy(attempts=2, base_delay=0.01, max_delay=0.05),
        )

        def outage(label, done, total, nbytes):
            if done == 10:  # the Swift proxy goes away, midway through the shards
                proxy.configure(rate=1.0, kinds=["503"])

        with pytest.raises(ConvertError, match="Re-run to resume") as err:
            _convert(source, dest, target, progress=outage, concurrency=2)
        assert 10 <= err.value.summary.blocks_written < 36 and err.value.summary.blocks_failed
        proxy.configure(rate=0.0)
        manifest = json.loads(swift_conn.get_object(container_name, MANIFEST_KEY)[1])
        recorded = len(manifest["blocks"][""])
        assert recorded >= 10 and not manifest["complete"]
        assert "zarr.json" not in [o["name"] for o in swift_conn.get_container(container_name)[1]]
        since = len(swift_server.access_log_lines())
        summary = _convert(source, dest, target)
    assert summary.verified and summary.blocks_skipped == recorded
    assert summary.blocks_written == 36 - summary.blocks_skipped
    assert len(_puts(swift_server, container_name, "/c/", since)) == summary.blocks_written
    np.testing.assert_array_equal(
        zarr.open_array(_swift(swift_server, container_name), mode="r")[:], data
    )


def test_verify_finds_a_corrupted_shard_and_a_rerun_rewrites_only_it(
    swift_server, swift_conn, container_name, tmp_path
):
    source, data = _v2_array(tmp_path)
    dest = _swift(swift_server, container_name)
    target = Target(zarr_format=3, shards=(32, 32))
    _convert(source, dest, target)
    assert verify_conversion(source, dest, target).ok
    # Shard (1, 0) replaced by shard (0, 1)'s bytes: a valid shard, the wrong values.
    _, body = swift_conn.get_object(container_name, "c/0/1")
    swift_conn.put_object(container_name, "c/1/0", body)
    check = verify_conversion(source, dest, target)
    assert not check.ok and len(check.bad) == 1 and "block 1.0" in check.bad[0]
    since = len(swift_server.access_log_lines())
    summary = _convert(source, dest, target)
    assert summary.blocks_written == 1 and summary.blocks_skipped == 3
    assert len(_puts(swift_server, container_name, "/c/", since)) == 1
    assert verify_conversion(source, dest, target).ok
    np.testing.assert_array_equal(zarr.open_array(dest, mode="r")[:], data)


def test_a_destination_with_other_data_is_refused(swift_server, container_name, tmp_path):
    source, _ = _v2_array(tmp_path)
    dest = _swift(swift_server, container_name)
    zarr.create_array(dest, shape=(3,), dtype="i1")
    with pytest.raises(ConvertConflictError, match="Nothing was written"):
        _convert(source, dest, Target(shards=(32, 32)))
    other = _swift(swift_server, container_name, "o")
    _convert(source, other, Target(shards=(32, 32)))
    with pytest.raises(ConvertConflictError, match="other settings"):
        _convert(source, other, Target(shards=(16, 16)))


# -- the command line -------------------------------------------------------------------------
def test_cli_copy_converts_and_refuses_over_the_memory_cap(swift_server, container_name, tmp_path):
    import os
    import subprocess

    source, data = _v2_array(tmp_path)
    swiftzarr = str(Path(sys.executable).parent / "swiftzarr")
    env = {**os.environ, **swift_server.env}
    url = f"swift://{container_name}/conv"

    def run(*extra):
        args = [swiftzarr, "copy", str(tmp_path / "src"), url, *extra]
        return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120)

    refused = run("--shards", "32x32", "--max-memory", "100KiB")
    assert refused.returncode == 1 and "max_memory=102.4 KB" in refused.stderr
    assert "Nothing was written" in refused.stderr
    planned = run("--shards", "32x32", "--dry-run")
    assert planned.returncode == 0 and "4 tasks of <=" in planned.stdout
    out = run(
        "--zarr-format", "3", "--chunks", "16x16", "--shards", "32x32", "--compressor", "zstd:5"
    )
    assert out.returncode == 0, out.stderr
    assert "converted 4/4 blocks" in out.stdout and "verified" in out.stdout
    arr = zarr.open_array(_swift(swift_server, container_name, "conv"), mode="r")
    assert arr.chunks == (16, 16) and arr.shards == (32, 32) and arr.compressors[0].level == 5
    np.testing.assert_array_equal(arr[:], data)
