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

from swiftzarr_batch.errors import SwiftZarrError
from swiftzarr_batch.jobs.counters import cluster_counters, counters_delta
from swiftzarr_batch.jobs.runner import (
    Progress,
    ProgressCallback,
    batched,
    format_bytes,
    run_batches,
)
from swiftzarr_batch.store.hierarchy import parse_hierarchy, stale_consolidated
from swiftzarr_batch.store.keys import (
    ZARR_JSON,
    ZARRAY,
    ZGROUP,
    is_bookkeeping_key,
    is_metadata_key,
    join,
)
from swiftzarr_batch.store.objects import SwiftObjects, is_md5, swift_objects
from swiftzarr_batch.transfer.objects import ObjectInfo, describe, list_objects, read_with_info

log = logging.getLogger(__name__)

__all__ = ["ArrayCheck", "VerifyReport", "verify_store"]

ROOT_DOCS = (ZARR_JSON, ZGROUP, ZARRAY)


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


@dataclass
class VerifyReport:
    """What ``verify_store`` found; ``ok`` says whether anything is wrong."""

    location: str
    arrays: list[ArrayCheck] = field(default_factory=list)
    groups: int = 0
    metadata_errors: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
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

    @property
    def missing_chunks(self) -> int:
        return sum(len(a.missing) for a in self.arrays)

    @property
    def ok(self) -> bool:
        return not (
            self.metadata_errors
            or self.corrupt
            or self.orphans
            or self.stale_consolidated
            or (self.missing_chunks and not self.allow_missing)
        )

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "missing_chunks": self.missing_chunks, "ok": self.ok}

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

        def section(title: str, items: Sequence[str]) -> None:
            if items:
                lines.append(f"{title} ({len(items)}):")
                lines.extend(f"  {i}" for i in items[:max_items])
                if len(items) > max_items:
                    lines.append(f"  ... and {len(items) - max_items} more")

        section("invalid metadata", self.metadata_errors)
        section("CORRUPT objects (content does not match its ETag)", self.corrupt)
        for a in self.arrays:
            if a.missing:
                note = " (accepted: allow_missing)" if self.allow_missing else ""
                section(
                    f"array {a.path or '/'}: {len(a.missing)} of {a.expected} chunks absent,"
                    f" reading as fill_value {a.fill_value}{note}",
                    a.missing,
                )
        section("orphan keys (belong to no array or group)", self.orphans)
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
) -> VerifyReport:
    """Check the hierarchy under ``path``; see the module docstring for what is checked.

    check_content: read every object of a SwiftStore and compare its MD5 with its ETag (other
        stores have no stored checksum to compare with; their structure is still checked).
    allow_missing: absent chunks (which read as fill_value) do not make the report fail.
    """
    started = time.monotonic()
    before = cluster_counters()
    path = path.strip("/")
    report = VerifyReport(describe(store, path), allow_missing=allow_missing)
    try:
        infos = sync(_listing(store, path))
        report.keys, report.bytes = len(infos), sum(i.size or 0 for i in infos.values())
        log.info("verify %s: %d keys listed", report.location, len(infos))
        _check_structure(store, path, infos, report, concurrency)
        swift = swift_objects(store)
        if check_content and swift is not None and infos:
            _check_content(
                swift,
                list(infos.values()),
                report,
                batch_size,
                concurrency,
                Progress(
                    "verify content", len(infos), interval=progress_interval, callback=progress
                ),
            )
    finally:
        delta = counters_delta(before, cluster_counters())
        report.requests, report.retried = delta.get("requests", 0), delta.get("retries", 0)
        report.seconds = round(time.monotonic() - started, 3)
    log.info(
        "verify %s: %s (%.1f s)", report.location, "OK" if report.ok else "PROBLEMS", report.seconds
    )
    return report


async def _listing(store: Store, path: str) -> dict[str, ObjectInfo]:
    return {info.key: info async for info in list_objects(store, path)}


def _check_structure(
    store: Store, path: str, infos: dict[str, ObjectInfo], report: VerifyReport, concurrency: int
) -> None:
    meta_keys = [k for k in infos if is_metadata_key(k) and not is_bookkeeping_key(k)]
    docs, unreadable = sync(_read_all(store, meta_keys, concurrency))
    report.metadata_errors += [f"{k}: {why}" for k, why in unreadable]
    found = parse_hierarchy(docs)
    report.metadata_errors += [f"{k}: {why}" for k, why in found.errors]
    if not any(join(path, name) in infos for name in ROOT_DOCS):
        report.metadata_errors.append(
            f"{path or '/'}: no zarr.json, .zgroup or .zarray here: not a zarr hierarchy "
            f"({len(infos)} keys)"
        )
    report.groups = len(found.groups)
    claimed: set[str] = set(meta_keys)
    for node, spec in sorted(found.arrays.items()):
        check = ArrayCheck(
            node,
            spec.zarr_format,
            list(spec.shape),
            list(spec.grid),
            spec.fill_value,
            expected=spec.nchunks,
            present=0,
        )
        for key in spec.chunk_keys():
            if key in infos:
                check.present += 1
                claimed.add(key)
            else:
                check.missing.append(key)
        report.arrays.append(check)
    report.orphans = sorted(k for k in infos if k not in claimed and not is_bookkeeping_key(k))
    report.stale_consolidated = stale_consolidated(path, docs, found)


async def _read_all(
    store: Store,
    keys: list[str],
    concurrency: int,
) -> tuple[dict[str, bytes], list[tuple[str, str]]]:
    limit = asyncio.Semaphore(concurrency)
    docs: dict[str, bytes] = {}
    failed: list[tuple[str, str]] = []

    async def one(key: str) -> None:
        async with limit:
            try:
                got = await read_with_info(store, key)
            except SwiftZarrError as exc:  # e.g. IntegrityError: reported, the rest goes on
                failed.append((key, f"unreadable: {type(exc).__name__}: {exc}"))
                return
        if got is None:
            failed.append((key, "listed but not readable (404)"))
        else:
            docs[key] = got[0]

    await asyncio.gather(*(one(k) for k in keys))
    return docs, failed


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
    results = run_batches(
        check_content_batch,
        batched(infos, batch_size),
        store,
        concurrency,
        progress=progress,
        measure=lambda r: (r.objects, r.bytes),
    )
    report.content_checked = True
    for r in results:
        report.objects_read += r.objects
        report.bytes_read += r.bytes
        report.corrupt += r.corrupt
    report.corrupt.sort()


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
