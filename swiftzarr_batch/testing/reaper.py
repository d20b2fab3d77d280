"""Stop a dead owner's server process groups and remove its temporary dirs (stdlib only).

Why a process of its own: the servers of ``LocalSwift``/``LocalKeystone`` run in sessions of
their own (so that a server with workers is stopped as a whole), so nothing stops them when
the process that started them dies without calling ``stop()``: SIGKILL, a SIGTERM it does not
handle, a crash. ``processes.ServerProcesses`` starts this script with a pipe as its stdin and
tells it, one JSON line each, which groups and dirs it owns (``["group", pid, start_time]``,
``["ungroup", pid]``, ``["dir", path]``, ``["undir", path]``). When the pipe reaches its end
(the owner closed it after a clean stop, or the kernel did because the owner died), this
script SIGTERMs the groups still listed, SIGKILLs what is left after the grace time, removes
the dirs still listed, and exits.

A parent-death signal (``PR_SET_PDEATHSIG``) would not do: it fires when the *thread* that
started a server exits, not the process, and it cannot remove a directory.

A group is signalled only if its leader is the very process that was started (same start time
in ``/proc``), or if that leader is gone and the group still has members: the kernel does not
give a pid to a new process while it is in use as a process group id.

Run by the owner's interpreter with ``-I``, so it may import only the standard library.
Usage: python -I reaper.py GRACE_SECONDS
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time


def start_time(pid: int) -> int | None:
    """Field 22 of ``/proc/<pid>/stat`` (clock ticks after boot), or None if there is none."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    try:
        return int(stat[stat.rindex(b")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return None


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _still_ours(pgid: int, started: int | None) -> bool:
    """True if signalling group ``pgid`` reaches only processes the owner started."""
    now = start_time(pgid)
    if now is not None:  # the leader (or a process that got its pid) exists
        return started is None or now == started
    return True  # leader gone: only members of its group, which keep the id theirs, get it


def _signal(groups: dict[int, int | None], sig: int) -> None:
    for pgid, started in list(groups.items()):
        if not _still_ours(pgid, started):
            del groups[pgid]
            continue
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            del groups[pgid]
        except PermissionError:
            pass


def reap(groups: dict[int, int | None], dirs: set[str], grace: float) -> None:
    """SIGTERM ``groups``, SIGKILL what is left after ``grace`` s, then remove ``dirs``."""
    _signal(groups, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while groups and time.monotonic() < deadline:
        time.sleep(0.05)
        for pgid in [g for g in groups if not _group_alive(g)]:
            del groups[pgid]
    _signal(groups, signal.SIGKILL)
    for path in dirs:
        shutil.rmtree(path, ignore_errors=True)


def main(argv: list[str]) -> int:
    """Read the owner's JSON lines until its pipe closes, then reap what is still listed;
    ``argv[1]`` is the grace time in seconds before SIGKILL (default 5)."""
    grace = float(argv[1]) if len(argv) > 1 else 5.0
    for sig in (signal.SIGINT, signal.SIGHUP):  # outlive a Ctrl-C or a closed terminal
        signal.signal(sig, signal.SIG_IGN)
    groups: dict[int, int | None] = {}
    dirs: set[str] = set()
    for raw in sys.stdin.buffer:
        try:
            kind, *args = json.loads(raw)
            if kind == "group":
                groups[int(args[0])] = None if args[1] is None else int(args[1])
            elif kind == "ungroup":
                groups.pop(int(args[0]), None)
            elif kind == "dir":
                dirs.add(str(args[0]))
            elif kind == "undir":
                dirs.discard(str(args[0]))
        except (ValueError, TypeError, IndexError):  # e.g. a line cut short by the owner's death
            continue
    reap(groups, dirs, grace)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
