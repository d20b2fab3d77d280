"""``verify_store``: is a stored zarr hierarchy complete and intact?

Checks, from the metadata down:
- every metadata document parses (a broken one is reported, the rest still checked);
- every array has the chunk objects its shape and chunk grid call for. An absent chunk reads
  as ``fill_value`` — legitimately so when it was never written because it was all fill value
  (zarr's ``write_empty_chunks=False``), so these are reported per array, apart from corruption,
  and ``allow_missing=True`` accepts them;
- on Swift, every object's bytes hash to its ETag (read in parallel dask tasks). The object
  server quarantines an object whose bytes disagree with its ETag once it has served it, so a
  listed object that then reads as 404 is reported as corrupt too;
- keys that belong to no node (orphans) and consolidated metadata that disagrees with the nodes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from zarr.abc.store import Store
from zarr.core.sync import sync

from swiftzarr_batch.jobs.counters import cluster_counters, counters_delta
from swiftzarr_batch.jobs.runner import (
    Progress,
    ProgressCallback,
    batched,
    format_bytes,
    run_batches,
)
from swiftzarr_batch.store.hierarchy import parse_hierarchy, stale_consolidated
from swiftzarr_batch.store.keys import ZARR_JSON, ZARRAY, ZGROUP, dirname, is_node_document, join
from swiftzarr_batch.store.objects import SwiftObjects, is_md5, swift_objects
from swiftzarr_batch.transfer.chunk_presence import ChunkPresence
from swiftzarr_batch.transfer.objects import ObjectInfo, describe
from swiftzarr_batch.transfer.unlisted import head_keys
from swiftzarr_batch.transfer.verify_scan import (
    Docs,
    Scan,
    discover_metadata,
    listing_pages,
    read_docs,
)

log = logging.getLogger(__name__)

__all__ = ["ArrayCheck", "VerifyReport", "verify_store"]

ROOT_DOCS = (ZARR_JSON, ZGROUP, ZARRAY)
CONTENT_WINDOW = 100
"""Batches of content checks decided at a time while the listing streams: enough to keep
the dask workers busy, bounded in memory (25 000 entries with the default batch size)."""


@dataclass
class ArrayCheck:
    path: str
    zarr_format: int
    shape: list[int]
    chunks: list[int]
    fill_value: str
    expected: int
    present: int
    missing: list[str] = field(default_factory=list)
    """The first missing chunk keys in grid order (at most ``sample`` of them)."""
    missing_count: int = 0
    unlisted: list[str] = field(default_factory=list)
    """Chunk keys the listing lacked that exist (a HEAD found them): not yet listed, not lost."""
    unlisted_count: int = 0


@dataclass
class VerifyReport:
    """What ``verify_store`` found; ``ok`` says whether anything is wrong."""

    location: str
    arrays: list[ArrayCheck] = field(default_factory=list)
    groups: int = 0
    metadata_errors: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    """A sample (the first ``sample`` in listing order, sorted); ``orphan_count`` counts all."""
    orphan_count: int = 0
    stale_consolidated: list[str] = field(default_factory=list)
    keys: int = 0
    bytes: int = 0
    content_checked: bool = False
    objects_read: int = 0
    bytes_read: int = 0
    allow_missing: bool = False
    requests: int = 0
    retried: int = 0
    seconds: float = 0.0
    unlisted_probes: int = 0  # HEADs of grid keys the listing lacked (the cost of telling)

    @property
    def unlisted_chunks(self) -> int:
        """Chunks a HEAD found though the listing lacked them (listings lag): present, not lost."""
        return sum(a.unlisted_count for a in self.arrays)

    @property
    def missing_chunks(self) -> int:
        """Chunks of the arrays' grids that neither the listing nor a HEAD found."""
        return sum(a.missing_count for a in self.arrays)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong: metadata valid, nothing corrupt, orphaned or stale, and
        no chunk missing unless ``allow_missing`` (sparse arrays)."""
        return not (
            self.metadata_errors
            or self.corrupt
            or self.orphan_count
            or self.stale_consolidated
            or (self.missing_chunks and not self.allow_missing)
        )

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-ready fields, with the derived totals and ``ok`` included."""
        return {
            **asdict(self),
            "missing_chunks": self.missing_chunks,
            "unlisted_chunks": self.unlisted_chunks,
            "ok": self.ok,
        }

    def format(self, max_items: int = 10) -> str:
        """A human-readable report (the CLI prints this)."""
        lines = [
            f"{self.location}: {len(self.arrays)} arrays, {self.groups} groups, "
            f"{self.keys} keys, {format_bytes(self.bytes)}"
            + (
                f"; content of {self.objects_read} objects checked against their ETags"
                if self.content_checked
                else "; content not checked"
            )
        ]

        def section(title: str, items: Sequence[str], total: int | None = None) -> None:
            total = len(items) if total is None else total
            if total:
                lines.append(f"{title} ({total}):")
                lines.extend(f"  {i}" for i in items[:max_items])
                if total > min(len(items), max_items):
                    lines.append(f"  ... and {total - min(len(items), max_items)} more")

        section("invalid metadata", self.metadata_errors)
        section("CORRUPT objects (content does not match its ETag)", self.corrupt)
        for a in self.arrays:
            if a.missing_count:
                note = " (accepted: allow_missing)" if self.allow_missing else ""
                section(
                    f"array {a.path or '/'}: {a.missing_count} of {a.expected} chunks absent,"
                    f" reading as fill_value {a.fill_value}{note}",
                    a.missing,
                    a.missing_count,
                )
        for a in self.arrays:
            section(
                f"{a.path or '/'}: chunks present but NOT YET LISTED (the listing lags behind "
                f"writes; found by {self.unlisted_probes} HEADs in all)",
                a.unlisted,
                a.unlisted_count,
            )
        section("orphan keys (belong to no array or group)", self.orphans, self.orphan_count)
        section("stale consolidated metadata", self.stale_consolidated)
        lines.append("OK" if self.ok else "PROBLEMS FOUND")
        return "\n".join(lines)


