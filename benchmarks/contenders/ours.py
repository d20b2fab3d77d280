"""This project: ``SwiftStore`` through plain ``da.to_zarr`` / zarr, and through its helpers."""

from __future__ import annotations

import importlib
from typing import Any

from benchmarks.contenders.base import Unavailable, ZarrContender, array_case, source_array
from benchmarks.contenders.files import FileOps


class Ours(FileOps, ZarrContender):
    name = "ours"

    def files(self) -> Any:
        """The ``swift://`` file system (W9), made once per worker."""
        if getattr(self, "_files", None) is None:
            from swiftzarr_batch.store.filesystem import SwiftFileSystem

            s = self.server
            self._files = SwiftFileSystem(authurl=s.auth_url, user=s.user, key=s.key)
        return self._files

    def setup(self) -> dict[str, Any]:
        super().setup()
        import swiftzarr_batch

        self.warm_up()
        return {"version": getattr(swiftzarr_batch, "__version__", "?")}

    def store(self, container: str, prefix: str, *, read_only: bool = False) -> Any:
        from swiftzarr_batch import SwiftStore

        s = self.server
        return SwiftStore(
            container,
            prefix,
            authurl=s.auth_url,
            user=s.user,
            key=s.key,
            read_only=read_only,
            **self.options,
        )

    @property
    def options(self) -> dict[str, Any]:
        """The store's defaults, unless BENCH_OURS_MAX_CONNECTIONS says otherwise."""
        import os

        limit = os.environ.get("BENCH_OURS_MAX_CONNECTIONS")
        return {"max_connections": int(limit)} if limit else {}

    def w5_delete(self, container: str, prefix: str, expect: int) -> dict[str, Any]:
        from zarr.core.sync import sync

        store = self.store(container, "")
        sync(store.delete_dir(prefix.rstrip("/")))
        return {"objects": expect, "bytes": 0}

    def w4_swift2swift(
        self, src_container: str, src_prefix: str, dst_container: str, dst_prefix: str, expect: int
    ) -> dict[str, Any]:
        copy = _copy_module()
        return _copy_call(
            copy,
            self.store(src_container, src_prefix.rstrip("/")),
            self.store(dst_container, dst_prefix.rstrip("/")),
            expect,
        )

    def w4_local2swift(
        self, local_dir: str, dst_container: str, dst_prefix: str, expect: int
    ) -> dict[str, Any]:
        copy = _copy_module()
        from zarr.storage import LocalStore

        return _copy_call(
            copy,
            LocalStore(local_dir, read_only=True),
            self.store(dst_container, dst_prefix.rstrip("/")),
            expect,
        )


def _copy_module() -> Any:
    try:
        return importlib.import_module("swiftzarr_batch.transfer.copy")
    except ImportError as e:
        raise Unavailable(
            f"not available yet: swiftzarr_batch.transfer.copy is not in the tree ({e})"
        ) from None


def _copy_call(copy: Any, src: Any, dst: Any, expect: int) -> dict[str, Any]:
    fn = getattr(copy, "copy_store", None)
    if fn is None:
        raise Unavailable("not available yet: swiftzarr_batch.transfer.copy has no copy_store")
    result = fn(src, dst)
    copied = getattr(result, "keys_total", None)  # a CopySummary
    return {
        "objects": expect,
        "bytes": getattr(result, "bytes_copied", 0),
        "result": result.line() if hasattr(result, "line") else str(result)[:200],
        "check": "ok" if copied in (None, expect) else f"FAIL: copied {copied} of {expect}",
    }


class OursHelpers(Ours):
    """The project's dask helpers (``swiftzarr_batch.jobs.write_array.write_array``)."""

    name = "ours-helpers"

    def w1_write(self, case: dict[str, Any], container: str, path: str) -> dict[str, Any]:
        try:
            helpers = importlib.import_module("swiftzarr_batch.jobs.write_array")
        except ImportError as e:
            raise Unavailable(
                f"not available yet: swiftzarr_batch.jobs.write_array is not in the tree ({e})"
            ) from None
        write_array = getattr(helpers, "write_array", None)
        if write_array is None:
            raise Unavailable("not available yet: dask_helpers has no write_array")
        ac = array_case(case)
        write_array(
            source_array(ac), self.store(container, path), "a", compressors=None, chunks=ac.chunk
        )
        return {"objects": ac.chunks, "bytes": ac.chunks * ac.chunk_bytes}


class OursNoMD5(Ours):
    """``ours`` with both MD5 checks off (``verify_reads=False, verify_writes=False``): not the
    default; shows what the integrity checks cost (one MD5 per chunk each way)."""

    name = "ours-nomd5"

    def store(self, container: str, prefix: str, *, read_only: bool = False) -> Any:
        from swiftzarr_batch import SwiftStore

        s = self.server
        return SwiftStore(
            container,
            prefix,
            authurl=s.auth_url,
            user=s.user,
            key=s.key,
            read_only=read_only,
            verify_reads=False,
            verify_writes=False,
            **self.options,
        )


class OursXarray(Ours):
    """The same array as one variable of an xarray Dataset: ``ds.to_zarr`` / ``xr.open_zarr``."""

    name = "ours-xarray"

    def w1_write(self, case: dict[str, Any], container: str, path: str) -> dict[str, Any]:
        import xarray as xr

        ac = array_case(case)
        ds = xr.Dataset({"a": (("y", "x"), source_array(ac))})
        ds.to_zarr(
            self.store(container, path),
            mode="w-",
            consolidated=False,
            zarr_format=3,
            encoding={"a": {"chunks": ac.chunk, "compressors": None}},
        )
        return {"objects": ac.chunks, "bytes": ac.chunks * ac.chunk_bytes}

    def w2_read(self, case: dict[str, Any], container: str, path: str) -> dict[str, Any]:
        import numpy as np
        import xarray as xr

        from benchmarks.contenders.base import expected_sum

        ac = array_case(case)
        ds = xr.open_zarr(
            self.store(container, path, read_only=True),
            consolidated=False,
            chunks={"y": ac.block_shape[0], "x": ac.block_shape[1]},
        )
        total = int(ds["a"].data.sum(dtype=np.int64).compute())
        want = expected_sum(ac)
        return {
            "objects": ac.chunks,
            "bytes": ac.chunks * ac.chunk_bytes,
            "check": "ok" if total == want else f"FAIL: sum {total} != {want}",
        }
