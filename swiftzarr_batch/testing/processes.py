"""The child processes of the local servers: loopback ports, process groups, readiness, logs.

Why one module: ``LocalSwift`` (four Swift servers and maybe memcached) and ``LocalKeystone``
(gunicorn) start, watch and stop their processes alike, and the rules are subtle enough to be
written once:

* every server runs in a session (process group) of its own, so a server that forks workers
  is stopped as a whole by signalling its group; only the groups started here are ever
  signalled, by the pid of their leader, never by a process name;
* a group is signalled only while its leader is not reaped (a zombie at most), so its id cannot
  have been reused by an unrelated process meanwhile;
* each process writes stdout and stderr to a log file of its own, whose end goes into the
  ``ServerError`` when it dies during start or never gets ready;
* ports are picked on 127.0.0.1 (servers listen nowhere else), below the ephemeral range.
"""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path

from swiftzarr_batch.errors import ServerError

__all__ = ["STOP_GRACE", "ServerProcesses", "free_ports", "tail"]

log = logging.getLogger(__name__)

STOP_GRACE = 5.0
"""Seconds a server has to exit after SIGTERM before its group is killed."""


def free_ports(n: int) -> list[int]:
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
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file, or a note that it is missing or empty."""
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"({path}: missing)"
    return "\n".join(text[-lines:]) or f"({path}: empty)"


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


class ServerProcesses:
    """Named server processes started here, each the leader of its own process group.

    ``what`` names the whole in errors (e.g. ``"local Swift"``). Not thread-safe: the server
    classes hold their own lock around start and stop.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, Path] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._procs

    def __bool__(self) -> bool:
        return bool(self._procs)

    @property
    def pids(self) -> dict[str, int]:
        """Process ids of the processes started and not stopped yet, by name."""
        return {name: proc.pid for name, proc in self._procs.items()}

    @property
    def all_running(self) -> bool:
        """True if at least one process was started and none of them has exited."""
        return bool(self._procs) and not self.exited()

    def exited(self) -> dict[str, int]:
        """Exit status of each process that has exited (without having been stopped)."""
        return {n: rc for n, p in self._procs.items() if (rc := p.poll()) is not None}

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        cwd: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Start ``argv`` in a new session, stdin closed, stdout and stderr to ``log_path``."""
        if name in self._procs:
            raise ServerError(f"{self.what}: {name} is running already")
        with open(log_path, "ab") as out:
            self._procs[name] = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=cwd,
                env=env,
            )
        self._logs[name] = log_path

    def stop(self, name: str, grace: float = STOP_GRACE) -> None:
        """SIGTERM ``name``'s group, SIGKILL whatever is left after ``grace`` s, reap it."""
        proc = self._procs.pop(name, None)
        if proc is None or proc.returncode is not None:  # reaped: its group id may be reused
            return
        _signal_group(proc.pid, signal.SIGTERM)  # the group: a server with workers forks
        if not _exited(proc.pid, grace):
            log.warning("%s (pid %d) ignored SIGTERM for %.0f s; killing it", name, proc.pid, grace)
        # The leader is a zombie at most (not reaped yet), so its group id is still ours:
        # sweep any worker left behind, then reap.
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()

    def stop_all(self, first: Sequence[str] = (), grace: float = STOP_GRACE) -> None:
        """Stop every process: those named in ``first`` in that order, then the others."""
        for name in [*first, *self._procs]:
            self.stop(name, grace)

    def log_path(self, name: str) -> Path | None:
        """The log file ``name`` was started with (kept after it stopped), if it ever was."""
        return self._logs.get(name)

    def logs_tail(self, names: Collection[str] = ()) -> str:
        """The end of the logs of ``names`` (default: of every process started so far)."""
        paths = [self._logs[n] for n in (names or self._logs) if n in self._logs]
        return "\n".join(f"--- {path}\n{tail(path)}" for path in paths)

    def wait_ready(
        self,
        probe: Callable[[], str | None],
        *,
        deadline: float,
        timeout: float,
        logs: Callable[[Collection[str]], str] | None = None,
        interval: float = 0.1,
    ) -> None:
        """Poll ``probe`` (None: ready, else what is not) until ready, or raise ServerError.

        It raises as soon as a process exits, or when ``deadline`` (``time.monotonic()``)
        passes (``timeout`` is what the message calls it), with the end of ``logs(names)``
        (default ``logs_tail``) for the processes concerned (all: an empty collection).
        """
        logs = logs or self.logs_tail
        while True:
            dead = self.exited()
            if dead:
                raise ServerError(
                    f"{self.what} server(s) exited during start {dead}:\n{logs(dead)}"
                )
            why = probe()
            if why is None:
                return
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{self.what} not ready after {timeout:.0f} s ({why}):\n{logs(())}"
                )
            time.sleep(interval)
