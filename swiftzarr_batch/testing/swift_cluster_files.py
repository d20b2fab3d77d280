"""Where a ``LocalSwift`` keeps its cluster: the data dir, the config files and the rings.

Why apart from ``swift_server``: writing a cluster's files (ports, users, policies, the
operator modes' extra processes and rings) is one concern, and running its processes another;
``LocalSwift`` inherits ``ClusterFiles`` for the first.
"""

from __future__ import annotations

import base64
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from configparser import ConfigParser
from pathlib import Path
from typing import TYPE_CHECKING

from swiftzarr_batch.errors import ServerError
from swiftzarr_batch.testing import swift_configs as cfg
from swiftzarr_batch.testing.install import cache_root
from swiftzarr_batch.testing.processes import ServerProcesses, free_ports

__all__ = ["LAUNCHER", "SERVERS", "ClusterFiles", "check_xattrs", "memcached_binary"]

LAUNCHER = Path(__file__).with_name("swift_launcher.py")
SERVERS = ("account", "container", "object", "proxy")


def check_xattrs(directory: Path) -> None:
    """ServerError unless ``directory`` keeps ``user.*`` xattrs: better now than at first PUT."""
    probe = directory / ".xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.swiftzarr.probe", b"1")
        if os.getxattr(probe, "user.swiftzarr.probe") != b"1":
            raise OSError("xattr read back differs")
    except OSError as e:
        raise ServerError(
            f"{directory} is on a file system without user extended attributes (xattrs), which "
            f"Swift needs for object metadata ({e}); pass a data dir on ext4, xfs, btrfs or a "
            f"recent tmpfs"
        ) from None
    finally:
        probe.unlink(missing_ok=True)


def memcached_binary() -> str | None:
    """memcached's path: on PATH, else Debian's /usr/bin/memcached (PATH may be minimal)."""
    found = shutil.which("memcached")
    if found:
        return found
    return "/usr/bin/memcached" if os.access("/usr/bin/memcached", os.X_OK) else None


