"""The object nodes of a ``LocalSwift`` run with ``replicas > 1``: their names and ports, where
each replica of an object lives, and taking a node down and back.

Why apart from ``swift_server``: the operator modes (issue "Swift as operators run it") add
node-level control that a one-replica test server never needs; ``LocalSwift`` inherits
``ObjectNodes`` for it.
"""

from __future__ import annotations

import hashlib
import struct
import threading
import time
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from swiftzarr_batch.errors import ServerError
from swiftzarr_batch.testing import swift_configs as cfg
from swiftzarr_batch.testing.processes import ServerProcesses
from swiftzarr_batch.testing.swift_cluster_files import LAUNCHER

__all__ = ["ObjectNodes"]


class ObjectNodes:
    """Object-node control of a ``LocalSwift`` (a mixin: the attributes below are the
    server's)."""

    if TYPE_CHECKING:
        _ports: dict[str, int]
        _procs: ServerProcesses
        _settings: cfg.ClusterSettings | None
        _python: Path | None
        _lock: threading.RLock
        replicas: int
        deferred_listings: float | None

        @property
        def data_dir(self) -> Path:
            """The server's data dir."""

        @staticmethod
        def _conf_name(name: str) -> str: ...
        def _spawn_server(self, name: str) -> None: ...
        def _wait_ready(self, since: float) -> None: ...
        def _spawn(self, name: str, argv: Sequence[str]) -> None: ...
        def _log_path(self, name: str) -> Path: ...

    @property
    def object_server_names(self) -> list[str]:
        """Process names of the object servers, node 0 first (``object``, ``object2``...)."""
        return cfg.object_port_names(self.replicas)

    def object_server_url(self, node: int) -> str:
        """``http://127.0.0.1:PORT`` of object server ``node`` (0-based), running or not."""
        return f"http://127.0.0.1:{self._ports[self.object_server_names[node]]}"

    @property
    def part_power(self) -> int:
        """The object ring's partition power (fewer partitions when replicated: faster passes)."""
        return 10 if self.replicas == 1 else 8

    def direct_object_urls(self, container: str, obj: str, account: str = "test") -> list[str]:
        """Object-server URLs of each replica of ``container/obj`` (policy 0), node 0 first.

        With as many devices as replicas every partition lives on every node, so replica ``i``
        is on node ``i``'s device ``d<i+1>``. A plain GET there reads that replica alone
        (no proxy, no failover): how tests check what each node holds.
        """
        s = self._settings
        if s is None:
            raise ServerError("the server was never started: call start() first")
        path = f"/AUTH_{account}/{container}/{obj}"
        digest = hashlib.md5(
            (s.hash_prefix + path + s.hash_suffix).encode(), usedforsecurity=False
        ).digest()
        part = struct.unpack_from(">I", digest)[0] >> (32 - self.part_power)
        quoted = urllib.parse.quote(f"/{part}{path}")
        return [f"{self.object_server_url(i)}/d{i + 1}{quoted}" for i in range(self.replicas)]

    def async_pending_count(self) -> int:
        """Container updates waiting in the object nodes' async_pending dirs (not yet listed)."""
        root = self.data_dir / "srv"
        return sum(
            1 for d in root.glob("node*/d*/async_pending*") for f in d.rglob("*") if f.is_file()
        )

    def stop_object_server(self, node: int) -> None:
        """Take object node ``node`` (0-based) down: its server and its daemons stop.

        The proxy then writes at quorum to the others and reads from them; when the node is
        started again, the other nodes' replicators push it what it missed.
        """
        with self._lock:
            name = self.object_server_names[node]  # IndexError names a node that is not there
            for proc in (name, f"replicator{node + 1}", f"updater{node + 1}"):
                self._procs.stop(proc)

    def start_object_server(self, node: int) -> None:
        """Start object node ``node`` (0-based) again, on its port, with its daemons."""
        with self._lock:
            name = self.object_server_names[node]
            if name in self._procs:
                raise ServerError(f"object server {node} is running")
            self._spawn_server(name)
            self._wait_ready(time.monotonic())
            self._spawn_daemons(node)

    def _spawn_daemons(self, node: int) -> None:
        """Object node ``node``'s replicator (if replicated) and updater (if listings lag)."""
        etc = self.data_dir / "etc"
        conf = etc / self._conf_name(self.object_server_names[node])
        daemons = []
        if self.replicas > 1:
            daemons.append((f"replicator{node + 1}", conf, "object-replicator"))
        if self.deferred_listings is not None:
            daemons.append(
                (f"updater{node + 1}", etc / f"object-updater-{node + 1}.conf", "object-updater")
            )
        for name, path, section in daemons:
            argv = [str(self._python), "-I", str(LAUNCHER), "daemon", str(etc / "swift.conf")]
            argv += [str(path), section, "--log", str(self._log_path(name))]
            self._spawn(name, argv)
