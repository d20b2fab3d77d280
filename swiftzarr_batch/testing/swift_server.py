"""A real OpenStack Swift cluster on 127.0.0.1, installed and started by the project itself.

Why: tests, ``make demo``, benchmarks and users (``swiftzarr serve``) need a Swift endpoint that
behaves like production Swift (tempauth tokens, bulk delete, SLO, real HTTP), not a mock, and that
needs neither root nor anything under ``/etc``. ``LocalSwift`` does that:

* installs PyPI ``swift`` 2.38.x once into its own cached virtualenv
  (``$SWIFTZARR_CACHE`` or ``~/.cache/swiftzarr_batch``, e.g. ``swift-2.38-py312/``), guarded by
  an ``fcntl`` lock so concurrent processes install it only once; the project venv stays clean;
* writes swift.conf, rings (one device, one replica) and the four server configs into a data dir
  (a temp dir by default, removed on stop), checks that its file system keeps ``user.*`` xattrs
  (Swift stores object metadata there);
* runs the account, container, object and proxy servers as separate processes through
  ``_swift_launcher.py``, which points Swift at the data dir's swift.conf and sends Swift's
  syslog-only logging to files: the proxy access log is ``<data_dir>/logs/proxy.log``;
* starts a private ``memcached`` when one is installed (it roughly doubles throughput: account
  and container info is cached) and runs without the cache filter otherwise;
* serves TempAuth at ``/auth/v1.0`` with stateless fernet tokens whose life is configurable.

Everything listens on 127.0.0.1 only. Command line (``python -m swiftzarr_batch.testing.swift_server``):
``[serve] [--data-dir D] [--token-life S] [--max-file-size B] [--s3api] [--no-memcached]`` runs
one until Ctrl-C and prints its ``export ST_AUTH=...`` lines; ``install`` only installs Swift;
``run [options] -- CMD ...`` runs CMD with ST_AUTH/ST_USER/ST_KEY of a fresh server, then stops it.
"""

from __future__ import annotations

import argparse
import atexit
import base64
import fcntl
import http.client
import logging
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from configparser import ConfigParser
from pathlib import Path

from swiftzarr_batch.errors import ServerError
from swiftzarr_batch.testing import swift_configs as cfg

__all__ = [
    "DEFAULT_ADMINS",
    "DEFAULT_USERS",
    "PROBE_USER_AGENT",
    "SWIFT_REQUIREMENT",
    "LocalSwift",
    "ServerError",
    "add_serve_arguments",
    "cache_root",
    "ensure_swift_installed",
    "main",
    "run_with_server",
    "serve",
    "serve_parser",
]

log = logging.getLogger(__name__)

SWIFT_REQUIREMENT = "swift>=2.38,<2.39"
SWIFT_SERIES = "2.38"
#: Well-known development credentials (the Swift-all-in-one defaults, plus a read-only user).
DEFAULT_USERS: Mapping[str, str] = {
    "test:tester": "testing",
    "test2:tester2": "testing2",
    "test:reader": "reading",
}
DEFAULT_ADMINS: tuple[str, ...] = ("test:tester", "test2:tester2")
_LAUNCHER = Path(__file__).with_name("swift_launcher.py")
_SERVERS = ("account", "container", "object", "proxy")
#: User-Agent of the readiness probes (one auth each start): filter them out when counting.
PROBE_USER_AGENT = "swiftzarr-localswift-probe"
_STOP_GRACE = 5.0
_INSTALL_TIMEOUT = 900.0


