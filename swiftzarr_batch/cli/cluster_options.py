"""``--cluster`` and its options for the commands that run dask tasks (copy, verify, ingest,
mirror).

Kept apart from the parser so the cluster vocabulary of the CLI is one list, mapped one-to-one
onto ``jobs.clusters.ClusterConfig`` (the same keys as the workflows' ``[dask]`` section).
"""

from __future__ import annotations

import argparse
from typing import Any

from swiftzarr_batch.jobs.clusters import KINDS, ClusterConfig

# option -> (ClusterConfig field, type, help); every option defaults to "not given"
_OPTIONS: tuple[tuple[str, str, Any, str], ...] = (
    ("--scheduler-file", "scheduler_file", str, "connect to the scheduler named in this file"),
    ("--wait-for-workers", "wait_for_workers", int, "scheduler-file: wait for N workers"),
    ("--slurm-jobs", "jobs", int, "slurm: number of worker jobs (default 1)"),
    ("--slurm-cores", "cores", int, "slurm: cores per job (default 1)"),
    ("--slurm-processes", "processes", int, "slurm: worker processes per job (default 1)"),
    ("--slurm-memory", "memory", str, "slurm: memory per job (default 2GB)"),
    ("--slurm-walltime", "walltime", str, "slurm: walltime per job (default 01:00:00)"),
    ("--slurm-account", "account", str, "slurm: account (-A)"),
    ("--slurm-partition", "partition", str, "slurm: partition (-p)"),
    ("--slurm-python", "python", str, "slurm: python on the nodes (default: this one)"),
    ("--dask-host", "host", str, "address the scheduler and Slurm workers listen on"),
    ("--dask-interface", "interface", str, "network interface for them instead (e.g. ib0)"),
    ("--worker-lifetime", "lifetime_seconds", float, "slurm: seconds a worker lives"),
    ("--worker-lifetime-stagger", "lifetime_stagger_seconds", float, "slurm: stagger, seconds"),
    ("--replace-after", "replace_after_seconds", float, "slurm: seconds before a new job"),
)


def add_cluster_options(p: argparse.ArgumentParser) -> None:
    """Add ``--cluster`` and its per-kind options: one ``--slurm-*``/``--dask-*`` option per
    ``ClusterConfig`` field, stored as ``cluster_<field>`` for ``cluster_given`` to read back."""
    g = p.add_argument_group("cluster (see the docs: Clusters and Slurm)")
    g.add_argument(
        "--cluster",
        choices=KINDS,
        help="where tasks run (default: threads, or what --workers/--scheduler say)",
    )
    for option, dest, type_, help_ in _OPTIONS:
        g.add_argument(option, dest=f"cluster_{dest}", type=type_, help=help_)
    g.add_argument(
        "--slurm-directive",
        dest="cluster_job_extra_directives",
        action="append",
        metavar="LINE",
        help="slurm: an extra #SBATCH directive (repeatable), e.g. --slurm-directive=--qos=low",
    )


def cluster_given(args: argparse.Namespace) -> dict[str, Any]:
    """The cluster options given on the command line, keyed as the ``[dask]`` section is
    (empty when none was given)."""
    values: dict[str, Any] = {}
    if getattr(args, "workers", None):
        values["workers"] = args.workers
    if getattr(args, "scheduler", None):
        values["scheduler"] = args.scheduler
    if getattr(args, "cluster", None):
        values["kind"] = args.cluster
    for name, value in vars(args).items():
        if name.startswith("cluster_") and value is not None:
            values[name.removeprefix("cluster_")] = value
    return values


def cluster_from_args(args: argparse.Namespace) -> ClusterConfig:
    """The ClusterConfig the options name; ``--workers``/``--scheduler`` as they always did."""
    return ClusterConfig.from_mapping(cluster_given(args), where="options")