def verify_store(
    store: Store,
    path: str = "",
    *,
    check_content: bool = True,
    allow_missing: bool = False,
    batch_size: int = 250,
    concurrency: int = 16,
    progress: ProgressCallback | None = None,
    progress_interval: float = 5.0,
    sample: int = 1000,
    probe_unlisted: bool = True,
) -> VerifyReport:
    """Check the hierarchy under ``path``; see the module docstring for what is checked.

    check_content: read every object of a SwiftStore and compare its MD5 with its ETag (other
        stores have no stored checksum to compare with; their structure is still checked).
    allow_missing: absent chunks (which read as fill_value) do not make the report fail.
    sample: at most this many names are kept per list of missing chunks and of orphans (the
        counts are always complete); memory stays flat however many keys there are.
    probe_unlisted: a HEAD for each chunk grid key the listing lacked, so chunks that exist
        but are not listed yet (Swift's listings lag behind writes) are reported apart
        (``unlisted``) from missing ones; the cost is one request per such key
        (``unlisted_probes``). False: absent from the listing counts as missing.
    """
    started = time.monotonic()
    before = cluster_counters()
    path = path.strip("/")
    report = VerifyReport(describe(store, path), allow_missing=allow_missing)
    try:
        _verify(
            store,
            path,
            report,
            check_content,
            batch_size,
            concurrency,
            sample,
            probe_unlisted,
            Progress("verify content", 0, interval=progress_interval, callback=progress),
        )
    finally:
        delta = counters_delta(before, cluster_counters())
        report.requests, report.retried = delta.get("requests", 0), delta.get("retries", 0)
        report.seconds = round(time.monotonic() - started, 3)
    log.info(
        "verify %s: %s (%.1f s)", report.location, "OK" if report.ok else "PROBLEMS", report.seconds
    )
    return report


def _verify(
    store: Store,
    path: str,
    report: VerifyReport,
    check_content: bool,
    batch_size: int,
    concurrency: int,
    sample: int,
    probe_unlisted: bool,
    progress: Progress,
) -> None:
    meta = discover_metadata(store, path, concurrency)
    found = parse_hierarchy(meta.docs)
    arrays: dict[str, ChunkPresence] = {}
    for node, spec in sorted(found.arrays.items()):
        try:
            arrays[node] = ChunkPresence(spec)
        except ValueError as exc:
            found.errors.append(
                (join(node, ZARR_JSON if spec.zarr_format == 3 else ZARRAY), str(exc))
            )
    scan = Scan(arrays, meta.known, sample)
    swift = swift_objects(store) if check_content else None
    window: list[ObjectInfo] = []
    for page in listing_pages(store, path):
        scan.add(page)
        if swift is not None:
            window += page
            if len(window) >= batch_size * CONTENT_WINDOW:
                _check_content(swift, window, report, batch_size, concurrency, progress)
                window = []
    if swift is not None:
        if window:
            _check_content(swift, window, report, batch_size, concurrency, progress)
        report.content_checked = True
        report.corrupt.sort()
    log.info("verify %s: %d keys listed", report.location, scan.keys)
    _late_metadata(store, scan, meta, concurrency)
    report.keys, report.bytes = scan.keys, scan.bytes
    report.metadata_errors += [f"{k}: {why}" for k, why in meta.unreadable]
    report.metadata_errors += [f"{k}: {why}" for k, why in found.errors]
    if not any(join(path, name) in meta.known for name in ROOT_DOCS):
        report.metadata_errors.append(
            f"{path or '/'}: no zarr.json, .zgroup or .zarray here: not a zarr hierarchy "
            f"({scan.keys} keys)"
        )
    report.groups = len(found.groups)
    for node, presence in arrays.items():
        spec = presence.spec
        check = ArrayCheck(
            node,
            spec.zarr_format,
            list(spec.shape),
            list(spec.grid),
            spec.fill_value,
            expected=presence.expected,
            present=presence.present,
            missing=presence.missing_keys(sample),
            missing_count=presence.missing,
        )
        if probe_unlisted and presence.missing:
            lacking = presence.missing_keys(presence.missing)
            report.unlisted_probes += len(lacking)
            present_keys = {info.key for info in head_keys(store, lacking, concurrency)}
            absent = [key for key in lacking if key not in present_keys]
            check.unlisted = sorted(present_keys)[:sample]
            check.unlisted_count = len(present_keys)
            check.missing, check.missing_count = absent[:sample], len(absent)
        report.arrays.append(check)
    report.orphans = sorted(scan.orphans)
    report.orphan_count = scan.orphan_count
    report.stale_consolidated = stale_consolidated(path, meta.docs, found)


