"""The helpers on a cluster made of real commands: ``dask scheduler`` + two ``dask worker``.

Nothing is shared with the test process but the network (all on 127.0.0.1): the workers get
the store by pickle, so this proves the storage URL + token are all they need (their environment
has no Swift credentials). One worker is killed with SIGKILL in the middle of a write. The
example script runs here too, as users run it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from zarr_reference import reference_objects

from swiftzarr_batch import SwiftStore, write_array, write_dataset
from swiftzarr_batch.testing.swift_server import LocalSwift

pytest.importorskip("distributed")
pytestmark = [
    pytest.mark.filterwarnings("ignore::zarr.errors.ZarrUserWarning"),
    pytest.mark.timeout(300),
]

ROOT = Path(__file__).resolve().parent.parent
DASK = str(Path(sys.executable).with_name("dask"))
DATA = np.arange(1024 * 1024, dtype="<i4").reshape(1024, 1024)  # 256 chunks of 64 x 64
AUTH = " GET /auth/v1.0 "


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class CliCluster:
    """``dask scheduler`` and ``dask worker`` processes on loopback, each in its own session."""

    def __init__(self, log_dir: Path) -> None:
        self.port = _free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.log_dir = log_dir
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("ST_", "OS_"))
        }  # workers get no credentials
        self.procs: dict[str, subprocess.Popen] = {}
        self._spawn(
            "scheduler",
            [DASK, "scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--no-dashboard"],
        )

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.log_dir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True
        )

    def start_worker(self, name: str) -> None:
        self._spawn(
            name,
            [
                DASK,
                "worker",
                self.address,
                "--host",
                "127.0.0.1",
                "--nthreads",
                "2",
                "--no-nanny",
                "--no-dashboard",
                "--name",
                name,
            ],
        )

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)

    def close(self) -> None:
        for name in list(self.procs)[::-1]:
            proc = self.procs.pop(name)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def swift():
    with LocalSwift() as server:  # its own access log: only this module's requests
        yield server


@pytest.fixture(scope="module")
def cli_client(tmp_path_factory):
    from distributed import Client

    cluster = CliCluster(tmp_path_factory.mktemp("dask-cli"))
    try:
        cluster.start_worker("w1")
        cluster.start_worker("w2")
        with Client(cluster.address, timeout="60s") as client:
            client.wait_for_workers(2, timeout=120)
            client.cluster_processes = cluster  # for the kill test
            yield client
    finally:
        cluster.close()


def swift_objects(server, container: str) -> dict[str, bytes]:
    from swiftclient.client import Connection

    conn = Connection(authurl=server.auth_url, user=server.user, key=server.key)
    try:
        _, listing = conn.get_container(container, full_listing=True)
        return {o["name"]: conn.get_object(container, o["name"])[1] for o in listing}
    finally:
        conn.close()


def dataset(steps: int = 16) -> xr.Dataset:
    rng = np.random.default_rng(3)
    return xr.Dataset(
        {
            "temp": (("time", "y", "x"), rng.random((steps, 32, 32)).astype("f4")),
            "wind": (("time", "y", "x"), rng.normal(size=(steps, 32, 32))),
            "station": (("time",), rng.integers(0, 9, steps).astype("i2")),
        },
        coords={
            "time": pd.date_range("2001-01-01", periods=steps, freq="h"),
            "y": np.arange(32),
            "x": np.arange(32),
        },
    ).chunk({"time": 4, "y": 16, "x": 16})


def log_count(server, fragment: str) -> int:
    return sum(fragment in line for line in server.access_log_lines())


def test_cli_cluster_round_trips_with_one_auth(swift, cli_client):
    store = SwiftStore("cli", authurl=swift.auth_url, user=swift.user, key=swift.key)
    ds = dataset()
    for zarr_format in (2, 3):
        darr = da.from_array(DATA, chunks=(128, 256))
        result = write_array(
            darr, store, f"a{zarr_format}", chunks=(64, 64), zarr_format=zarr_format
        )
        assert result.chunks == 256
        write_dataset(ds, store, path=f"ds{zarr_format}", zarr_format=zarr_format)
        back = xr.open_zarr(store, group=f"ds{zarr_format}", consolidated=True).load()
        xr.testing.assert_identical(back, ds.load())
        assert all(
            back[v].values.tobytes() == ds[v].values.tobytes() for v in ("temp", "wind", "station")
        )
    assert log_count(swift, AUTH) == 1  # a fresh server: the client's one auth, nothing else
    stored = swift_objects(swift, "cli")
    for zarr_format in (2, 3):
        expected = {
            k: v
            for k, v in reference_objects(
                DATA, f"a{zarr_format}", chunks=(64, 64), zarr_format=zarr_format
            ).items()
            if k.startswith(f"a{zarr_format}/")
        }  # the root group is shared (consolidated)
        assert len(expected) > 256
        assert {k: v for k, v in stored.items() if k.startswith(f"a{zarr_format}/")} == expected
    workers = cli_client.run(lambda: __import__("os").environ.get("ST_KEY"))
    assert len(workers) == 2 and set(workers.values()) == {None}


def test_killing_a_worker_process_mid_write(swift, cli_client):
    cluster = cli_client.cluster_processes
    cluster.start_worker("victim")
    cli_client.wait_for_workers(3, timeout=120)
    store = SwiftStore("cli-kill", authurl=swift.auth_url, user=swift.user, key=swift.key)
    darr = da.from_array(DATA, chunks=(64, 64)).map_blocks(slow_blocks(0.05), dtype=DATA.dtype)
    future = cli_client.compute(write_array(darr, store, "a", chunks=(64, 64), compute=False))
    deadline = time.monotonic() + 120
    while log_count(swift, "PUT /v1/AUTH_test/cli-kill/a/c/") < 40:
        assert future.status == "pending", future.exception(timeout=5)
        assert time.monotonic() < deadline, "the write did not start"
        time.sleep(0.05)
    victim = [
        a for a, info in cli_client.scheduler_info()["workers"].items() if info["name"] == "victim"
    ]
    assert victim and cli_client.processing()[victim[0]], "the victim must be busy"
    cluster.kill("victim")
    assert future.result(timeout=240) == 256
    assert swift_objects(swift, "cli-kill") == reference_objects(DATA, "a", chunks=(64, 64))
    assert len(cli_client.scheduler_info()["workers"]) == 2


def slow_blocks(seconds: float):
    """A block function that takes a while, so a job can be cut half-way.

    A closure, not a module function: plain pickle cannot ship it, so distributed falls back
    to cloudpickle, which sends it by value (the scheduler and workers can't import tests/).
    """

    def slow(block):
        time.sleep(seconds)
        return block

    return slow


def test_example_script_writes_and_reports(swift_server, tmp_path):
    env = {**os.environ, **swift_server.env}
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "distributed_write.py"),
            "--container",
            "example",
            "--prefix",
            "run1",
            "--steps",
            "12",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "100% Completed" in out and "objects/s" in out and "auth_calls" in out
    store = SwiftStore(
        "example",
        "run1",
        authurl=swift_server.auth_url,
        user=swift_server.user,
        key=swift_server.key,
    )
    ds = xr.open_zarr(store, group="dataset", consolidated=True)
    assert ds.sizes["time"] == 12 and set(ds.data_vars) >= {"temp", "wind"}
    assert zarr.open_array(store, path="array", mode="r").nchunks == 256
