"""A real single-node Slurm on 127.0.0.1 for tests: munged, slurmctld and slurmd of our own.

Why a real one: dask-jobqueue, ``sbatch`` templates, ``scancel`` and walltimes are only worth
testing against the scheduler that enforces them. Debian's ``slurm-wlm`` + ``munge`` run as
root with ``proctrack/linuxproc`` and ``task/none`` (no cgroups needed, so it works in a
container), ``select/cons_tres`` (jobs share the node by cores and memory), and everything
private: a generated munge key and socket, free ports, state/spool/log in a temp dir, the node
on 127.0.0.1. Nothing is written under ``/etc``; client commands find the cluster through
``SLURM_CONF`` (see :attr:`LocalSlurm.env`).

``LocalSlurm`` stops exactly the processes it started, by pid (after cancelling the jobs of
its cluster, whose steps run under slurmd). :func:`unavailable_reason` says why Slurm cannot
run here (not root, packages missing), so tests can skip with that reason.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

PACKAGES = ("slurm-wlm", "munge")
BINARIES = ("munged", "slurmctld", "slurmd", "sinfo", "sbatch", "squeue", "scancel", "scontrol")
NODE = "swiftzarr-node"
PARTITION = "debug"


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _missing_binaries() -> list[str]:
    return [b for b in BINARIES if shutil.which(b) is None and not Path(f"/usr/sbin/{b}").exists()]


def install_packages() -> bool:
    """Install Debian's slurm-wlm and munge with apt-get when missing and running as root.

    The project's set-up (scripts/setup_system.sh) does the same; this is for a test run on a
    machine that skipped it. Returns whether the binaries are there afterwards.
    """
    if not _missing_binaries():
        return True
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    log.info("installing %s with apt-get", " ".join(PACKAGES))
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        done = subprocess.run(argv, env=env, capture_output=True, timeout=900, check=False)
        if done.returncode != 0:
            log.warning("%s failed: %s", argv[1], done.stderr.decode(errors="replace")[-500:])
            return False
    return not _missing_binaries()


def unavailable_reason(*, install: bool = True) -> str | None:
    """Why a LocalSlurm cannot run here, or None when it can (installing first if allowed)."""
    if os.geteuid() != 0:
        return "LocalSlurm needs root (slurmd runs jobs as their users; munged owns its key)"
    if install:
        install_packages()
    missing = _missing_binaries()
    if missing:
        return (
            f"Slurm not installed (missing {', '.join(missing)}; apt-get install slurm-wlm munge)"
        )
    return None


def _sbin(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


class SlurmError(RuntimeError):
    """LocalSlurm could not start (the message carries the tail of the daemon's log)."""


class LocalSlurm:
    """munged + slurmctld + slurmd on 127.0.0.1, one node of ``cpus`` cores and ``memory_mb``.

    Use as a context manager; :attr:`env` holds what a client needs (``SLURM_CONF``).
    """

    def __init__(
        self, *, cpus: int | None = None, memory_mb: int = 4096, base_dir: str | None = None
    ) -> None:
        self.cpus = cpus or os.cpu_count() or 1
        self.memory_mb = memory_mb
        self._base = base_dir
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self.dir = Path()

    # -- what clients need ----------------------------------------------------------------
    @property
    def conf_path(self) -> Path:
        """The cluster's ``slurm.conf`` (what ``SLURM_CONF`` points Slurm's commands at)."""
        return self.dir / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """Environment entries for Slurm client commands (sbatch, squeue, ...) to reach us."""
        return {"SLURM_CONF": str(self.conf_path)}

    @property
    def partition(self) -> str:
        """The partition jobs should ask for (the only one)."""
        return PARTITION

    @property
    def pids(self) -> dict[str, int]:
        """The daemons still running, by name: to stop them by pid and to show in messages."""
        return {name: p.pid for name, p in self._procs.items() if p.poll() is None}

    def run(self, *argv: str, check: bool = True, timeout: float = 60) -> str:
        """Run a Slurm client command against this cluster; its stdout."""
        done = subprocess.run(
            argv,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and done.returncode != 0:
            raise SlurmError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout

    def squeue(self) -> list[tuple[str, str, str]]:
        """(job id, name, state) of every job the controller still lists."""
        out = self.run("squeue", "-h", "-o", "%i|%j|%T")
        return [tuple(line.split("|", 2)) for line in out.splitlines() if line]  # type: ignore[misc]

    def job_state(self, job_id: str) -> str:
        """The job's state as ``scontrol`` shows it (``RUNNING``, ``COMPLETED``...), or
        ``"UNKNOWN"`` once the controller no longer knows the job."""
        out = self.run("scontrol", "show", "job", job_id, check=False)
        for field in out.split():
            if field.startswith("JobState="):
                return field.split("=", 1)[1]
        return "UNKNOWN"

    def wait_job(self, job_id: str, timeout: float = 300) -> str:
        """Wait until a job has left the running states; its final state."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.job_state(job_id)
            if state not in ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED"):
                return state
            if time.monotonic() > deadline:
                raise SlurmError(f"job {job_id} still {state} after {timeout:.0f} s")
            time.sleep(0.5)

    def log_tail(self, name: str, lines: int = 20) -> str:
        """The last ``lines`` lines of a daemon's log (``"slurmctld"``, ``"slurmd"``, ``"munged"``),
        "" if it has none: for error messages."""
        path = self.dir / f"{name}.log"
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def __repr__(self) -> str:
        return f"LocalSlurm(dir={str(self.dir)!r}, running={sorted(self.pids)})"

    # -- life cycle -----------------------------------------------------------------------
    def __enter__(self) -> LocalSlurm:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalSlurm:
        """Start munged, slurmctld and slurmd in a fresh directory and wait for the node to be idle;
        raises ``SlurmError`` (with why) when Slurm cannot run here, stopping what it started."""
        reason = unavailable_reason(install=False)
        if reason:
            raise SlurmError(reason)
        self._tmp = tempfile.TemporaryDirectory(prefix="swiftzarr-slurm-", dir=self._base)
        self.dir = Path(self._tmp.name)
        os.chmod(self.dir, 0o755)  # jobs (root here) and munged check the path's modes
        try:
            self._write_config()
            self._spawn("munged", [_sbin("munged"), "--foreground", "--force", *self._munge_args])
            self._wait(lambda: Path(self._munge_socket).exists(), "munged's socket", "munged")
            self._spawn("slurmctld", [_sbin("slurmctld"), "-D", "-f", str(self.conf_path)])
            self._spawn("slurmd", [_sbin("slurmd"), "-D", "-N", NODE, "-f", str(self.conf_path)])
            self._wait(self._node_idle, "the node to be idle in sinfo", "slurmctld")
        except BaseException:
            self.stop()
            raise
        log.info("LocalSlurm up in %s (pids %s)", self.dir, self.pids)
        return self

    def stop(self) -> None:
        """Cancel this cluster's jobs, then stop munged/slurmctld/slurmd by their pids."""
        if "slurmctld" in self.pids:
            try:
                self.run("scancel", "--full", "--user=root", check=False, timeout=20)
                deadline = time.monotonic() + 30
                while self.squeue() and time.monotonic() < deadline:
                    time.sleep(0.5)
            except (SlurmError, subprocess.TimeoutExpired) as exc:
                log.warning("could not cancel LocalSlurm's jobs: %s", exc)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self._procs.pop(name, None)
            if proc is None:
                continue
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    # -- internals ------------------------------------------------------------------------
    @property
    def _munge_socket(self) -> str:
        return str(self.dir / "munge" / "munge.socket")

    @property
    def _munge_args(self) -> list[str]:
        m = self.dir / "munge"
        return [
            f"--socket={self._munge_socket}",
            f"--key-file={m / 'munge.key'}",
            f"--pid-file={m / 'munged.pid'}",
            f"--seed-file={m / 'munged.seed'}",
            f"--log-file={self.dir / 'munged.log'}",
        ]

    def _write_config(self) -> None:
        for sub in ("munge", "state", "spool", "jobs"):
            (self.dir / sub).mkdir(mode=0o700 if sub == "munge" else 0o755)
        key = self.dir / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        ctld_port, slurmd_port = _free_ports(2)
        d = self.dir
        conf = f"""\
ClusterName=swiftzarr
SlurmctldHost={socket.gethostname().split(".")[0]}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self._munge_socket}
CredType=cred/munge
StateSaveLocation={d / "state"}
SlurmdSpoolDir={d / "spool"}
SlurmctldPidFile={d / "slurmctld.pid"}
SlurmdPidFile={d / "slurmd.pid"}
SlurmctldLogFile={d / "slurmctld.log"}
SlurmdLogFile={d / "slurmd.log"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=600
OverTimeLimit=0
NodeName={NODE} NodeAddr=127.0.0.1 NodeHostname=127.0.0.1 CPUs={self.cpus} \
RealMemory={self.memory_mb} State=UNKNOWN
PartitionName={PARTITION} Nodes={NODE} Default=YES MaxTime=INFINITE State=UP
"""
        self.conf_path.write_text(conf)

    def _spawn(self, name: str, argv: list[str]) -> None:
        out = open(self.dir / f"{name}.stdout", "wb")  # noqa: SIM115 (closed with the process)
        try:
            self._procs[name] = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        finally:
            out.close()

    def _node_idle(self) -> bool:
        try:
            out = self.run("sinfo", "-h", "-N", "-o", "%N %t", check=False, timeout=10)
        except subprocess.TimeoutExpired:
            return False
        return any(line.split() == [NODE, "idle"] for line in out.splitlines())

    def _wait(self, ready: object, what: str, daemon: str, timeout: float = 60) -> None:
        assert callable(ready)
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [n for n, p in self._procs.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                name = dead[0] if dead else daemon
                stdout = self.dir / f"{name}.stdout"
                tail = self.log_tail(name) or (
                    stdout.read_text(errors="replace")[-2000:] if stdout.exists() else ""
                )
                problem = f"{name} exited" if dead else f"timed out waiting for {what}"
                raise SlurmError(f"LocalSlurm: {problem}:\n{tail}")
            time.sleep(0.2)
