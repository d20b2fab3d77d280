"""Write a dataset and a 256-chunk array to Swift from a local dask cluster, the safe way.

    python examples/distributed_write.py [--workers 2] [--threads 2] [--steps 24]
                                         [--zarr-format 3] [--repeat 1]

Credentials come from ST_AUTH/ST_USER/ST_KEY; without them the script starts a local Swift
server (``LocalSwift``) for the run. It starts a ``LocalCluster`` of worker processes, then:

1. writes the first half of a dataset with ``write_dataset`` (template, one task per chunk-aligned
   block, one final consolidate task), and appends the second half along ``time``;
2. writes a 1024 x 1024 int32 array in 64 x 64 chunks (256 objects) with ``write_array`` and
   prints how many objects per second the cluster wrote;
3. reads both back, checks them, and prints the request counters of the client and all workers.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import ExitStack

import dask.array as da
import numpy as np
import pandas as pd
import xarray as xr
import zarr

from swiftzarr_batch import SwiftStore, job_counters, write_array, write_dataset
from swiftzarr_batch.testing.swift_server import LocalSwift


def make_dataset(steps: int) -> xr.Dataset:
    rng = np.random.default_rng(2024)
    return xr.Dataset(
        {
            "temp": (
                ("time", "lat", "lon"),
                rng.normal(280, 5, (steps, 64, 128)).astype("f4"),
                {"units": "K"},
            ),
            "wind": (("time", "lat", "lon"), rng.normal(0, 3, (steps, 64, 128)).astype("f4")),
            "station_count": (("time",), rng.integers(0, 500, steps).astype("i4")),
        },
        coords={
            "time": pd.date_range("2024-01-01", periods=steps, freq="6h"),
            "lat": np.linspace(-88.6, 88.6, 64),
            "lon": np.linspace(0, 357.2, 128),
        },
        attrs={"title": "swiftzarr_batch distributed_write example"},
    ).chunk({"time": 4, "lat": 32, "lon": 64})


def show(label: str, result) -> None:
    rate = f", {result.chunks_per_second:.0f} objects/s" if result.chunks_per_second else ""
    print(f"{label}: {result.tasks} tasks in {result.seconds:.2f} s{rate}")
    print(f"    counters (client + workers): {result.counters}")


def run(args: argparse.Namespace, credentials: dict[str, str]) -> None:
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=args.workers,
            threads_per_worker=args.threads,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as client,
    ):
        print(
            f"cluster: {args.workers} worker processes x {args.threads} threads; "
            f"dashboard {client.dashboard_link}"
        )
        store = SwiftStore(
            args.container,
            args.prefix,
            authurl=credentials["ST_AUTH"],
            user=credentials["ST_USER"],
            key=credentials["ST_KEY"],
        )
        ds = make_dataset(args.steps)
        half = args.steps // 2
        show(
            "dataset, first half",
            write_dataset(
                ds.isel(time=slice(0, half)),
                store,
                path="dataset",
                zarr_format=args.zarr_format,
                progress=True,
            ),
        )
        show(
            "dataset, appended second half",
            write_dataset(
                ds.isel(time=slice(half, None)),
                store,
                path="dataset",
                mode="a",
                append_dim="time",
                rechunk=True,
                progress=True,
            ),
        )

        data = np.arange(1024 * 1024, dtype="i4").reshape(1024, 1024)
        for i in range(args.repeat):  # new paths: replacing an array first deletes its objects
            path = "array" if i == 0 else f"array-{i + 1}"
            result = write_array(
                da.from_array(data, chunks=(128, 256)),
                store,
                path,
                chunks=(64, 64),
                zarr_format=args.zarr_format,
                progress=True,
            )
            show(f"array of 256 chunks at {path!r}", result)

        back = xr.open_zarr(store, group="dataset", consolidated=True).load()
        xr.testing.assert_identical(back, ds.load())
        np.testing.assert_array_equal(zarr.open_array(store, path="array", mode="r")[:], data)
        print(f"read back and checked: dataset {dict(back.sizes)}, array {data.shape}")
        print(f"all processes since start: {job_counters(client)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="threads per worker")
    parser.add_argument("--steps", type=int, default=24, help="time steps of the dataset")
    parser.add_argument("--zarr-format", type=int, choices=(2, 3), default=3)
    parser.add_argument("--repeat", type=int, default=1, help="array writes to time")
    parser.add_argument("--container", default="distributed-example")
    parser.add_argument("--prefix", default="run")
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        credentials = {k: os.environ.get(k, "") for k in ("ST_AUTH", "ST_USER", "ST_KEY")}
        if not all(credentials.values()):
            print("ST_AUTH/ST_USER/ST_KEY not set: starting a local Swift server")
            credentials = stack.enter_context(LocalSwift()).env
        print(
            f"writing to {credentials['ST_AUTH']} as {credentials['ST_USER']}, "
            f"container {args.container!r}, prefix {args.prefix!r}"
        )
        run(args, credentials)
    return 0


if __name__ == "__main__":  # dask workers start with spawn: keep the work behind this guard
    sys.exit(main())
