"""The original zarrswift notebook, cell by cell, on zarr 3 (run by ``make demo``).

Needs Swift credentials in the environment (ST_AUTH/ST_USER/ST_KEY), as the notebook had them;
``make demo`` starts the local Swift server and sets them. ``--zarr-format 2`` reproduces the
notebook's exact listings (.zgroup/.zarray); zarr 3's default format 3 writes zarr.json files.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import warnings

import numpy as np
import xarray as xr
import zarr

from zarrswift import SwiftStore, acquire_token


def swift_cli(*args: str) -> list[str]:
    """Run python-swiftclient's ``swift`` CLI (as the notebook's ``! swift list demo`` did)."""
    exe = os.path.join(os.path.dirname(sys.executable), "swift")
    out = subprocess.run([exe, *args], check=True, capture_output=True, text=True).stdout
    return out.split()


def main(zarr_format: int = 2, container: str = "demo") -> dict[str, object]:
    results: dict[str, object] = {}
    warnings.filterwarnings("ignore", message="Consolidated metadata", category=UserWarning)

    print("# zarr example")
    store = SwiftStore(container=container, prefix="zarr-demo")
    root = zarr.group(store=store, overwrite=True, zarr_format=zarr_format)
    z = root.zeros(name="foo/bar", shape=(100, 100), chunks=(50, 50), dtype="i4")
    z[:] = 42
    print(z)
    print(z[:5, :5])
    results["z[:5, :5]"] = z[:5, :5]

    print("\n# listing store contents")
    results["listdir"] = store.listdir()
    print(results["listdir"])
    results["walk"] = store._walk()
    print(results["walk"])

    print(f"\n# ! swift list {container}")
    results["swift list"] = swift_cli("list", container)
    print("\n".join(results["swift list"]))

    print("\n# xarray example")
    ds = xr.Dataset(
        {"foo": (("x", "y"), np.random.rand(4, 5))},
        coords={"x": [10, 20, 30, 40], "y": [1, 2, 3, 4, 5]},
    )
    store = SwiftStore(container=container, prefix="xarray-demo")
    print(store.listdir())
    ds.to_zarr(store=store, mode="w", consolidated=True, zarr_format=zarr_format)
    results["xarray listdir"] = store.listdir()
    print(results["xarray listdir"])
    ds2 = xr.open_zarr(store, consolidated=True)
    print(ds2)
    xr.testing.assert_identical(ds, ds2.load())
    results["xarray identical"] = True

    print("\n# SwiftStore authentication")
    getenv = os.environ.get
    for name in ("ST_AUTH", "ST_USER", "ST_KEY", "OS_STORAGE_URL", "OS_AUTH_TOKEN"):
        print(f"{name} is None:", getenv(name) is None)

    preauthurl = store.conn.url
    preauthtoken = store.conn.token
    new_store = SwiftStore(
        container=container, prefix="xarray-demo2", preauthurl=preauthurl, preauthtoken=preauthtoken
    )
    ds.to_zarr(store=new_store, mode="w", consolidated=True, zarr_format=zarr_format)
    results["new_store listdir"] = new_store.listdir()
    print(results["new_store listdir"])

    print(f"\n# ! swift list --delimiter '/' {container}")
    results["swift list --delimiter"] = swift_cli("list", "--delimiter", "/", container)
    print("\n".join(results["swift list --delimiter"]))

    storageurl, token = acquire_token(
        authurl=getenv("ST_AUTH"), user=getenv("ST_USER"), key=getenv("ST_KEY")
    )
    print(storageurl is not None, token is not None)
    store = SwiftStore(container=container, preauthurl=storageurl, preauthtoken=token)
    results["root listdir"] = store.listdir()
    print(results["root listdir"])
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--zarr-format", type=int, choices=(2, 3), default=2)
    parser.add_argument("--container", default="demo")
    args = parser.parse_args()
    main(args.zarr_format, args.container)
