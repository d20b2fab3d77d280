"""What one measured operation cost its process: wall time, CPU, peak memory.

Why per process: every contender runs in its own worker process, so ``getrusage`` of that
process (plus the children it waited for, for the CLI contenders) is exactly that contender's
client CPU; nothing of the orchestrator or another contender mixes in.
"""

from __future__ import annotations

import os
import resource
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    """Current resident set size of this process, MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE / 2**20


def peak_rss_mb() -> float:
    """Peak resident set size (VmHWM) since the last ``reset_peak_rss``, MiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0), so the peak is per operation."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _cpu(ru: resource.struct_rusage) -> float:
    return ru.ru_utime + ru.ru_stime


@dataclass
class Meter:
    """Wall, CPU (self + waited children) and memory of the block it wraps."""

    wall: float = 0.0
    cpu: float = 0.0
    rss_before_mb: float = 0.0
    peak_rss_mb: float = 0.0
    child_peak_rss_mb: float = 0.0
    _start: tuple[float, float, float] = field(default=(0.0, 0.0, 0.0), repr=False)

    def __enter__(self) -> Meter:
        reset_peak_rss()
        self.rss_before_mb = rss_mb()
        self._start = (
            time.perf_counter(),
            _cpu(resource.getrusage(resource.RUSAGE_SELF)),
            _cpu(resource.getrusage(resource.RUSAGE_CHILDREN)),
        )
        return self

    def __exit__(self, *exc: object) -> None:
        wall0, self0, kids0 = self._start
        self.wall = time.perf_counter() - wall0
        self.cpu = (
            _cpu(resource.getrusage(resource.RUSAGE_SELF))
            - self0
            + _cpu(resource.getrusage(resource.RUSAGE_CHILDREN))
            - kids0
        )
        self.peak_rss_mb = max(peak_rss_mb(), self.child_peak_rss_mb)


def run_child(
    argv: Sequence[str],
    meter: Meter | None = None,
    *,
    cwd: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 1800.0,
) -> tuple[str, int]:
    """Run a CLI to completion; its CPU lands in RUSAGE_CHILDREN, its peak RSS in ``meter``.

    Returns the tail of its output and its number of output lines; raises RuntimeError with
    that tail when it exits non-zero.
    """
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + timeout
    out, lines = b"", 0
    assert proc.stdout is not None
    # The CLI prints one line per object: drain it while it runs so it never blocks on a pipe.
    while True:
        chunk = proc.stdout.read(65536)
        if not chunk:
            break
        lines += chunk.count(b"\n")
        out = (out + chunk)[-8192:]
        if time.monotonic() > deadline:
            proc.kill()
            break
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if meter is not None:
        meter.child_peak_rss_mb = max(meter.child_peak_rss_mb, usage.ru_maxrss / 1024)
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{argv[0]} {argv[1]} exited {proc.returncode}: {text[-600:]}")
    return text, lines