class ClusterFiles:
    """The data dir and config files of a ``LocalSwift`` (a mixin: the attributes below are
    the server's)."""

    if TYPE_CHECKING:
        _requested_dir: Path | None
        _data_dir: Path | None
        _made_dir: bool
        _procs: ServerProcesses
        _ports: dict[str, int]
        _users: dict[str, str]
        _admins: tuple[str, ...]
        _settings: cfg.ClusterSettings | None
        _python: Path | None
        replicas: int
        memcached: bool | None
        ratelimit_writes: float | None
        ratelimit_max_sleep: float
        deferred_listings: float | None
        replicator_interval: float
        token_life: int
        max_file_size: int | None
        container_listing_limit: int | None
        s3api: bool
        proxy_workers: int
        keystone: Mapping[str, str] | None
        without: frozenset[str]
        second_policy: str | None

        @property
        def data_dir(self) -> Path:
            """The server's data dir."""

        @property
        def object_server_names(self) -> list[str]:
            """The object servers' process names."""

        @property
        def part_power(self) -> int:
            """The object ring's partition power."""

        @staticmethod
        def _conf_name(name: str) -> str: ...

    def _prepare_data_dir(self) -> None:
        if self._requested_dir is None:
            try:
                self._data_dir = Path(tempfile.mkdtemp(prefix="swiftzarr-swift-"))
                self._made_dir = True
                check_xattrs(self._data_dir)
            except ServerError:  # e.g. an old tmpfs /tmp: fall back to the cache dir
                shutil.rmtree(self.data_dir, ignore_errors=True)
                (cache_root() / "tmp").mkdir(parents=True, exist_ok=True)
                self._data_dir = Path(
                    tempfile.mkdtemp(prefix="swiftzarr-swift-", dir=cache_root() / "tmp")
                )
            self._procs.own_dir(self._data_dir)  # removed even if we die without stop()
        else:
            self._data_dir = self._requested_dir
        nodes = [f"srv/node{i}/d{i}" for i in range(2, self.replicas + 1)]
        for sub in ("etc", "etc/direct", "logs", "recon", "srv/node/d1", *nodes):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        check_xattrs(self.data_dir / "srv" / "node" / "d1")

    def _write_cluster(self) -> None:
        etc = self.data_dir / "etc"
        old = ConfigParser(interpolation=None)
        old.read(etc / "swift.conf")  # a reused data dir must keep its hash path prefix/suffix
        prefix = old.get("swift-hash", "swift_hash_path_prefix", fallback=secrets.token_hex(8))
        suffix = old.get("swift-hash", "swift_hash_path_suffix", fallback=secrets.token_hex(8))
        use_memcached = self.memcached
        binary = memcached_binary()
        if use_memcached and binary is None:
            raise ServerError("memcached=True but no memcached binary (apt-get install memcached)")
        if use_memcached is None:
            use_memcached = binary is not None
        if self.ratelimit_writes is not None and not use_memcached:
            raise ServerError("ratelimit_writes needs memcached (apt-get install memcached)")
        names = [
            *SERVERS,
            *self.object_server_names[1:],
            *(["container-gate"] if self.deferred_listings is not None else []),
            *(["memcached"] if use_memcached else []),
        ]
        self._ports = dict(zip(names, free_ports(len(names)), strict=True))
        try:
            run_user = pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            raise ServerError(
                f"uid {os.geteuid()} has no passwd entry; Swift needs a user name"
            ) from None
        self._settings = s = cfg.ClusterSettings(
            swift_dir=str(etc),
            devices=str(self.data_dir / "srv" / "node"),
            run_user=run_user,
            ports=self._ports,
            users=self._users,
            admins=self._admins,
            fernet_key=base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            token_life=self.token_life,
            hash_prefix=prefix,
            hash_suffix=suffix,
            max_file_size=self.max_file_size,
            container_listing_limit=self.container_listing_limit,
            s3api=self.s3api,
            proxy_workers=self.proxy_workers,
            keystone=self.keystone,
            without=self.without,
            second_policy=self.second_policy,
            memcache_server=f"127.0.0.1:{self._ports['memcached']}" if use_memcached else None,
            object_servers=self.replicas,
            replicator_interval=self.replicator_interval,
            ratelimit_writes=self.ratelimit_writes,
            ratelimit_max_sleep=self.ratelimit_max_sleep,
            deferred_listings=self.deferred_listings,
            recon_dir=str(self.data_dir / "recon"),
        )
        files = {"swift.conf": cfg.swift_conf(s), "proxy-server.conf": cfg.proxy_server_conf(s)}
        for name in ("account", "container"):
            files[f"{name}-server.conf"] = cfg.backend_server_conf(s, name)
        for node in range(1, self.replicas + 1):
            files[self._conf_name(cfg.object_port_names(self.replicas)[node - 1])] = (
                cfg.object_server_conf(s, node)
            )
            if self.deferred_listings is not None:
                files[f"object-updater-{node}.conf"] = cfg.object_updater_conf(
                    s, node, str(etc / "direct")
                )
        for fname, text in files.items():
            path = etc / fname
            path.write_text(text)
            path.chmod(0o600)  # holds keys
        # Rings carry the backend ports, which change on every start: always rebuild them.
        # (The same seed and devices: partitions map to the same devices, data stays valid.)
        objects = ",".join(str(self._ports[n]) for n in self.object_server_names)
        container = self._ports["container"]
        # The proxy's ring names the gate when listings lag (it refuses the object servers'
        # updates); the object-updaters' ring in etc/direct names the container server itself.
        dirs = {etc: self._ports.get("container-gate", container)}
        if self.deferred_listings is not None:
            dirs[etc / "direct"] = container
        for swift_dir, container_port in dirs.items():
            argv = [
                str(self._python),
                "-I",
                str(LAUNCHER),
                "rings",
                str(swift_dir),
                "d1",
                f"account={self._ports['account']}",
                f"container={container_port}",
                f"object={objects}",
                *([f"object-1={self._ports['object']}"] if self.second_policy else []),
                "--part-power",
                str(self.part_power),
            ]
            done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=False)
            if done.returncode != 0:
                raise ServerError(f"building rings failed: {done.stderr.decode(errors='replace')}")