def _late_metadata(store: Store, scan: Scan, meta: Docs, concurrency: int) -> None:
    """Metadata documents the listing showed but the walk of the hierarchy did not read: an
    array's own ``.zattrs`` is checked like any; a node document inside an array is reported
    (zarr does not nest nodes in arrays, so nothing can reach it)."""
    if scan.late_dropped:
        meta.unreadable.append(
            ("...", f"{scan.late_dropped} more metadata documents inside arrays, not read")
        )
    if not scan.late_meta:
        return
    late = sync(read_docs(store, scan.late_meta, concurrency, listed=True))
    meta.unreadable += late.unreadable
    for key, doc in sorted(late.docs.items()):
        node = dirname(key)
        owner = scan.array_at_or_above(node)
        if is_node_document(key) and owner is not None:
            meta.unreadable.append((key, f"a node document inside array {owner or '/'}"))
            continue
        if is_node_document(key):
            meta.unreadable.append((key, "listed, but not found when the hierarchy was read"))
            continue
        meta.docs[key] = doc  # .zattrs / .zmetadata: parse_hierarchy checks the JSON
    for key, why in parse_hierarchy({k: d for k, d in late.docs.items() if k in meta.docs}).errors:
        meta.unreadable.append((key, why))


# -- content (dask tasks) --------------------------------------------------------------------
@dataclass
class _ContentResult:
    objects: int = 0
    bytes: int = 0
    corrupt: list[str] = field(default_factory=list)


def _check_content(
    store: SwiftObjects,
    infos: list[ObjectInfo],
    report: VerifyReport,
    batch_size: int,
    concurrency: int,
    progress: Progress,
) -> None:
    """One window of the listing: its objects read in batches as dask tasks."""
    progress.total += len(infos)
    results = run_batches(
        check_content_batch,
        batched(infos, batch_size),
        store,
        concurrency,
        progress=progress,
        measure=lambda r: (r.objects, r.bytes),
    )
    for r in results:
        report.objects_read += r.objects
        report.bytes_read += r.bytes
        report.corrupt += r.corrupt


def check_content_batch(
    infos: Sequence[ObjectInfo], store: SwiftObjects, concurrency: int
) -> _ContentResult:
    """GET each object without the data path's MD5 retry loop and compare MD5 with ETag."""
    return sync(_check_objects(infos, store, concurrency))


async def _check_objects(
    infos: Sequence[ObjectInfo], store: SwiftObjects, concurrency: int
) -> _ContentResult:
    result = _ContentResult()
    limit = asyncio.Semaphore(concurrency)

    async def one(info: ObjectInfo) -> None:
        async with limit:
            got = await store.read_unchecked(info.key)
            if got is not None and is_md5(got[1]) and hashlib.md5(got[0]).hexdigest() != got[1]:
                got = await store.read_unchecked(info.key)  # again: was it the wire or the disk?
                if got is None:
                    result.objects += 1
                    result.corrupt.append(
                        f"{info.key}: content did not match its ETag (the "
                        "server has now quarantined it)"
                    )
                    return
        result.objects += 1
        if got is None:
            result.corrupt.append(
                f"{info.key}: listed, but the server answers 404 (quarantined or lost)"
            )
            return
        body, etag = got
        result.bytes += len(body)
        if is_md5(etag) and hashlib.md5(body).hexdigest() != etag:
            result.corrupt.append(f"{info.key}: content does not match its ETag {etag}")

    await asyncio.gather(*(one(i) for i in infos))
    return result
