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
* ports are picked on 127.0.0.1 (servers listen nowhere else), below the ephemeral range;
* the servers die with their owner: a ``reaper.py`` process, told over a pipe which groups and
  temporary dirs are the owner's, stops them and removes the dirs when that pipe ends, i.e.
  when the owner dies without ``stop()``, by SIGTERM, SIGKILL or a crash. (No signal handler
  is installed: a library must not take SIGTERM from the application that imports it.)
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import weakref
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import IO

from swiftzarr_batch.errors import ServerError
from swiftzarr_batch.testing.reaper import start_time

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


_REAPER = Path(__file__).with_name("reaper.py")
_all: weakref.WeakSet[ServerProcesses] = weakref.WeakSet()


class ServerProcesses:
    """Named server processes started here, each the leader of its own process group.

    ``what`` names the whole in errors (e.g. ``"local Swift"``). Not thread-safe: the server
    classes hold their own lock around start and stop. ``own_dir`` hands a directory to it:
    removed by ``stop_all``, or by the reaper if the owner dies first.
    """

    def __init__(self, what: str, grace: float = STOP_GRACE) -> None:
        self.what = what
        self._grace = grace
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: dict[str, Path] = {}
        self._dirs: list[Path] = []
        self._reaper: subprocess.Popen[bytes] | None = None
        self._forked_copy = False
        _all.add(self)

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
        pid = self._procs[name].pid
        self._tell("group", pid, start_time(pid))

    def own_dir(self, path: Path) -> None:
        """Remove ``path`` (a temporary dir of the servers) when they are stopped or orphaned."""
        self._dirs.append(path)
        self._tell("dir", str(path))

    def stop(self, name: str, grace: float | None = None) -> None:
        """SIGTERM ``name``'s group, SIGKILL whatever is left after ``grace`` s, reap it."""
        grace = self._grace if grace is None else grace
        proc = self._procs.pop(name, None)
        if proc is None:
            return
        if proc.returncode is not None:  # reaped: its group id may be reused
            self._tell("ungroup", proc.pid)
            return
        _signal_group(proc.pid, signal.SIGTERM)  # the group: a server with workers forks
        if not _exited(proc.pid, grace):
            log.warning("%s (pid %d) ignored SIGTERM for %.0f s; killing it", name, proc.pid, grace)
        # The leader is a zombie at most (not reaped yet), so its group id is still ours:
        # sweep any worker left behind, then reap.
        _signal_group(proc.pid, signal.SIGKILL)
        proc.wait()
        self._tell("ungroup", proc.pid)  # after: should we die meanwhile, the reaper finishes

    def stop_all(self, first: Sequence[str] = (), grace: float | None = None) -> None:
        """Stop every process (those named in ``first`` in that order, then the others),
        remove the owned dirs, and let the reaper go."""
        for name in [*first, *self._procs]:
            self.stop(name, grace)
        while self._dirs:
            path = self._dirs.pop()
            shutil.rmtree(path, ignore_errors=True)
            self._tell("undir", str(path))
        reaper, self._reaper = self._reaper, None
        if reaper is not None:
            self._close_pipe(reaper)
            try:
                reaper.wait(timeout=self._grace)
            except subprocess.TimeoutExpired:
                log.warning("%s: reaper (pid %d) did not exit", self.what, reaper.pid)

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

    # -- the reaper ------------------------------------------------------------------------
    def _tell(self, *message: object) -> None:
        """Send one line to the reaper, starting it (and telling it all it owns) if needed."""
        if self._reaper is None:
            if self._forked_copy or message[0] in ("ungroup", "undir"):
                return
            self._reaper = subprocess.Popen(
                [sys.executable, "-I", str(_REAPER), str(self._grace)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # no Ctrl-C or group signal of the owner reaches it
            )
            # what is running already (the reaper takes each group and dir once)
            for proc in self._procs.values():
                if proc.returncode is None:
                    self._tell("group", proc.pid, start_time(proc.pid))
            for path in self._dirs:
                self._tell("dir", str(path))
        try:
            pipe = self._reaper.stdin
            assert pipe is not None
            pipe.write(json.dumps(message).encode() + b"\n")
            pipe.flush()
        except (OSError, ValueError) as exc:  # it died: the servers no longer die with us
            log.warning("%s: reaper (pid %d) is gone (%s)", self.what, self._reaper.pid, exc)

    @staticmethod
    def _close_pipe(reaper: subprocess.Popen[bytes]) -> None:
        pipe: IO[bytes] | None = reaper.stdin
        if pipe is not None:
            try:
                pipe.close()
            except OSError:
                pass

    def _forget_reaper_after_fork(self) -> None:
        """In a forked child: close the child's copy of the pipe (else the owner's death goes
        unnoticed while the child lives) and never start a reaper for the parent's servers."""
        if self._reaper is not None:
            self._close_pipe(self._reaper)
        self._reaper = None
        self._forked_copy = True


def _after_fork_in_child() -> None:
    for procs in list(_all):
        procs._forget_reaper_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
