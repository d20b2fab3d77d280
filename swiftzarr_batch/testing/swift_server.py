"""``LocalSwift``: a real OpenStack Swift cluster on 127.0.0.1, configured and run by the project.

Why: tests, ``make demo``, benchmarks and users (``swiftzarr serve``) need a Swift endpoint that
behaves like production Swift (tempauth tokens, bulk delete, SLO, real HTTP), not a mock, and that
needs neither root nor anything under ``/etc``. This module owns the cluster's life:

* Swift 2.38.x comes from its own cached virtualenv (``install.ensure_swift_installed``; patch
  ``SWIFT_REQUIREMENT`` here to try another build);
* it writes swift.conf, rings (one device, one replica) and the four server configs
  (``swift_configs``) into a data dir (a temp dir by default, removed on stop) and checks that
  its file system keeps ``user.*`` xattrs (Swift stores object metadata there);
* it runs the account, container, object and proxy servers as separate processes
  (``processes.ServerProcesses``) through ``swift_launcher.py``, which points Swift at the data
  dir's swift.conf and sends Swift's syslog-only logging to files: the proxy access log is
  ``<data_dir>/logs/proxy.log``;
* it starts a private ``memcached`` when one is installed (it roughly doubles throughput:
  account and container info is cached) and runs without the cache filter otherwise;
* TempAuth serves ``/auth/v1.0`` with stateless fernet tokens whose life is configurable;
* as operators run it, on request: ``replicas=3`` (three object servers on their own ports and
  devices, a real object-replicator each; ``stop_object_server(i)`` takes node ``i`` down),
  ``ratelimit_writes=N`` (Swift's ratelimit filter: N object writes/s per container, 498 beyond
  a short sleep) and ``deferred_listings=S`` (container updates refused at write time by a gate
  in front of the container server, replayed by real object-updaters every S seconds).

Everything listens on 127.0.0.1 only. The command line lives in ``serve``;
``python -m swiftzarr_batch.testing.swift_server [serve|install|run -- CMD]`` runs it.
"""

from __future__ import annotations

import atexit
import http.client
import logging
import os
import shlex
import shutil
import socket
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

from swiftzarr_batch.errors import ServerError
from swiftzarr_batch.testing import install
from swiftzarr_batch.testing import swift_configs as cfg
from swiftzarr_batch.testing.install import cache_root
from swiftzarr_batch.testing.processes import ServerProcesses
from swiftzarr_batch.testing.swift_cluster_files import LAUNCHER, ClusterFiles, memcached_binary
from swiftzarr_batch.testing.swift_nodes import ObjectNodes

__all__ = [
    "DEFAULT_ADMINS",
    "DEFAULT_USERS",
    "PROBE_USER_AGENT",
    "SWIFT_REQUIREMENT",
    "LocalSwift",
    "ServerError",
    "cache_root",
    "ensure_swift_installed",
    "main",
]

log = logging.getLogger(__name__)

SWIFT_REQUIREMENT = install.SWIFT_REQUIREMENT
"""What ``ensure_swift_installed`` (and so ``LocalSwift``) installs; read at each call."""
#: Well-known development credentials (the Swift-all-in-one defaults, plus a read-only user).
DEFAULT_USERS: Mapping[str, str] = {
    "test:tester": "testing",
    "test2:tester2": "testing2",
    "test:reader": "reading",
}
DEFAULT_ADMINS: tuple[str, ...] = ("test:tester", "test2:tester2")
#: User-Agent of the readiness probes (one auth each start): filter them out when counting.
PROBE_USER_AGENT = "swiftzarr-localswift-probe"


def ensure_swift_installed() -> Path:
    """Install ``SWIFT_REQUIREMENT`` into its cached venv once; return that venv's python."""
    return install.ensure_swift_installed(SWIFT_REQUIREMENT)


def _http(
    port: int,
    method: str,
    path: str,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, dict[str, str]]:
    """One readiness-probe request to the proxy: (status, lower-cased headers).

    Plain ``http.client`` with ``PROBE_USER_AGENT``, so that counts of the access log can leave
    the probes out and no client library's retries hide a server that is not ready.
    """
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, headers={"User-Agent": PROBE_USER_AGENT, **(headers or {})})
        resp = conn.getresponse()
        resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


