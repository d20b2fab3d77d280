"""Where dask tasks run, as configuration: threads, local processes, a scheduler, a scheduler
file, or workers started as Slurm jobs by dask-jobqueue.

One :class:`ClusterConfig` serves the CLI (``--cluster``), the workflow TOML files (the
``[dask]`` section) and the Python API (``open_cluster``), so the three cannot drift apart.

Why walltime matters here: a Slurm job is killed at its walltime, whatever its worker is doing.
Workers therefore get ``--lifetime`` / ``--lifetime-stagger`` ending before the walltime, so they
leave cleanly (their tasks move elsewhere) and the adaptive cluster submits fresh jobs to
replace them; and before anything starts, the token a store carries is checked against the
walltime (``check_token_lifetime``), because the workers get the storage URL + token by the
store's pickle and cannot renew a plain token.

Why secrets are scrubbed from ``sbatch``'s environment: Slurm's default ``--export=ALL`` copies
the submitting process's environment into the job record (kept by slurmctld in its state
directory, shown by ``scontrol``). Workers never need credentials (the pickled store carries the
token), so variables named like keys, passwords, secrets and tokens are left out.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any

from swiftzarr_batch.auth.chain import HasSession, check_token_lifetime
from swiftzarr_batch.errors import ConfigurationError

log = logging.getLogger(__name__)

KINDS = ("threads", "local", "scheduler", "scheduler-file", "slurm")
SECRET_NAME = re.compile(r"(KEY|PASSWORD|PASSWD|SECRET|TOKEN|CREDENTIAL)", re.IGNORECASE)
_WALLTIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


@dataclass(frozen=True)
class ClusterConfig:
    """Which dask cluster a command uses. ``kind`` picks one; the other fields belong to it.

    * ``threads``: dask's threads in this process (the default; no distributed).
    * ``local``: ``workers`` local worker processes (``threads_per_worker`` each), on 127.0.0.1.
    * ``scheduler``: a running scheduler at ``address``.
    * ``scheduler-file``: the scheduler whose address ``dask scheduler --scheduler-file`` wrote
      to ``scheduler_file`` (the one-allocation ``srun`` pattern); waits for
      ``wait_for_workers`` workers.
    * ``slurm``: dask-jobqueue's ``SLURMCluster``: ``jobs`` jobs of ``cores`` cores,
      ``memory`` and ``processes`` worker processes each, ``walltime``, ``account``,
      ``partition``, ``job_extra_directives`` (extra ``#SBATCH`` lines),
      ``job_script_prologue`` (shell lines before the worker starts), ``python`` (the
      interpreter on the nodes). ``host``/``interface`` choose where the scheduler and workers
      listen. Workers leave ``lifetime_seconds`` after they start (default: a margin before
      the walltime), staggered by ``lifetime_stagger_seconds``, and are replaced by a new job
      ``replace_after_seconds`` after they left (dask's ``lost-worker-timeout``; 0: dask's
      default of 15 s).
    """

    kind: str = "threads"
    workers: int = 0
    threads_per_worker: int = 2
    address: str = ""
    scheduler_file: str = ""
    wait_for_workers: int = 0
    wait_timeout_seconds: float = 600.0
    jobs: int = 1
    cores: int = 1
    processes: int = 1
    memory: str = "2GB"
    walltime: str = "01:00:00"
    account: str = ""
    partition: str = ""
    job_extra_directives: tuple[str, ...] = ()
    job_script_prologue: tuple[str, ...] = ()
    python: str = ""
    host: str = ""
    interface: str = ""
    local_directory: str = ""
    log_directory: str = ""
    lifetime_seconds: float = 0.0
    lifetime_stagger_seconds: float = -1.0
    replace_after_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigurationError(f"cluster kind {self.kind!r}: expected one of {KINDS}")
        if self.kind == "local" and self.workers < 1:
            raise ConfigurationError("cluster kind 'local' needs workers >= 1")
        if self.kind == "scheduler" and not self.address:
            raise ConfigurationError("cluster kind 'scheduler' needs an address")
        if self.kind == "scheduler-file" and not self.scheduler_file:
            raise ConfigurationError("cluster kind 'scheduler-file' needs a scheduler_file")
        if self.kind == "slurm":
            if self.jobs < 1 or self.cores < 1 or self.processes < 1:
                raise ConfigurationError("slurm: jobs, cores and processes must be >= 1")
            walltime_seconds(self.walltime)  # fails early on a typo
            worker_lifetime(self)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, where: str = "cluster") -> ClusterConfig:
        """From a TOML table or keyword dict; ``-`` and ``_`` are alike in keys.

        The old ``[dask]`` keys still mean what they meant: ``workers = N`` alone is
        ``kind = "local"``, ``scheduler = "tcp://..."`` is ``kind = "scheduler"``.
        """
        known = {f.name: f for f in fields(cls)}
        given = {str(k).replace("-", "_"): v for k, v in values.items()}
        if not given.get("kind"):
            given.pop("kind", None)  # "" in a config: say it by the other keys
        address = given.pop("scheduler", "")
        if address:
            given["address"] = given.get("address") or address
        if given.get("address") and given.get("workers") and "kind" not in given:
            raise ConfigurationError(
                f"{where}: give either a scheduler address or a number of workers, not both"
            )
        if given.get("address") and "kind" not in given:
            given["kind"] = "scheduler"
        unknown = sorted(set(given) - set(known))
        if unknown:
            raise ConfigurationError(f"{where}: unknown key(s) {unknown}; expected {sorted(known)}")
        if given.get("workers") and "kind" not in given:
            given["kind"] = "local"
        if given.get("scheduler_file") and "kind" not in given:
            given["kind"] = "scheduler-file"
        for name in ("job_extra_directives", "job_script_prologue"):
            if name in given:
                value = given[name]
                given[name] = (value,) if isinstance(value, str) else tuple(map(str, value))
        try:
            return cls(**given)
        except TypeError as exc:
            raise ConfigurationError(f"{where}: {exc}") from None

    @property
    def needs_seconds(self) -> float | None:
        """How long one worker may hold a token: the walltime for Slurm, else unknown."""
        return float(walltime_seconds(self.walltime)) if self.kind == "slurm" else None


def toml_section() -> dict[str, tuple[type | tuple[type, ...], Any]]:
    """The ``[dask]`` section of the workflow configs: key -> (types, default), as the
    workflows' ``load_config`` checks it. ``kind = ""`` is inferred from the other keys."""
    section: dict[str, tuple[type | tuple[type, ...], Any]] = {
        "kind": (str, ""),
        "scheduler": (str, ""),  # the old name of ``address``
    }
    for f in fields(ClusterConfig):
        if f.name in ("kind", "extra"):
            continue
        default = f.default
        if isinstance(default, tuple):
            section[f.name] = (list, [])
        elif isinstance(default, float):
            section[f.name] = ((int, float), default)
        else:
            section[f.name] = (type(default), default)
    return section


def walltime_seconds(walltime: str) -> int:
    """Slurm's time formats: ``MM``, ``MM:SS``, ``HH:MM:SS``, ``D-HH``, ``D-HH:MM``,
    ``D-HH:MM:SS``."""
    match = _WALLTIME.match(walltime.strip())
    if not match:
        raise ConfigurationError(f"walltime {walltime!r}: expected e.g. 01:00:00 or 1-12:00")
    days, a, b, c = match.groups()
    if days is None:
        parts = [int(x) for x in (a, b, c) if x is not None]
        if len(parts) == 1:
            return parts[0] * 60
        if len(parts) == 2:
            return parts[0] * 60 + parts[1]
        return parts[0] * 3600 + parts[1] * 60 + parts[2]
    hours, minutes, seconds = int(a), int(b or 0), int(c or 0)
    return int(days) * 86400 + hours * 3600 + minutes * 60 + seconds


def worker_lifetime(config: ClusterConfig) -> tuple[int, int]:
    """(lifetime, stagger) in seconds for a Slurm worker: it leaves before the walltime.

    By default a margin of 5 % (at least 60 s) plus the stagger (5 %, at most 5 minutes) is
    kept below the walltime, so the worker hands its tasks back before Slurm kills it.
    """
    wall = walltime_seconds(config.walltime)
    stagger = config.lifetime_stagger_seconds
    if stagger < 0:
        stagger = min(300.0, 0.05 * wall)
    lifetime = config.lifetime_seconds or wall - max(60.0, 0.05 * wall) - stagger
    if lifetime <= 0 or lifetime + stagger >= wall:
        raise ConfigurationError(
            f"slurm: worker lifetime {lifetime:.0f} s + stagger {stagger:.0f} s must end before "
            f"the walltime {config.walltime} ({wall} s)"
        )
    return int(lifetime), int(stagger)


def scrubbed_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment without variables whose names say they hold a secret."""
    env = os.environ if env is None else env
    return {k: v for k, v in env.items() if not SECRET_NAME.search(k)}


def check_walltime(stores: Sequence[HasSession], config: ClusterConfig) -> None:
    """Before starting: will each store's token outlive a worker's walltime? (Warns, as
    ``check_token_lifetime`` does, when a plain token expires first.)"""
    needed = config.needs_seconds
    if needed is None:
        return
    for store in stores:
        if hasattr(store, "session"):
            check_token_lifetime(store, needed)


def slurm_cluster(config: ClusterConfig) -> Any:
    """A started ``SLURMCluster`` for ``config`` (no jobs yet; ``open_cluster`` scales it)."""
    try:
        from dask_jobqueue.slurm import SLURMCluster, SLURMJob
    except ImportError:
        raise ConfigurationError(
            "cluster kind 'slurm' needs dask-jobqueue: pip install 'swiftzarr_batch[hpc]'"
        ) from None

    class ScrubbedSLURMJob(SLURMJob):
        """Submits with an environment free of secrets (see the module docstring)."""

        async def _submit_job(self, script_filename: str) -> Any:
            return await self._call(  # type: ignore[no-untyped-call]
                [*self.submit_command.split(), script_filename], env=scrubbed_environment()
            )

    class ScrubbedSLURMCluster(SLURMCluster):
        job_cls = ScrubbedSLURMJob

    lifetime, stagger = worker_lifetime(config)
    worker_args = ["--lifetime", f"{lifetime}s", "--lifetime-stagger", f"{stagger}s"]
    # no dashboard; the scheduler's HTTP (metrics) server listens where the scheduler does
    scheduler_options: dict[str, Any] = {"dashboard": False, "dashboard_address": ":0"}
    if config.host:
        worker_args += ["--host", config.host]
        scheduler_options.update(host=config.host, dashboard_address=f"{config.host}:0")
    kwargs: dict[str, Any] = {
        "cores": config.cores,
        "processes": config.processes,
        "memory": config.memory,
        "walltime": config.walltime,
        "job_extra_directives": list(config.job_extra_directives),
        "job_script_prologue": list(config.job_script_prologue),
        "worker_extra_args": worker_args,
        "python": config.python or sys.executable,
        "scheduler_options": scheduler_options,
        "job_name": "swiftzarr-worker",
        **config.extra,
    }
    if config.account:
        kwargs["account"] = config.account
    if config.partition:
        kwargs["queue"] = config.partition
    if config.interface:
        kwargs["interface"] = config.interface
    if config.local_directory:
        kwargs["local_directory"] = config.local_directory
    if config.log_directory:
        kwargs["log_directory"] = config.log_directory
    return ScrubbedSLURMCluster(**kwargs)


@contextmanager
def open_cluster(config: ClusterConfig, stores: Sequence[Any] = ()) -> Iterator[Any]:
    """Start (or connect to) the cluster ``config`` names; yields a ``distributed.Client``,
    or None for ``threads``. Checks the stores' tokens against the walltime first."""
    check_walltime(stores, config)
    if config.kind == "threads":
        yield None
        return
    import distributed

    Client: Any = distributed.Client  # untyped library: one Any here, typed code elsewhere
    LocalCluster: Any = distributed.LocalCluster

    if config.kind == "scheduler":
        with Client(config.address) as client:
            yield client
        return
    if config.kind == "scheduler-file":
        with Client(scheduler_file=config.scheduler_file) as client:
            if config.wait_for_workers:
                client.wait_for_workers(
                    config.wait_for_workers, timeout=config.wait_timeout_seconds
                )
            yield client
        return
    if config.kind == "local":
        with (
            LocalCluster(
                n_workers=config.workers,
                threads_per_worker=config.threads_per_worker,
                processes=True,
                host="127.0.0.1",
                dashboard_address=None,
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
        return
    import dask

    # A worker leaving at its lifetime while running a task counts against that task (and
    # its lost results are recomputed): allow more than dask's 3 such departures per task.
    allowed = max(10, int(dask.config.get("distributed.scheduler.allowed-failures", 3)))
    settings: dict[str, Any] = {"distributed.scheduler.allowed-failures": allowed}
    if config.replace_after_seconds > 0:
        # how long the cluster waits, after a worker left, before it submits the replacement
        settings["distributed.deploy.lost-worker-timeout"] = f"{config.replace_after_seconds}s"
    with (
        dask.config.set(settings),
        slurm_cluster(config) as cluster,
        Client(cluster) as client,
    ):
        workers = config.jobs * config.processes
        # adapt (not scale): workers that reach their lifetime are replaced by new jobs (the
        # cluster forgets a departed worker's job after the lost-worker-timeout; adapt then
        # sees fewer jobs than planned and re-creates the missing one); finished results survive
        # the departure because the jobs fetch them as tasks finish (runner.gather_as_done)
        cluster.adapt(minimum_jobs=config.jobs, maximum_jobs=config.jobs)
        log.info("waiting for %d Slurm job(s) (%d worker(s))", config.jobs, workers)
        client.wait_for_workers(workers, timeout=config.wait_timeout_seconds)
        yield client
