"""Request counters across the client and every dask worker: what a job or a copy cost.

Each process counts its own requests (``swift.session.process_counters``: every session of the
process, plus the auth calls it sent). The cost of an operation is the difference of two
snapshots taken around it, over the client and all workers. A snapshot is kept *per process*,
keyed by pid, not summed:

- a worker that restarted during the operation is a new pid and counts fully, where summed
  totals would subtract the old worker's numbers from the new one's (and could go negative);
- a worker that died takes its numbers with it (they are left out, never subtracted);
- a worker that runs in the client's own process is counted once.

Counters are a report, so collecting them never fails or delays the work they describe: a
worker that cannot answer (dying) is left out rather than waited for, and when the scheduler
cannot be asked at all only this process is counted (logged at debug level).

Every parallel operation uses this one collector: ``jobs.runner.run_job`` for
``JobResult.counters``, the copy and verify summaries, the ingest and mirror workflows.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterable

from swiftzarr_batch.jobs.dask_api import DaskClient, current_client
from swiftzarr_batch.swift.concurrency import set_rate_divisor
from swiftzarr_batch.swift.session import process_counters

log = logging.getLogger(__name__)

__all__ = [
    "Snapshot",
    "cluster_counters",
    "counters_delta",
    "job_counters",
    "process_snapshot",
    "snapshot",
    "sum_counters",
]

Snapshot = dict[int, dict[str, int]]
"""Counters per process: pid -> {counter name: value}, cumulative since the process started."""


def process_snapshot() -> tuple[int, dict[str, int]]:
    """This process's counters and its pid (run on every worker by ``snapshot``)."""
    return os.getpid(), process_counters()


def snapshot(client: DaskClient | None) -> Snapshot:
    """This process's counters and, with a ``client``, those of every worker that answers."""
    pid, counters = process_snapshot()
    found: Snapshot = {pid: counters}
    if client is None:
        return found
    try:
        answers = client.run(process_snapshot, on_error="ignore")
    except Exception as exc:  # a report: the operation it describes must not fail
        log.debug("could not collect worker counters: %s", type(exc).__name__)
        return found
    for worker_pid, worker_counters in answers.values():
        found[worker_pid] = worker_counters
    # A cluster-wide rate cap (``max_requests_per_second``) is shared by the workers that answer.
    try:
        client.run(functools.partial(set_rate_divisor, max(1, len(answers))), on_error="ignore")
    except Exception as exc:
        log.debug("could not tell workers how many share the rate cap: %s", type(exc).__name__)
    return found


def cluster_counters() -> Snapshot:
    """A ``snapshot`` over this process and the current client's workers (if there is one)."""
    return snapshot(current_client())


def sum_counters(per_process: Iterable[dict[str, int]]) -> dict[str, int]:
    """Counters added up by name."""
    total: dict[str, int] = {}
    for counters in per_process:
        for name, value in counters.items():
            total[name] = total.get(name, 0) + value
    return total


def counters_delta(before: Snapshot, after: Snapshot) -> dict[str, int]:
    """What happened between two snapshots, summed: per process ``after - before``.

    A process that is new in ``after`` (a restarted worker) counts fully; one missing from it (a
    worker that died) is left out.
    """
    return sum_counters(
        {name: value - before.get(pid, {}).get(name, 0) for name, value in counters.items()}
        for pid, counters in after.items()
    )


def job_counters(client: DaskClient | None = None) -> dict[str, int]:
    """Request counters of every SwiftStore in the client process and all workers, summed.

    Cumulative since each process started (a job's own numbers are in ``JobResult.counters``).
    ``client`` defaults to the current ``distributed.Client``; without one, only this process.
    """
    return sum_counters(snapshot(client if client is not None else current_client()).values())
