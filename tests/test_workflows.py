"""The scheduled workflows (ingest, mirror) and their lock, on the real Swift server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import LocalStore

from swiftzarr_batch import SwiftStore
from swiftzarr_batch.swift.session import process_counters
from swiftzarr_batch.workflows import dataset_state
from swiftzarr_batch.workflows.common import EXIT_LOCKED, LockHeldError
from swiftzarr_batch.workflows.ingest import run_from_config as ingest
from swiftzarr_batch.workflows.lock import DatasetLock, LockLostError
from swiftzarr_batch.workflows.mirror import run_from_config as mirror

PROTO = default_buffer_prototype()
STEPS = 6  # time steps per input file


@pytest.fixture
def env_auth(swift_server, monkeypatch):
    for name, value in swift_server.env.items():
        monkeypatch.setenv(name, value)
    return {**os.environ}


def make_file(directory: Path, i: int, steps: int = STEPS) -> Path:
    rng = np.random.default_rng(i)
    times = pd.date_range("2024-01-01", periods=steps, freq="h") + pd.Timedelta(hours=steps * i)
    ds = xr.Dataset(
        {
            "temp": (("time", "lat", "lon"), rng.random((steps, 4, 5)).astype("f4")),
            "mask": (("lat", "lon"), np.ones((4, 5), "i1")),
        },
        coords={"time": times, "lat": np.arange(4.0), "lon": np.arange(5.0)},
    )
    path = directory / f"obs_{i:03d}.nc"
    ds.to_netcdf(path)
    return path


def write_config(
    tmp_path: Path, container: str, *, ttl: int = 600, per_commit: int = 2, extra: str = ""
) -> Path:
    cfg = tmp_path / "ingest.toml"
    cfg.write_text(f"""
[source]
directory = "{tmp_path / "in"}"
pattern = "obs_*.nc"

[target]
url = "swift://{container}/ds.zarr"

[ingest]
append_dim = "time"
chunks = {{ time = 4 }}
files_per_commit = {per_commit}
lock_ttl_seconds = {ttl}

