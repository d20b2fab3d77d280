"""Keep a copy of a zarr dataset up to date: another container, account or Swift cluster.
Run from cron or a batch scheduler: ``python -m swiftzarr_batch.workflows.mirror CONFIG``.

Each run is an incremental ``copy_store``: keys whose size and MD5 already match are skipped,
changed ones overwritten (server-side when both sides are on one cluster), chunks before
metadata; with ``delete_extra`` keys that vanished at the source are deleted at the target.
The copy is verified key by key against the source listing, optionally followed by a full
``verify_store`` of the target. A source that an ingest run is writing right now (its lock is
held) is left alone this time (exit 75): copying it mid-append would copy a half-grown dataset.
Two mirror runs into one target exclude each other with a lock on the target.

Versioned repositories (docs: "Versioned datasets"): ``source_versioned = true`` copies the
source repository's ``main`` head, one snapshot, never a commit in progress (no lock needed);
``versioned = true`` mirrors into a target repository, one writable session committed once,
after the copy verified (its branch lease replaces the target lock).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from swiftzarr_batch.jobs.clusters import ClusterConfig, toml_section
from swiftzarr_batch.jobs.counters import cluster_counters, counters_delta
from swiftzarr_batch.jobs.runner import dask_context
from swiftzarr_batch.store.keys import LOCKS_DIR, join
from swiftzarr_batch.transfer.copy import CopyError, copy_store
from swiftzarr_batch.transfer.verify import verify_store
from swiftzarr_batch.workflows.common import (
    LockHeldError,
    Schema,
    location_keys,
    main_for,
    open_location,
    run_workflow,
)
from swiftzarr_batch.workflows.lock import DatasetLock
from swiftzarr_batch.workflows.versioned_target import source_snapshot, versioned_session

log = logging.getLogger(__name__)

SCHEMA: Schema = {
    "source": location_keys(),
    "target": location_keys(),
    "mirror": {
        "delete_extra": (bool, False),
        "if_exists": (str, "overwrite"),
        "server_side": (str, "auto"),
        "respect_lock": (str, "ingest"),
        "lock_ttl_seconds": ((int, float), 3600),
        "batch_size": (int, 250),
        "concurrency": (int, 16),
        "versioned": (bool, False),
        "source_versioned": (bool, False),
    },
    "verify": {"structure": (bool, False), "allow_missing": (bool, True), "content": (bool, False)},
    "dask": toml_section(),  # see jobs.clusters.ClusterConfig
    "output": {"summary": (str, "")},
}
SERVER_SIDE = {"auto": None, "always": True, "never": False}


def run_from_config(
    config_path: str | Path,
    summary_path: str | Path | None = None,
    *,
    debug: bool = False,
    insecure: bool = False,
    dask: Mapping[str, Any] | None = None,
) -> int:
    """Mirror a dataset as the TOML config says; returns the exit code.

    ``dask``: a cluster choice (``[dask]`` keys) that replaces the config's ``[dask]``.
    """
    return run_workflow(
        "mirror",
        config_path,
        SCHEMA,
        mirror,
        summary_path,
        debug=debug,
        insecure=insecure,
        dask=dask,
    )


def mirror(config: dict[str, dict[str, Any]], summary: dict[str, Any]) -> None:
    """Run one mirror from a parsed config: copy the source dataset under the target's lock
    (or one versioned commit), verify, and record the outcome in ``summary``; a source being
    ingested is not mirrored (``LockHeldError``)."""
    src, tgt, opt = config["source"], config["target"], config["mirror"]
    if opt["server_side"] not in SERVER_SIDE:
        raise ValueError(f"[mirror] server_side must be one of {sorted(SERVER_SIDE)}")
    source = source_store = open_location(src, read_only=True)
    dest = open_location(tgt)
    summary.update(source=src["url"], target=tgt["url"])
    lock_name = "" if opt["source_versioned"] else opt["respect_lock"]
    if opt["source_versioned"]:
        snapshot = source_snapshot(source)
        source, summary["source_snapshot"] = snapshot.store, snapshot.snapshot_id
    holder = _source_lock_holder(source, lock_name)
    if holder:
        raise LockHeldError(
            f"{src['url']} is being written ({opt['respect_lock']} lock held by "
            f"{holder}); not mirrored this time"
        )
    cluster = ClusterConfig.from_mapping(config["dask"], where="[dask]")
    summary["cluster"] = cluster.kind
    before = cluster_counters()
    ttl = float(opt["lock_ttl_seconds"])
    with dask_context(cluster=cluster, stores=(source_store, dest)):
        if opt["versioned"]:
            with versioned_session(dest, ttl) as session:
                verified = _mirror_into(source, session.store, config, summary)
                if verified:
                    summary["snapshot"] = session.commit(f"mirror of {src['url']}")
        else:
            with DatasetLock(dest, "mirror", ttl=ttl):
                verified = _mirror_into(source, dest, config, summary)
    if _source_lock_holder(source, lock_name):
        log.warning("an ingest started at the source during the mirror; run again later")
        verified = False
    summary["verified"] = verified
    summary["counters"] = counters_delta(before, cluster_counters())


def _mirror_into(
    source: Any, dest: Any, config: dict[str, dict[str, Any]], summary: dict[str, Any]
) -> bool:
    """Copy and verify; True when the target verified."""
    opt = config["mirror"]
    try:
        result = copy_store(
            source,
            dest,
            if_exists=opt["if_exists"],
            delete_extra=opt["delete_extra"],
            verify=True,
            server_side=SERVER_SIDE[opt["server_side"]],
            batch_size=opt["batch_size"],
            concurrency=opt["concurrency"],
        )
    except CopyError as exc:
        summary["copy"] = exc.summary.as_dict()
        raise
    summary["copy"] = result.as_dict()
    verified = bool(result.verified)
    if config["verify"]["structure"]:
        report = verify_store(
            dest,
            check_content=config["verify"]["content"],
            allow_missing=config["verify"]["allow_missing"],
        )
        summary["verify"] = {k: v for k, v in report.as_dict().items() if k != "arrays"}
        verified = verified and report.ok
        if not report.ok:
            log.error("the mirror did not verify:\n%s", report.format())
    return verified


def _source_lock_holder(source: Any, name: str) -> str | None:
    """Who holds the source's ``name`` lock (None if nobody, or if ``name`` is empty)."""
    if not name:
        return None
    buf = sync(source.get(join(LOCKS_DIR, name), default_buffer_prototype()))
    if buf is None:
        return None
    try:
        doc = json.loads(buf.to_bytes())
    except ValueError:
        return "an unreadable lock"
    if doc.get("expires_at", 0) <= time.time():
        return None  # a dead run's lock: its expiry is past
    return str(doc.get("owner", "?"))


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m swiftzarr_batch.workflows.mirror CONFIG``: its exit code (0 only when the
    mirror verified)."""
    return main_for("python -m swiftzarr_batch.workflows.mirror", run_from_config, argv)


if __name__ == "__main__":
    raise SystemExit(main())
