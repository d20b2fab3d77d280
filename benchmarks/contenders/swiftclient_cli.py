"""python-swiftclient: in process (``get_container(full_listing=True)``) and its ``swift`` CLI.

The CLI runs as a child of the worker; its CPU is the worker's RUSAGE_CHILDREN delta and its
peak RSS comes from ``wait4``. Each CLI call authenticates once, as a user's would.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.contenders.base import Contender, listing_result
from benchmarks.measure import run_child


class SwiftclientInProcess(Contender):
    name = "swiftclient"

    def setup(self) -> dict[str, Any]:
        # A zarr user lists from a process that has zarr and dask loaded: so does this one, so
        # that both sides of W3 pay the same garbage collector on the same heap.
        import dask.array  # noqa: F401
        import swiftclient
        import zarr  # noqa: F401
        from swiftclient.client import Connection

        s = self.server
        self.conn = Connection(authurl=s.auth_url, user=s.user, key=s.key)
        self.conn.head_account()  # authenticate before anything is measured
        return {"version": swiftclient.__version__}

    def w3_keys(self, container: str, prefix: str, expect: int) -> dict[str, Any]:
        _, listing = self.conn.get_container(container, prefix=prefix, full_listing=True)
        return listing_result(len(listing), expect)

    def w3_dir(self, container: str, prefix: str, expect: int) -> dict[str, Any]:
        _, listing = self.conn.get_container(
            container, prefix=prefix, delimiter="/", full_listing=True
        )
        return listing_result(len(listing), expect)


class SwiftCLI(Contender):
    name = "swift-cli"

    def setup(self) -> dict[str, Any]:
        self.swift = str(Path(sys.executable).with_name("swift"))
        s = self.server
        self.env = {**os.environ, "ST_AUTH": s.auth_url, "ST_USER": s.user, "ST_KEY": s.key}
        for name in ("OS_STORAGE_URL", "OS_AUTH_TOKEN"):
            self.env.pop(name, None)
        return {"version": run_child([self.swift, "--version"], env=self.env)[0].strip()}

    def _swift(self, *args: str, cwd: str | None = None) -> tuple[str, int]:
        from benchmarks.worker import current_meter

        return run_child([self.swift, *args], current_meter(), cwd=cwd, env=self.env)

    def w3_keys(self, container: str, prefix: str, expect: int) -> dict[str, Any]:
        _, lines = self._swift("list", container, "--prefix", prefix)
        return listing_result(lines, expect)

    def w4_local2swift(
        self, local_dir: str, dst_container: str, dst_prefix: str, expect: int, threads: int = 10
    ) -> dict[str, Any]:
        self._swift(
            "upload",
            "--object-threads",
            str(threads),
            "--object-name",
            dst_prefix.rstrip("/"),
            dst_container,
            local_dir,
        )
        return {"objects": expect, "bytes": 0}

    def w4_swift2swift(
        self,
        src_container: str,
        src_prefix: str,
        dst_container: str,
        dst_prefix: str,
        expect: int,
        threads: int = 10,
    ) -> dict[str, Any]:
        """``swift download`` to a temp dir, then ``swift upload`` from it."""
        tmp = tempfile.mkdtemp(prefix="bench-swift-cli-")
        try:
            self._swift(
                "download",
                "--object-threads",
                str(threads),
                "--prefix",
                src_prefix,
                "-D",
                tmp,
                src_container,
            )
            src = Path(tmp, src_prefix.rstrip("/"))
            self._swift(
                "upload",
                "--object-threads",
                str(threads),
                "--object-name",
                dst_prefix.rstrip("/"),
                dst_container,
                str(src),
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return {"objects": expect, "bytes": 0}

    def w5_delete(self, container: str, prefix: str, expect: int) -> dict[str, Any]:
        self._swift("delete", container, "--prefix", prefix)
        return {"objects": expect, "bytes": 0}
