"""The seed notebook, end to end, in zarr formats 2 and 3 (via examples/seed_walkthrough.py)."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest

from swiftzarr_batch import SwiftStore, acquire_token

EXAMPLE = pathlib.Path(__file__).parent.parent / "examples" / "seed_walkthrough.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("seed_walkthrough", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXPECTED = {
    2: {
        # zarr 3 also writes an (empty) .zattrs next to each .zgroup/.zarray in format 2.
        "listdir": [".zattrs", ".zgroup", "foo"],
        "walk": [
            ".zattrs",
            ".zgroup",
            "foo/.zattrs",
            "foo/.zgroup",
            "foo/bar/.zarray",
            "foo/bar/.zattrs",
            "foo/bar/0.0",
            "foo/bar/0.1",
            "foo/bar/1.0",
            "foo/bar/1.1",
        ],
        "xarray": [".zattrs", ".zgroup", ".zmetadata", "foo", "x", "y"],
    },
    3: {
        "listdir": ["foo", "zarr.json"],
        "walk": [
            "foo/bar/c/0/0",
            "foo/bar/c/0/1",
            "foo/bar/c/1/0",
            "foo/bar/c/1/1",
            "foo/bar/zarr.json",
            "foo/zarr.json",
            "zarr.json",
        ],
        "xarray": ["foo", "x", "y", "zarr.json"],
    },
}


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_seed_walkthrough(zarr_format, swift_env, container_name, capsys):
    results = _load_example().main(zarr_format, container_name)
    want = EXPECTED[zarr_format]
    np.testing.assert_array_equal(results["z[:5, :5]"], np.full((5, 5), 42, dtype="i4"))
    assert results["listdir"] == want["listdir"]
    assert results["walk"] == want["walk"]
    # The real `swift` CLI lists exactly the objects the store wrote, nothing more.
    assert results["swift list"] == [f"zarr-demo/{k}" for k in want["walk"]]
    assert results["xarray listdir"] == want["xarray"]
    assert results["xarray identical"] is True
    assert results["new_store listdir"] == want["xarray"]
    assert results["swift list --delimiter"] == ["xarray-demo/", "xarray-demo2/", "zarr-demo/"]
    assert results["root listdir"] == ["xarray-demo", "xarray-demo2", "zarr-demo"]
    out = capsys.readouterr().out
    assert "[[42 42 42 42 42]" in out
    assert swift_env["ST_KEY"] not in out


def test_acquire_token_opens_a_store(swift_server, container_name):
    url, token = acquire_token(swift_server.auth_url, swift_server.user, swift_server.key)
    assert url == swift_server.storage_url("test")
    store = SwiftStore(container_name, "p", preauthurl=url, preauthtoken=token)
    store.walk()  # a listing of a missing container is empty, not an error
    import zarr

    arr = zarr.create_array(store, name="a", shape=(10,), chunks=(5,), dtype="f8")
    arr[:] = np.arange(10)
    assert list(store.walk()) == ["a/c/0", "a/c/1", "a/zarr.json", "zarr.json"]
    again = zarr.open_array(store.with_read_only(True), path="a")
    np.testing.assert_array_equal(again[:], np.arange(10))
