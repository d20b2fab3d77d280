"""``copy_store``: copy a zarr hierarchy between any two zarr-3 stores, in parallel and resumable.

zarr 3's own ``copy_store`` raises NotImplementedError. This one merges the sorted listings of
both sides as they stream (``copy_run``), compares objects by size + MD5 (Swift listings carry
both; other stores are hashed from their bytes), and copies what differs as dask tasks over
batches of keys while the merge goes on, so no process holds more than a few batches of
names, whatever the number of keys. Between two Swift containers reachable with the same token
(same cluster, any account the token may read) the copy is server-side (PUT + ``X-Copy-From``):
no data crosses the client.

Order is what keeps readers safe: every chunk is written before any metadata, metadata goes
deepest-first, consolidated metadata last; extra keys are deleted metadata-first. A re-run
skips every key that already matches, so an interrupted copy resumes where it stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

from zarr.abc.store import Store

from swiftzarr_batch.errors import ConfigurationError, ReadOnlyError
from swiftzarr_batch.jobs.counters import cluster_counters
from swiftzarr_batch.jobs.runner import ProgressCallback
from swiftzarr_batch.store.keys import is_lock_key
from swiftzarr_batch.store.objects import CopySource, swift_objects
from swiftzarr_batch.transfer.copy_run import CopyRun
from swiftzarr_batch.transfer.copy_summary import CopyConflictError, CopyError, CopySummary
from swiftzarr_batch.transfer.copy_tasks import TaskOptions
from swiftzarr_batch.transfer.objects import describe
from swiftzarr_batch.transfer.unlisted import probe_unlisted as probe_unlisted_chunks

if TYPE_CHECKING:
    from swiftzarr_batch.transfer.convert_plan import Target

log = logging.getLogger(__name__)

IfExists = Literal["skip", "overwrite", "fail"]
IF_EXISTS = ("skip", "overwrite", "fail")

__all__ = ["CopyConflictError", "CopyError", "CopySummary", "copy_store"]


def copy_store(
    source: Store,
    dest: Store,
    *,
    source_path: str = "",
    dest_path: str = "",
    if_exists: IfExists = "skip",
    delete_extra: bool = False,
    verify: bool = True,
    dry_run: bool = False,
    server_side: bool | None = None,
    batch_size: int = 250,
    concurrency: int = 16,
    exclude: Callable[[str], bool] | None = is_lock_key,
    progress: ProgressCallback | None = None,
    progress_interval: float = 5.0,
    convert: Target | None = None,
    probe_unlisted: bool = True,
) -> CopySummary:
    """Copy every key under ``source_path`` of ``source`` to ``dest_path`` of ``dest``.

    if_exists: what to do with a destination key whose content differs (matching keys are
        always skipped): "skip" leaves it (counted in ``keys_conflicting``), "overwrite"
        replaces it, "fail" raises CopyConflictError before anything is written.
    delete_extra: delete destination keys that are not in the source (after the copy).
    verify: check every written key (Swift: the server checks the MD5 we send, and copies
        carry the source ETag; other stores are read back) and, at the end, that the
        destination lists every source key with the source's size and MD5.
    dry_run: plan only; the summary says what would be copied and deleted.
    server_side: None copies server-side when possible, True requires it, False never.
    batch_size: keys per dask task; concurrency: concurrent requests per task.
    exclude: keys (relative to the paths) that are neither copied nor deleted; by default
        swiftzarr's lock objects.
    progress: ``callback(label, done, total, bytes)``; progress is also logged (INFO) at most
        every ``progress_interval`` seconds.

    convert: re-encode while copying (zarr 2 <-> 3, chunks, shards, codecs; see
        ``transfer.convert``): returns a ConvertSummary (a CopySummary); ``if_exists``,
        ``delete_extra``, ``server_side``, ``batch_size`` and ``exclude`` do not apply (the
        destination must be empty or hold this same conversion, which is then resumed).

    probe_unlisted: listings lag behind writes, so after the listed keys the source's zarr
        chunk grids are checked: every grid key its listing lacked gets a HEAD, and chunks
        that exist are copied too (``keys_unlisted``; the cost, one HEAD per absent grid key,
        is ``unlisted_probes``; see ``transfer.unlisted``). Keys outside zarr arrays cannot be
        found that way: a copy of a plain prefix copies what the source listed. Only a Swift
        source is probed (other stores' listings do not lag).

    Raises CopyError (with ``.summary``) if any key failed or the copy did not verify.
    """
    if if_exists not in IF_EXISTS:
        raise ConfigurationError(f"if_exists must be one of {IF_EXISTS}, got {if_exists!r}")
    if batch_size < 1 or concurrency < 1:
        raise ConfigurationError("batch_size and concurrency must be >= 1")
    if dest.read_only and not dry_run:
        raise ReadOnlyError(f"the destination {describe(dest, dest_path)} is read-only")
    _check_not_overlapping(source, source_path, dest, dest_path)
    if convert is not None:  # imported here: the converting copy builds on this module
        from swiftzarr_batch.transfer.convert import convert_store

        return convert_store(
            source,
            dest,
            convert,
            source_path=source_path,
            dest_path=dest_path,
            verify=verify,
            dry_run=dry_run,
            concurrency=concurrency,
            progress=progress,
            progress_interval=progress_interval,
        )
    started = time.monotonic()
    before = cluster_counters()
    route = _server_side_route(source, dest, server_side)
    opts = TaskOptions(source_path.strip("/"), dest_path.strip("/"), concurrency, verify, route)
    summary = CopySummary(
        describe(source, source_path),
        describe(dest, dest_path),
        dry_run=dry_run,
        server_side=route is not None,
    )
    run = CopyRun(source, dest, opts, summary, exclude, batch_size, progress, progress_interval)
    try:
        run.run(if_exists, delete_extra=delete_extra)  # data copied as the listings are merged
        # After failed keys the copy ends in CopyError ("re-run to resume") anyway: the re-run
        # probes. Probing now would meet the same outage and hide that message.
        if not dry_run and probe_unlisted and not summary.keys_failed and swift_objects(source):
            probe = probe_unlisted_chunks(source, opts.source_path, concurrency=concurrency)
            summary.unlisted_probes = probe.probed
            run.copy_unlisted(probe.present)
        if not dry_run:
            run.copy_metadata()
            if delete_extra:
                run.delete_extra()
            if verify:
                run.verify(delete_extra)
    finally:
        summary.record_run(before, started)
    summary.raise_if_unverified("copy", CopyError)
    return summary


def _server_side_route(source: Store, dest: Store, wanted: bool | None) -> CopySource | None:
    """Where to copy from server-side: both Swift stores, on one cluster, with one token."""
    src, dst = swift_objects(source), swift_objects(dest)
    route = None
    if wanted is not False and src is not None and dst is not None:
        route = dst.copy_source(src)
    if wanted and route is None:
        raise ConfigurationError(
            "server-side copy needs two Swift stores on the same cluster opened with the same "
            "token (e.g. one store and another from store.with_prefix or the same credentials)"
        )
    return route


def _location(store: Store, path: str) -> str:
    swift = swift_objects(store)
    if swift is not None:
        return swift.address(path)
    return describe(store, path).rstrip("/") + "/"


def _check_not_overlapping(source: Store, source_path: str, dest: Store, dest_path: str) -> None:
    a, b = _location(source, source_path), _location(dest, dest_path)
    if a.startswith(b) or b.startswith(a):
        raise ConfigurationError(
            f"source {describe(source, source_path)} and destination {describe(dest, dest_path)}"
            " overlap; copy into a different container or path"
        )