[output]
summary = "{tmp_path / "summary.json"}"
{extra}
""")
    return cfg


def expected(tmp_path: Path, n: int) -> xr.Dataset:
    parts = [xr.open_dataset(tmp_path / "in" / f"obs_{i:03d}.nc") for i in range(n)]
    return xr.concat(
        parts, dim="time", data_vars="minimal", coords="minimal", compat="override"
    ).load()


def stored(swift_server, container: str) -> xr.Dataset:
    store = SwiftStore(
        container,
        "ds.zarr",
        authurl=swift_server.auth_url,
        user=swift_server.user,
        key=swift_server.key,
        read_only=True,
    )
    return xr.open_zarr(store, consolidated=True).load()


def summary_of(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "summary.json").read_text())


def test_ingest_twice_appends_only_new_files(swift_server, env_auth, container_name, tmp_path):
    (tmp_path / "in").mkdir()
    for i in range(3):
        make_file(tmp_path / "in", i)
    cfg = write_config(tmp_path, container_name)
    assert ingest(cfg) == 0
    first = summary_of(tmp_path)
    assert first["status"] == "ok" and first["verified"]
    assert first["files_ingested"] == ["obs_000.nc", "obs_001.nc", "obs_002.nc"]
    assert first["length_after"] == 3 * STEPS and first["verify"]["missing_chunks"] == 0
    xr.testing.assert_identical(stored(swift_server, container_name), expected(tmp_path, 3))

    for i in range(3, 5):
        make_file(tmp_path / "in", i)
    assert ingest(cfg) == 0
    second = summary_of(tmp_path)
    assert second["files_ingested"] == ["obs_003.nc", "obs_004.nc"]
    assert second["length_before"] == 3 * STEPS and second["length_after"] == 5 * STEPS
    xr.testing.assert_identical(stored(swift_server, container_name), expected(tmp_path, 5))

    before = process_counters()
    assert ingest(cfg) == 0
    third = summary_of(tmp_path)
    assert third["files_ingested"] == [] and third["length_after"] == 5 * STEPS
    sent = process_counters()["bytes_sent"] - before["bytes_sent"]
    assert sent < 10_000  # lock + consolidated metadata only: no chunk rewritten
    record = dataset_state.read_record(stored_store(swift_server, container_name))
    assert [(f["name"], f["start"], f["stop"]) for f in record["files"]] == [
        (f"obs_{i:03d}.nc", i * STEPS, (i + 1) * STEPS) for i in range(5)
    ]


def stored_store(swift_server, container: str) -> SwiftStore:
    return SwiftStore(
        container,
        "ds.zarr",
        authurl=swift_server.auth_url,
        user=swift_server.user,
        key=swift_server.key,
    )


def test_rerun_after_a_crash_mid_append_gives_a_complete_dataset(
    swift_server, env_auth, container_name, tmp_path
):
    (tmp_path / "in").mkdir()
    for i in range(2):
        make_file(tmp_path / "in", i)
    cfg = write_config(tmp_path, container_name)
    assert ingest(cfg) == 0
    # What a run killed between xarray's resize and its chunk writes leaves behind: arrays
    # with the time dimension grown by different amounts, chunks missing, record unchanged.
    store = stored_store(swift_server, container_name)
    make_file(tmp_path / "in", 2)
    partial = xr.open_dataset(tmp_path / "in" / "obs_002.nc").isel(time=slice(0, 3))
    partial[["temp"]].to_zarr(store, append_dim="time", consolidated=False)
    grown = zarr.open_array(store, path="temp", mode="r+")
    grown.resize((grown.shape[0] + 4, 4, 5))
    make_file(tmp_path / "in", 3)

    assert ingest(cfg) == 0
    summary = summary_of(tmp_path)
    assert summary["rolled_back"] == ["temp", "time"]
    assert summary["files_ingested"] == ["obs_002.nc", "obs_003.nc"]
    xr.testing.assert_identical(stored(swift_server, container_name), expected(tmp_path, 4))


def test_crash_during_creation_restarts_it(swift_server, env_auth, container_name, tmp_path):
    (tmp_path / "in").mkdir()
    make_file(tmp_path / "in", 0)
    store = stored_store(swift_server, container_name)
    dataset_state.write_record(store, dataset_state.new_record("time"))
    half = xr.open_dataset(tmp_path / "in" / "obs_000.nc").isel(time=slice(0, 2))
    half.to_zarr(store, mode="a", consolidated=False)  # created, then the run died
    assert ingest(write_config(tmp_path, container_name)) == 0
    assert summary_of(tmp_path)["recreated"] is True
    xr.testing.assert_identical(stored(swift_server, container_name), expected(tmp_path, 1))


def test_killed_ingest_process_blocks_until_its_lock_expires_then_recovers(
    swift_server, env_auth, container_name, tmp_path
):
    (tmp_path / "in").mkdir()
    total = 14
    for i in range(total):
        make_file(tmp_path / "in", i)
    cfg = write_config(tmp_path, container_name, ttl=4, per_commit=1)
    proc = subprocess.Popen(
        [sys.executable, "-m", "swiftzarr_batch.workflows.ingest", str(cfg)],
        env=env_auth,
        cwd=Path(__file__).parents[1],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    store = stored_store(swift_server, container_name)
    deadline = time.monotonic() + 120
    committed = 0
    while time.monotonic() < deadline and proc.poll() is None:
        record = dataset_state.read_record(store)
        committed = len(record["files"]) if record else 0
        if committed >= 2:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=30)
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, "the ingest finished before it could be killed"
    assert committed < total

    assert ingest(cfg) == EXIT_LOCKED  # the dead run's lock is still there
    assert summary_of(tmp_path)["status"] == "locked"
    time.sleep(5.5)  # the lock's X-Delete-After (ttl + 1 s) passes
    assert ingest(cfg) == 0
    done = summary_of(tmp_path)
    assert done["verified"] and done["length_after"] == total * STEPS
    xr.testing.assert_identical(stored(swift_server, container_name), expected(tmp_path, total))


def test_a_second_ingest_is_refused_while_the_lock_is_held(
    swift_server, env_auth, container_name, tmp_path
):
    (tmp_path / "in").mkdir()
    make_file(tmp_path / "in", 0)
    cfg = write_config(tmp_path, container_name)
    store = stored_store(swift_server, container_name)
    with DatasetLock(store, "ingest", ttl=60, renew=False):
        assert ingest(cfg) == EXIT_LOCKED
        summary = summary_of(tmp_path)
        assert summary["status"] == "locked" and "held by" in summary["error"]
        assert dataset_state.read_record(store) is None  # nothing was written
    assert ingest(cfg) == 0


def test_two_ingests_started_together_never_both_write(
    swift_server, env_auth, container_name, tmp_path
):
    (tmp_path / "in").mkdir()
    for i in range(4):
        make_file(tmp_path / "in", i)
    cfg = write_config(tmp_path, container_name, per_commit=1)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "swiftzarr_batch.workflows.ingest",
                str(cfg),
                "--summary",
                str(tmp_path / f"run{n}.json"),
            ],
            env=env_auth,
            cwd=Path(__file__).parents[1],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n in range(2)
    ]
    codes = sorted(p.wait(timeout=180) for p in procs)
    runs = [json.loads((tmp_path / f"run{n}.json").read_text()) for n in range(2)]
    ingested = sorted(len(r.get("files_ingested", [])) for r in runs)
    # either the second was refused by the lock, or it started after the first had finished
    assert (codes, ingested) in (([0, EXIT_LOCKED], [0, 4]), ([0, 0], [0, 4]))
    xr.testing.assert_identical(stored(swift_server, container_name), expected(tmp_path, 4))


@pytest.mark.parametrize("backend", ["swift", "local"])
def test_lock_is_exclusive_and_expires(swift_server, container_name, tmp_path, backend):
    def store():
        if backend == "local":
            return LocalStore(tmp_path / "ds")
        return SwiftStore(
            container_name,
            "ds",
            authurl=swift_server.auth_url,
            user=swift_server.user,
            key=swift_server.key,
        )

    for _ in range(3):  # several runs start at once: exactly one gets the lock
        winners, errors = [], []

        def contend(winners=winners, errors=errors):
            lock = DatasetLock(store(), "race", ttl=30, renew=False)
            try:
                lock.acquire()
                winners.append(lock)
            except LockHeldError as exc:
                errors.append(exc)

        threads = [threading.Thread(target=contend) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(winners) == 1 and len(errors) == 3
        winners[0].release()

    dead = DatasetLock(store(), "expiring", ttl=2, renew=False)
    dead.acquire()  # and never released: its process "died"
    with pytest.raises(LockHeldError):
        DatasetLock(store(), "expiring", ttl=2, renew=False).acquire()
    time.sleep(3.2)
    heir = DatasetLock(store(), "expiring", ttl=30, renew=False)
    heir.acquire()
    with pytest.raises(LockLostError):
        dead.renew()  # the dead run, if it woke up, would find out before committing
    heir.release()


def write_mirror_config(tmp_path: Path, src: str, dst: str, extra: str = "") -> Path:
    cfg = tmp_path / "mirror.toml"
    cfg.write_text(f"""