def cache_root() -> Path:
    """Where the Swift virtualenv lives: ``$SWIFTZARR_CACHE`` or ``~/.cache/swiftzarr_batch``."""
    if os.environ.get("SWIFTZARR_CACHE"):
        return Path(os.environ["SWIFTZARR_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(xdg).expanduser() / "swiftzarr_batch"


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"({path}: missing)"
    return "\n".join(text[-lines:]) or f"({path}: empty)"


def ensure_swift_installed() -> Path:
    """Install ``swift`` 2.38.x into its own cached venv once; return that venv's python."""
    venv = cache_root() / f"swift-{SWIFT_SERIES}-py{sys.version_info[0]}{sys.version_info[1]}"
    python, marker = venv / "bin" / "python", venv / ".swiftzarr-installed"
    if marker.exists() and python.exists():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent installer finishes first; then we skip
        if marker.exists() and python.exists():
            return python
        shutil.rmtree(venv, ignore_errors=True)  # a half-made venv from an interrupted install
        log.info("installing %s into %s (once; takes ~10-30 s)", SWIFT_REQUIREMENT, venv)
        started = time.monotonic()
        venv.mkdir()
        pip_log = venv / "pip-install.log"
        steps = {
            "creating the venv": [sys.executable, "-m", "venv", str(venv)],
            "pip install": [
                str(python),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--no-input",
                SWIFT_REQUIREMENT,
            ],
            "importing swift": [
                str(python),
                "-c",
                "import swift, eventlet; "
                f"open({str(marker)!r} + '.tmp', 'w').write(swift.__version__)",
            ],
        }
        run_install_steps(steps, pip_log, f"{SWIFT_REQUIREMENT} into {venv}")
        version = Path(f"{marker}.tmp").read_text().strip()
        if not version.startswith(SWIFT_SERIES + "."):
            raise ServerError(f"expected swift {SWIFT_SERIES}.x in {venv}, got {version!r}")
        os.replace(f"{marker}.tmp", marker)  # the marker appears only once all is done
        log.info("installed swift %s in %.1f s", version, time.monotonic() - started)
    return python


def run_install_steps(
    steps: Mapping[str, Sequence[str]],
    log_path: Path,
    what: str,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run install commands in order, logging to ``log_path``; ServerError with its tail on the
    first one that fails or outlasts the install timeout."""
    with open(log_path, "ab") as out:
        for step, argv in steps.items():
            out.write(f"$ {shlex.join(argv)}\n".encode())
            out.flush()
            rc: int | str
            try:
                rc = subprocess.run(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    check=False,
                    env=env,
                    timeout=_INSTALL_TIMEOUT,
                ).returncode
            except subprocess.TimeoutExpired:
                rc = f"timed out after {_INSTALL_TIMEOUT:.0f} s"
            if rc != 0:
                raise ServerError(
                    f"installing {what} failed: {step} exited {rc}; end of "
                    f"{log_path}:\n{_tail(log_path)}"
                )


def _check_xattrs(directory: Path) -> None:
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


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1, below the ephemeral range when possible.

    A port from the ephemeral range could be taken by some client connection while the proxy
    is down in an outage test; ports below it are only ever taken by other listeners.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    candidates = secrets.SystemRandom().sample(range(20000, low), min(64, max(low - 20000, 0)))
    socks: list[socket.socket] = []
    try:
        for port in [*candidates, *[0] * n]:  # held open together, so the n ports differ
            if len(socks) == n:
                break
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


def _exited(pid: int, timeout: float) -> bool:
    """Wait up to ``timeout`` for child ``pid`` to exit, without reaping it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return True
        except ChildProcessError:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def _memcached_binary() -> str | None:
    found = shutil.which("memcached")
    if found:
        return found
    return "/usr/bin/memcached" if os.access("/usr/bin/memcached", os.X_OK) else None


def _http(
    port: int,
    method: str,
    path: str,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, dict[str, str]]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, headers={"User-Agent": PROBE_USER_AGENT, **(headers or {})})
        resp = conn.getresponse()
        resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


class LocalSwift:
    """A one-node Swift cluster on 127.0.0.1 with TempAuth; a context manager.

    ``LocalSwift(data_dir=None, *, token_life=86400, max_file_size=None, memcached=None,
    s3api=False)``: ``data_dir`` None means a fresh temp dir removed on ``stop()``;
    ``memcached`` None means "use it if installed". ``users`` (``"account:user" -> key``) and
    ``admins`` replace the well-known dev credentials ``DEFAULT_USERS`` / ``DEFAULT_ADMINS``.
    ``keystone``: options of keystonemiddleware's ``authtoken`` filter (see
    ``keystone_server.LocalKeystone.authtoken_settings``) to also accept Keystone tokens, for
    accounts ``KEY_<project_id>``; TempAuth keeps serving ``AUTH_*``.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        token_life: int = 86400,
        max_file_size: int | None = None,
        memcached: bool | None = None,
        s3api: bool = False,
        users: Mapping[str, str] | None = None,
        admins: Collection[str] | None = None,
        start_timeout: float = 60.0,
        proxy_workers: int = 0,
        keystone: Mapping[str, str] | None = None,
    ) -> None:
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
        self.memcached = memcached
        self.s3api = s3api
        self.start_timeout = start_timeout
        self.proxy_workers = proxy_workers
        self.keystone = dict(keystone) if keystone else None
        self._requested_dir = Path(data_dir).resolve() if data_dir is not None else None
        self._data_dir: Path | None = self._requested_dir
        self._made_dir = False
        self._ports: dict[str, int] = {}
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._settings: cfg.ClusterSettings | None = None
        self._python: Path | None = None
        self._lock = threading.RLock()

    # -- public properties -------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            raise ServerError("no data dir yet: call start() first")
        return self._data_dir

    @property
    def running(self) -> bool:
        """True while every server process (proxy included) is up; False after stop_proxy()."""
        return "proxy" in self._procs and all(p.poll() is None for p in self._procs.values())

    @property
    def pids(self) -> dict[str, int]:
        """Process ids of the running servers ("account", ..., "proxy", maybe "memcached")."""
        return {name: proc.pid for name, proc in self._procs.items()}

    @property
    def proxy_url(self) -> str:
        if "proxy" not in self._ports:
            raise ServerError("the server was never started: call start() first")
        return f"http://127.0.0.1:{self._ports['proxy']}"

    @property
    def auth_url(self) -> str:
        return f"{self.proxy_url}/auth/v1.0"

    def storage_url(self, account: str = "test") -> str:
        return f"{self.proxy_url}/v1/AUTH_{account}"

    @property
    def user(self) -> str:
        return next(iter(self._users))

    @property
    def key(self) -> str:
        return self._users[self.user]

    @property
    def users(self) -> dict[str, str]:
        return dict(self._users)

    @property
    def env(self) -> dict[str, str]:
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
            if self.keystone:  # authtoken comes from keystonemiddleware, added to Swift's venv
                from swiftzarr_batch.testing.keystone_server import (
                    ensure_keystonemiddleware_installed,
                )

                self._python = ensure_keystonemiddleware_installed()
            else:
                self._python = ensure_swift_installed()
            started = time.monotonic()
            try:
                self._prepare_data_dir()
                self._write_cluster()
                atexit.register(self.stop)
                if self._settings and self._settings.memcache_server:
                    self._start_memcached()
                for name in _SERVERS:
                    self._spawn_server(name)
                self._wait_ready(started + self.start_timeout)
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
            for name in ("proxy", "object", "container", "account", "memcached"):
                if name in self._procs:
                    self._terminate(name)
            if self._made_dir and self._data_dir is not None:
                shutil.rmtree(self._data_dir, ignore_errors=True)
                self._data_dir, self._made_dir = None, False

    def stop_proxy(self) -> None:
        """Stop only the proxy (clients then get connection refused); see ``start_proxy``."""
        with self._lock:
            self._terminate("proxy")

    def start_proxy(self) -> None:
        """Start the proxy again on the same port, with the same config and fernet key."""
        with self._lock:
            if "proxy" in self._procs:
                raise ServerError("the proxy is running")
            if self._settings is None:
                raise ServerError("the server was never started: call start() first")
            self._spawn_server("proxy")
            self._wait_ready(time.monotonic() + self.start_timeout)

    def restart_proxy(self, downtime: float = 0.0) -> None:
        """Stop and start just the proxy on the same port; data and tokens stay valid."""
        self.stop_proxy()
        time.sleep(downtime)
        self.start_proxy()

    # -- internals ---------------------------------------------------------------------------
    def _prepare_data_dir(self) -> None:
        if self._requested_dir is None:
            try:
                self._data_dir = Path(tempfile.mkdtemp(prefix="swiftzarr-swift-"))
                self._made_dir = True
                _check_xattrs(self._data_dir)
            except ServerError:  # e.g. an old tmpfs /tmp: fall back to the cache dir
                shutil.rmtree(self.data_dir, ignore_errors=True)
                (cache_root() / "tmp").mkdir(parents=True, exist_ok=True)
                self._data_dir = Path(
                    tempfile.mkdtemp(prefix="swiftzarr-swift-", dir=cache_root() / "tmp")
                )
        else:
            self._data_dir = self._requested_dir
        for sub in ("etc", "logs", "srv/node/d1"):
            (self.data_dir / sub).mkdir(parents=True, exist_ok=True)
        _check_xattrs(self.data_dir / "srv" / "node" / "d1")

    def _write_cluster(self) -> None:
        etc = self.data_dir / "etc"
        old = ConfigParser(interpolation=None)
        old.read(etc / "swift.conf")  # a reused data dir must keep its hash path prefix/suffix
        prefix = old.get("swift-hash", "swift_hash_path_prefix", fallback=secrets.token_hex(8))
        suffix = old.get("swift-hash", "swift_hash_path_suffix", fallback=secrets.token_hex(8))
        use_memcached = self.memcached
        binary = _memcached_binary()
        if use_memcached and binary is None:
            raise ServerError("memcached=True but no memcached binary (apt-get install memcached)")
        if use_memcached is None:
            use_memcached = binary is not None
        names = [*_SERVERS, *(["memcached"] if use_memcached else [])]
        self._ports = dict(zip(names, _free_ports(len(names)), strict=True))
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
            s3api=self.s3api,
            proxy_workers=self.proxy_workers,
            keystone=self.keystone,
            memcache_server=f"127.0.0.1:{self._ports['memcached']}" if use_memcached else None,
        )
        files = {"swift.conf": cfg.swift_conf(s), "proxy-server.conf": cfg.proxy_server_conf(s)}
        for name in ("account", "container", "object"):
            files[f"{name}-server.conf"] = cfg.backend_server_conf(s, name)
        for fname, text in files.items():
            path = etc / fname
            path.write_text(text)
            path.chmod(0o600)  # holds keys
        # Rings carry the backend ports, which change on every start: always rebuild them.
        # (One device and one replica: partitions map to the same device, data stays valid.)
        argv = [
            str(self._python),
            "-I",
            str(_LAUNCHER),
            "rings",
            str(etc),
            "d1",
            *(f"{k}={self._ports[k]}" for k in ("account", "container", "object")),
        ]
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, check=False)
        if done.returncode != 0:
            raise ServerError(f"building rings failed: {done.stderr.decode(errors='replace')}")

    def _log_path(self, name: str) -> Path:
        return (
            self.data_dir
            / "logs"
            / (f"{name}.log" if name == "memcached" else f"{name}-server.log")
        )

    def _popen(self, name: str, argv: Sequence[str]) -> None:
        with open(self._log_path(name), "ab") as out:
            self._procs[name] = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.data_dir,
            )

    def _start_memcached(self) -> None:
        argv = [
            str(_memcached_binary()),
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
        self._popen("memcached", argv)

    def _spawn_server(self, name: str) -> None:
        etc = self.data_dir / "etc"
        argv = [
            str(self._python),
            "-I",
            str(_LAUNCHER),
            "server",
            str(etc / "swift.conf"),
            str(etc / f"{name}-server.conf"),
            f"{name}-server",
            "--log",
            str(self._log_path(name)),
        ]
        if name == "proxy":
            argv += ["--access-log", str(self.proxy_log_path)]
        self._popen(name, argv)

    def _terminate(self, name: str) -> None:
        proc = self._procs.pop(name, None)
        if proc is None or proc.returncode is not None:  # reaped: its group id may be reused
            return
        _signal_group(proc.pid, signal.SIGTERM)  # the group: a server with workers forks
        if not _exited(proc.pid, _STOP_GRACE):
            log.warning(
                "%s (pid %d) ignored SIGTERM for %.0f s; killing it", name, proc.pid, _STOP_GRACE
            )
        # The leader is a zombie at most (not reaped yet), so its group id is still ours:
        # sweep any worker left behind, then reap.
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()

    def _logs_tail(self, names: Collection[str] = ()) -> str:
        names = [*(names or self._procs or _SERVERS)]
        return "\n".join(f"--- {self._log_path(n)}\n{_tail(self._log_path(n))}" for n in names)

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

    def _wait_ready(self, deadline: float) -> None:
        while True:
            dead = {n: p.returncode for n, p in self._procs.items() if p.poll() is not None}
            if dead:
                raise ServerError(
                    f"local Swift server(s) exited during start {dead}:\n{self._logs_tail(dead)}"
                )
            why = self._probe()
            if why is None:
                return
            if time.monotonic() > deadline:
                raise ServerError(
                    f"local Swift not ready after {self.start_timeout:.0f} s "
                    f"({why}):\n{self._logs_tail()}"
                )
            time.sleep(0.1)


def add_serve_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add serve()'s options to ``p`` (e.g. the ``swiftzarr serve`` sub-command's parser)."""
    p.add_argument("--data-dir", help="keep data here (default: a temp dir removed on exit)")
    p.add_argument("--token-life", type=int, default=86400, help="token life in seconds")
    p.add_argument("--max-file-size", type=int, default=None, help="largest object in bytes")
    p.add_argument("--s3api", action="store_true", help="also serve the S3 API")
    p.add_argument("--no-memcached", action="store_true", help="do not start memcached")
    return p


def serve_parser() -> argparse.ArgumentParser:
    return add_serve_arguments(
        argparse.ArgumentParser(
            prog="swiftzarr serve",
            description="Run a local OpenStack Swift on 127.0.0.1 until Ctrl-C; print ST_* exports.",
        )
    )


def serve(argv_or_args: Sequence[str] | argparse.Namespace | None = None) -> int:
    """Start a LocalSwift, print its export lines on stdout, run until SIGINT/SIGTERM."""
    args = (
        argv_or_args
        if isinstance(argv_or_args, argparse.Namespace)
        else serve_parser().parse_args(argv_or_args)
    )
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    server = LocalSwift(
        args.data_dir,
        token_life=args.token_life,
        s3api=args.s3api,
        max_file_size=args.max_file_size,
        memcached=False if args.no_memcached else None,
    )
    try:
        try:
            server.start()
        except ServerError as e:
            log.error("%s", e)
            return 1
        print(server.export_lines(), flush=True)
        log.info("serving at %s; Ctrl-C to stop", server.auth_url)
        while not stop.wait(1.0):
            if not server.running:
                log.error("a Swift server process died; stopping:\n%s", server._logs_tail())
                return 1
        log.info("stopping on signal %d", received[0])
        return 0
    finally:
        server.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)


def run_with_server(argv: Sequence[str]) -> int:
    """``run [serve options] -- CMD ...``: CMD with ST_AUTH/ST_USER/ST_KEY of a fresh server.

    Returns CMD's exit status; the server is stopped afterwards whatever happens.
    """
    parser = add_serve_arguments(
        argparse.ArgumentParser(
            prog="python -m swiftzarr_batch.testing.swift_server run",
            description="Start a local Swift, run a command with its ST_* variables, stop it.",
        )
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (put it after --)")
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        with LocalSwift(
            args.data_dir,
            token_life=args.token_life,
            s3api=args.s3api,
            max_file_size=args.max_file_size,
            memcached=False if args.no_memcached else None,
        ) as server:
            log.info("running %s against %s", shlex.join(command), server.auth_url)
            return subprocess.run(command, env={**os.environ, **server.env}, check=False).returncode
    except ServerError as e:
        log.error("%s", e)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m swiftzarr_batch.testing.swift_server [serve] [options]`` | ``install`` | ``run ... -- CMD``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["install"]:
        if not logging.getLogger().handlers:
            logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
        try:
            print(ensure_swift_installed())
        except ServerError as e:
            log.error("%s", e)
            sys.exit(1)
        sys.exit(0)
    if args[:1] == ["run"]:
        sys.exit(run_with_server(args[1:]))
    sys.exit(serve(args[1:] if args[:1] == ["serve"] else args))


if __name__ == "__main__":
    main()
