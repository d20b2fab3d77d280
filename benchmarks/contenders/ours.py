"""This project: ``SwiftStore`` through plain ``da.to_zarr`` / zarr, and through its helpers."""

from __future__ import annotations

import importlib
from typing import Any

from benchmarks.contenders.base import Unavailable, ZarrContender, array_case, source_array


class Ours(ZarrContender):
    name = "ours"

    def setup(self) -> dict[str, Any]:
        super().setup()
        import swiftzarr_batch

        self.warm_up()
        return {"version": getattr(swiftzarr_batch, "__version__", "?")}

    def store(self, container: str, prefix: str, *, read_only: bool = False) -> Any:
        from swiftzarr_batch import SwiftStore

        s = self.server
        return SwiftStore(container, prefix, authurl=s.auth_url, user=s.user, key=s.key,
                          read_only=read_only, max_connections=max(s.concurrency, 16))

    def w5_delete(self, container: str, prefix: str, expect: int) -> dict[str, Any]:
        from zarr.core.sync import sync

        store = self.store(container, "")
        sync(store.delete_dir(prefix.rstrip("/")))
        return {"objects": expect, "bytes": 0}

    def w4_swift2swift(self, src_container: str, src_prefix: str, dst_container: str,
                       dst_prefix: str, expect: int) -> dict[str, Any]:
        copy = _copy_module()
        return _copy_call(copy, self.store(src_container, src_prefix.rstrip("/")),
                          self.store(dst_container, dst_prefix.rstrip("/")), expect)

    def w4_local2swift(self, local_dir: str, dst_container: str, dst_prefix: str,
                       expect: int) -> dict[str, Any]:
        copy = _copy_module()
        from zarr.storage import LocalStore

        return _copy_call(copy, LocalStore(local_dir, read_only=True),
                          self.store(dst_container, dst_prefix.rstrip("/")), expect)


def _copy_module() -> Any:
    try:
        return importlib.import_module("swiftzarr_batch.copy")
    except ImportError as e:
        raise Unavailable(f"not available yet: swiftzarr_batch.copy is not in the tree ({e})") from None


def _copy_call(copy: Any, src: Any, dst: Any, expect: int) -> dict[str, Any]:
    fn = getattr(copy, "copy_store", None)
    if fn is None:
        raise Unavailable("not available yet: swiftzarr_batch.copy has no copy_store")
    result = fn(src, dst)
    copied = getattr(result, "keys_total", None)  # a CopySummary
    return {"objects": expect, "bytes": getattr(result, "bytes_copied", 0),
            "result": result.line() if hasattr(result, "line") else str(result)[:200],
            "check": "ok" if copied in (None, expect) else f"FAIL: copied {copied} of {expect}"}


class OursHelpers(Ours):
    """The project's dask helpers (``swiftzarr_batch.dask_helpers.write_array``)."""

    name = "ours-helpers"

    def w1_write(self, case: dict[str, Any], container: str, path: str) -> dict[str, Any]:
        try:
            helpers = importlib.import_module("swiftzarr_batch.dask_helpers")
        except ImportError as e:
            raise Unavailable(
                f"not available yet: swiftzarr_batch.dask_helpers is not in the tree ({e})"
            ) from None
        write_array = getattr(helpers, "write_array", None)
        if write_array is None:
            raise Unavailable("not available yet: dask_helpers has no write_array")
        ac = array_case(case)
        write_array(source_array(ac), self.store(container, path), "a", compressors=None,
                    chunks=ac.chunk)
        return {"objects": ac.chunks, "bytes": ac.chunks * ac.chunk_bytes}