[source]
url = "{src}"
[target]
url = "{dst}"
[mirror]
{extra}
[verify]
structure = true
[output]
summary = "{tmp_path / "mirror.json"}"
""")
    return cfg


def all_bytes(store) -> dict[str, bytes]:
    async def collect():
        return {
            k: (await store.get(k, PROTO)).to_bytes()
            async for k in store.list()
            if "/locks/" not in f"/{k}"
        }

    return sync(collect())


def test_mirror_copies_incrementally_and_deletes_what_vanished(
    swift_server, env_auth, container_name, tmp_path
):
    src = SwiftStore(
        container_name,
        "ds",
        authurl=swift_server.auth_url,
        user=swift_server.user,
        key=swift_server.key,
    )
    root = zarr.group(src)
    root.create_array("keep", shape=(40,), chunks=(10,), dtype="f8")[:] = np.arange(40.0)
    root.create_array("drop", shape=(30,), chunks=(10,), dtype="i4")[:] = 3
    zarr.consolidate_metadata(src)
    dst_url = f"swift://{container_name}-mirror/copy"
    cfg = write_mirror_config(
        tmp_path, f"swift://{container_name}/ds", dst_url, "delete_extra = true"
    )
    assert mirror(cfg) == 0
    first = json.loads((tmp_path / "mirror.json").read_text())
    assert (
        first["status"] == "ok"
        and first["copy"]["keys_server_side"] == first["copy"]["keys_total"] == 10
    )
    dst = SwiftStore(
        f"{container_name}-mirror",
        "copy",
        authurl=swift_server.auth_url,
        user=swift_server.user,
        key=swift_server.key,
    )
    assert all_bytes(dst) == all_bytes(src)

    keep = zarr.open_array(src, path="keep", mode="r+")
    keep.resize((50,))
    keep[40:] = -1.0
    sync(src.delete_dir("drop"))
    zarr.consolidate_metadata(src)
    assert mirror(cfg) == 0
    second = json.loads((tmp_path / "mirror.json").read_text())["copy"]
    assert second["keys_deleted"] == 4  # drop/zarr.json and its three chunks
    assert second["keys_copied"] == 3  # keep/zarr.json, keep/c/4, the root's zarr.json
    assert second["keys_skipped"] == 4 and second["verified"]
    assert all_bytes(dst) == all_bytes(src)

    with DatasetLock(src, "ingest", ttl=60, renew=False):  # the source is being written
        assert mirror(cfg) == EXIT_LOCKED


def test_entry_points_and_config_errors(swift_server, env_auth, container_name, tmp_path):
    (tmp_path / "in").mkdir()
    make_file(tmp_path / "in", 0)
    cfg = write_config(tmp_path, container_name)
    repo = Path(__file__).parents[1]

    def run(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            argv, env=env_auth, cwd=repo, capture_output=True, text=True, timeout=180
        )

    out = run(sys.executable, "-m", "swiftzarr_batch.workflows.ingest", str(cfg))
    assert out.returncode == 0, out.stderr
    assert "ingest finished: ok" in out.stderr and summary_of(tmp_path)["verified"]

    mirror_cfg = write_mirror_config(
        tmp_path, f"swift://{container_name}/ds.zarr", str(tmp_path / "local-copy")
    )
    cli = str(Path(sys.executable).parent / "swiftzarr")
    # the command line's cluster options replace the config's [dask] (threads here)
    out = run(
        cli, "mirror", str(mirror_cfg), "--summary", str(tmp_path / "m.json"), "--workers", "1"
    )
    assert out.returncode == 0, out.stderr
    mirrored = json.loads((tmp_path / "m.json").read_text())
    assert mirrored["copy"]["verified"] is True and mirrored["cluster"] == "local"
    assert xr.open_zarr(tmp_path / "local-copy").sizes["time"] == STEPS
    out = run(cli, "ingest", str(cfg), "--summary", str(tmp_path / "i.json"), "--cluster", "local")
    assert out.returncode == 1 and "needs workers >= 1" in out.stderr
    assert "needs workers >= 1" in json.loads((tmp_path / "i.json").read_text())["error"]

    typo = tmp_path / "typo.toml"
    typo.write_text(cfg.read_text().replace("append_dim", "apend_dim"))
    bad = write_config(tmp_path, container_name, extra="[ingest2]\nx = 1")
    assert ingest(bad, summary_path=tmp_path / "bad.json") == 1
    assert "unknown section" in json.loads((tmp_path / "bad.json").read_text())["error"]
    assert ingest(typo, summary_path=tmp_path / "typo.json") == 1
    error = json.loads((tmp_path / "typo.json").read_text())["error"]
    assert "apend_dim" in error and "[ingest]" in error


def test_example_configs_are_valid():
    from swiftzarr_batch.workflows import ingest as ingest_module
    from swiftzarr_batch.workflows import mirror as mirror_module
    from swiftzarr_batch.workflows.common import load_config

    examples = Path(__file__).parents[1] / "workflows" / "examples"
    ing = load_config(examples / "ingest.toml", ingest_module.SCHEMA)
    assert ing["ingest"]["append_dim"] == "time" and ing["source"]["min_age_seconds"] == 300
    mir = load_config(examples / "mirror.toml", mirror_module.SCHEMA)
    assert mir["target"]["env_prefix"] == "BACKUP_" and mir["mirror"]["delete_extra"] is True