class LocalSwift(ClusterFiles, ObjectNodes):
    """A one-node Swift cluster on 127.0.0.1 with TempAuth; a context manager.

    ``LocalSwift(data_dir=None, *, token_life=86400, max_file_size=None,
    container_listing_limit=None, memcached=None, s3api=False)``: ``data_dir`` None means a
    fresh temp dir removed on ``stop()``; ``memcached`` None means "use it if installed";
    ``container_listing_limit`` lowers the largest listing page (many pages at small sizes).
    ``users`` (``"account:user" -> key``) and ``admins`` replace the well-known dev credentials
    ``DEFAULT_USERS`` / ``DEFAULT_ADMINS``.
    ``keystone``: options of keystonemiddleware's ``authtoken`` filter (see
    ``keystone_server.LocalKeystone.authtoken_settings``) to also accept Keystone tokens, for
    accounts ``KEY_<project_id>``; TempAuth keeps serving ``AUTH_*``. ``without``: proxy
    filters to leave out (``{"bulk", "slo"}``: a site without bulk deletes and large objects);
    ``second_policy``: the name of a second storage policy (one replica, same device).

    Operators' clusters: ``replicas`` (1 or 3; with 3, object servers ``0..2`` each serve one
    device and run a replicator over ssync; ``stop_object_server(i)`` / ``start_object_server(i)``
    take node ``i`` down and back, ``direct_object_urls`` names each replica for direct reads);
    ``ratelimit_writes`` (object PUT/DELETE/POST per container per second, the account's
    container writes at ``4x``; requests that would sleep over ``ratelimit_max_sleep`` s get
    498; needs memcached; a container Swift believes empty is not limited, and its object count
    is re-read every 2 s); ``deferred_listings`` (seconds between object-updater passes: objects
    answer 201 at once but reach listings only when replayed from async_pending).
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        token_life: int = 86400,
        max_file_size: int | None = None,
        container_listing_limit: int | None = None,
        memcached: bool | None = None,
        s3api: bool = False,
        users: Mapping[str, str] | None = None,
        admins: Collection[str] | None = None,
        start_timeout: float = 60.0,
        proxy_workers: int = 0,
        keystone: Mapping[str, str] | None = None,
        without: Collection[str] = (),
        second_policy: str | None = None,
        replicas: int = 1,
        ratelimit_writes: float | None = None,
        ratelimit_max_sleep: float = 0.5,
        deferred_listings: float | None = None,
        replicator_interval: float = 2.0,
    ) -> None:
        if replicas not in (1, 2, 3, 4):
            raise ValueError(f"replicas must be between 1 and 4: {replicas!r}")
        if ratelimit_writes is not None and not ratelimit_writes > 0:
            raise ValueError(f"ratelimit_writes must be > 0: {ratelimit_writes!r}")
        if ratelimit_writes is not None and memcached is False:
            raise ValueError(
                "ratelimit_writes needs memcached (Swift's ratelimit keeps counts there)"
            )
        if deferred_listings is not None and not deferred_listings > 0:
            raise ValueError(f"deferred_listings must be > 0 seconds: {deferred_listings!r}")
        self.replicas = replicas
        self.ratelimit_writes = ratelimit_writes
        self.ratelimit_max_sleep = ratelimit_max_sleep
        self.deferred_listings = deferred_listings
        self.replicator_interval = replicator_interval
        self._users = dict(DEFAULT_USERS if users is None else users)
        if not self._users:
            raise ValueError("at least one user is needed")
        for user, key in self._users.items():
            cfg.check_user_name(user, key)
        self._admins = tuple(DEFAULT_ADMINS if admins is None else admins)
        if int(token_life) < 1:
            raise ValueError("token_life must be >= 1 second")
        self.token_life = int(token_life)
        self.max_file_size = max_file_size
        self.container_listing_limit = container_listing_limit
        self.memcached = memcached
        self.s3api = s3api
        self.start_timeout = start_timeout
        self.proxy_workers = proxy_workers
        self.keystone = dict(keystone) if keystone else None
        optional = set(cfg.PIPELINE.split()) - {"catch_errors", "proxy-server", "tempauth"}
        if not set(without) <= optional:
            raise ValueError(f"without= takes filters among {sorted(optional)}: {without!r}")
        self.without, self.second_policy = frozenset(without), second_policy
        self._requested_dir = Path(data_dir).resolve() if data_dir is not None else None
        self._data_dir: Path | None = self._requested_dir
        self._made_dir = False
        self._ports: dict[str, int] = {}
        self._procs = ServerProcesses("local Swift")
        self._settings: cfg.ClusterSettings | None = None
        self._python: Path | None = None
        self._lock = threading.RLock()

    # -- public properties -------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        """Where this cluster keeps its devices, configs and logs; ``ServerError`` before
        ``start()``."""
        if self._data_dir is None:
            raise ServerError("no data dir yet: call start() first")
        return self._data_dir

    @property
    def running(self) -> bool:
        """True while every server process (proxy included) is up; False after stop_proxy()."""
        return "proxy" in self._procs and self._procs.all_running

    @property
    def pids(self) -> dict[str, int]:
        """Process ids of the running servers ("account", ..., "proxy", maybe "memcached")."""
        return self._procs.pids

    @property
    def proxy_url(self) -> str:
        """The proxy's base URL on 127.0.0.1; ``ServerError`` if never started."""
        if "proxy" not in self._ports:
            raise ServerError("the server was never started: call start() first")
        return f"http://127.0.0.1:{self._ports['proxy']}"

    @property
    def auth_url(self) -> str:
        """The TempAuth v1.0 URL (``ST_AUTH``) to authenticate against."""
        return f"{self.proxy_url}/auth/v1.0"

    def storage_url(self, account: str = "test") -> str:
        """The storage URL of ``account`` (``AUTH_<account>``) on this proxy."""
        return f"{self.proxy_url}/v1/AUTH_{account}"

    @property
    def user(self) -> str:
        """The first TempAuth user (``account:user``), the one tests use by default."""
        return next(iter(self._users))

    @property
    def key(self) -> str:
        """The key (password) of ``user``; test credentials, never a real secret."""
        return self._users[self.user]

    @property
    def users(self) -> dict[str, str]:
        """Every TempAuth user and key (a copy: changing it changes nothing)."""
        return dict(self._users)

    @property
    def env(self) -> dict[str, str]:
        """``ST_AUTH``/``ST_USER``/``ST_KEY`` for the ``swift`` CLI or a subprocess to reach this
        cluster as ``user``."""
        return {"ST_AUTH": self.auth_url, "ST_USER": self.user, "ST_KEY": self.key}

    @property
    def proxy_log_path(self) -> Path:
        """The proxy's access log: one proxy-logging line per request (auth requests included)."""
        return self.data_dir / "logs" / "proxy.log"

    def access_log_lines(self, *, include_probes: bool = False) -> list[str]:
        """The proxy access log's lines so far; by default without the readiness probes'.

        Swift's proxy-logging format: ``proxy-server: CLIENT REMOTE DATE METHOD PATH PROTOCOL
        STATUS REFERER USER_AGENT TOKEN(16 chars) ...``; e.g. count ``" GET /auth/v1.0 "``.
        """
        try:
            lines = self.proxy_log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return []
        return lines if include_probes else [ln for ln in lines if PROBE_USER_AGENT not in ln]

    def logs_tail(self, names: Collection[str] = ()) -> str:
        """The end of the named servers' logs (default: all started so far), e.g. when one died."""
        return self._procs.logs_tail(names)

    def export_lines(self) -> str:
        """``export ST_AUTH=...`` / ``ST_USER`` / ``ST_KEY`` lines for a POSIX shell."""
        return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in self.env.items())

    def __repr__(self) -> str:  # never the keys
        where = self.proxy_url if self._ports else "not started"
        return f"<LocalSwift {where} data_dir={self._data_dir} running={self.running}>"

    def __enter__(self) -> LocalSwift:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> LocalSwift:
        """Install (once), configure and start all servers; return when they answer requests."""
        with self._lock:
            if self._procs:
                raise ServerError("already started")
            self._python = ensure_swift_installed()
            if self.keystone:  # authtoken comes from keystonemiddleware, added to Swift's venv
                install.ensure_keystonemiddleware_installed(self._python)
            started = time.monotonic()
            try:
                self._prepare_data_dir()
                self._write_cluster()
                atexit.register(self.stop)
                if self._settings and self._settings.memcache_server:
                    self._start_memcached()
                for name in self._server_names():
                    self._spawn_server(name)
                self._wait_ready(started)
                for node in range(self.replicas):
                    self._spawn_daemons(node)
            except BaseException:
                self.stop()
                raise
            log.info(
                "local Swift up at %s in %.1f s (data %s, memcached %s)",
                self.proxy_url,
                time.monotonic() - started,
                self._data_dir,
                "on" if "memcached" in self._procs else "off",
            )
            return self

    def stop(self) -> None:
        """Stop exactly the processes started here; remove the data dir if it was a temp dir."""
        with self._lock:
            atexit.unregister(self.stop)
            self._procs.stop_all(first=("proxy", *self.object_server_names, "container", "account"))
            if self._made_dir and self._data_dir is not None:
                shutil.rmtree(self._data_dir, ignore_errors=True)
                self._data_dir, self._made_dir = None, False

    def stop_proxy(self) -> None:
        """Stop only the proxy (clients then get connection refused); see ``start_proxy``."""
        with self._lock:
            self._procs.stop("proxy")

    def start_proxy(self) -> None:
        """Start the proxy again on the same port, with the same config and fernet key."""
        with self._lock:
            if "proxy" in self._procs:
                raise ServerError("the proxy is running")
            if self._settings is None:
                raise ServerError("the server was never started: call start() first")
            self._spawn_server("proxy")
            self._wait_ready(time.monotonic())

    def restart_proxy(self, downtime: float = 0.0) -> None:
        """Stop and start just the proxy on the same port; data and tokens stay valid."""
        self.stop_proxy()
        time.sleep(downtime)
        self.start_proxy()

    # -- internals ---------------------------------------------------------------------------
    def _log_path(self, name: str) -> Path:
        return (
            self.data_dir
            / "logs"
            / (
                f"{name}.log"
                if name in ("memcached", "container-gate") or name[-1].isdigit()
                else f"{name}-server.log"
            )
        )

    def _spawn(self, name: str, argv: Sequence[str]) -> None:
        """Start one process of the cluster, in the data dir, logging to ``_log_path(name)``."""
        self._procs.spawn(name, argv, self._log_path(name), cwd=self.data_dir)

    def _start_memcached(self) -> None:
        argv = [
            str(memcached_binary()),
            "-l",
            "127.0.0.1",
            "-p",
            str(self._ports["memcached"]),
            "-U",
            "0",
            "-m",
            "64",
        ]
        if os.geteuid() == 0:
            argv += ["-u", "root"]
        self._spawn("memcached", argv)

    def _server_names(self) -> list[str]:
        """Servers in start order: those the proxy needs first, the proxy last."""
        gate = ["container-gate"] if self.deferred_listings is not None else []
        return ["account", "container", *gate, *self.object_server_names, "proxy"]

    @staticmethod
    def _conf_name(name: str) -> str:
        """object2 -> object-server-2.conf; proxy -> proxy-server.conf."""
        if name.startswith("object") and name != "object":
            return f"object-server-{name[len('object') :]}.conf"
        return f"{name}-server.conf"

    def _spawn_server(self, name: str) -> None:
        etc = self.data_dir / "etc"
        if name == "container-gate":
            argv = [str(self._python), "-I", str(LAUNCHER), "gate"]
            argv += [str(self._ports[name]), str(self._ports["container"])]
            self._spawn(name, [*argv, "--log", str(self._log_path(name))])
            return
        argv = [
            str(self._python),
            "-I",
            str(LAUNCHER),
            "server",
            str(etc / "swift.conf"),
            str(etc / self._conf_name(name)),
            "object-server" if name.startswith("object") else f"{name}-server",
            "--log",
            str(self._log_path(name)),
        ]
        if name == "proxy":
            argv += ["--access-log", str(self.proxy_log_path)]
        self._spawn(name, argv)

    def _probe(self) -> str | None:
        """None when the cluster serves requests, else what is not ready yet."""
        for name, port in self._ports.items():
            if name != "proxy" and name in self._procs:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                except OSError:
                    return f"{name} not listening on {port}"
        port = self._ports["proxy"]
        try:
            status, _ = _http(port, "GET", "/healthcheck")
            if status != 200:
                return f"healthcheck answered {status}"
            status, hdrs = _http(
                port, "GET", "/auth/v1.0", {"X-Auth-User": self.user, "X-Auth-Key": self.key}
            )
            if status != 200 or "x-auth-token" not in hdrs:
                return f"auth answered {status}"
            path = "/v1/" + hdrs["x-storage-url"].split("/v1/", 1)[1] + "/.swiftzarr-probe"
            auth = {"X-Auth-Token": hdrs["x-auth-token"]}
            status, _ = _http(port, "PUT", path, auth)
            if status not in (201, 202):
                return f"container PUT answered {status}"
            _http(port, "DELETE", path, auth)
        except (OSError, http.client.HTTPException) as e:
            return f"proxy: {e}"
        return None

    def _wait_ready(self, since: float) -> None:
        self._procs.wait_ready(
            self._probe,
            deadline=since + self.start_timeout,
            timeout=self.start_timeout,
        )


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m swiftzarr_batch.testing.swift_server``: the command line of ``serve``.

    Imported when called, because ``serve`` imports this module.
    """
    from swiftzarr_batch.testing import serve

    serve.main(argv)


if __name__ == "__main__":
    main()
