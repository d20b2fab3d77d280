"""Segments no manifest points at: what a killed large write leaves, found and deleted.

Why: a large object is written segments first, manifest last (``large_objects.put_large``,
``segmented_upload``), so a writer killed before its manifest (``kill -9``, a node lost, a
walltime reached) leaves segments in ``<container>_segments`` that nothing references and
nothing will ever delete. Failures the writer sees are cleaned up by the writer; these cannot
be. This module finds them without trusting anything but the server: segments are grouped by
the upload that wrote them (``<name>/slo/<time>/...``: one write of one object), and a group is
an orphan only if the object's current manifest (read from the server) points at none of its
segments and the group is older than ``older_than`` seconds (an upload still in progress has a
recent group and no manifest yet). The listing streams: memory holds one group and one batch of
names to delete, whatever the container holds.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from swiftzarr_batch.swift.container import SwiftContainer
from swiftzarr_batch.swift.large_objects import segment_container, segments_of

__all__ = ["OrphanReport", "delete_orphan_segments", "upload_of"]

log = logging.getLogger(__name__)

DELETE_BATCH = 1_000  # segment names per bulk delete


@dataclass
class OrphanReport:
    """What ``delete_orphan_segments`` found: uploads (groups) and segments left by dead
    writers, their bytes, and whether they were deleted (not with ``dry_run``)."""

    uploads: int = 0
    segments: int = 0
    bytes: int = 0
    deleted: bool = False
    examples: list[str] = field(default_factory=list)  # a few upload prefixes, for the user


def upload_of(segment: str) -> tuple[str, str, float] | None:
    """(object name, upload prefix, upload time) of a segment name ``<name>/slo/<time>/...``;
    None for a name that is not one of ours (another tool's segments are never touched)."""
    head, sep, rest = segment.rpartition("/slo/")
    if not sep or not head:
        return None
    stamp = rest.split("/", 1)[0]
    try:
        when = float(stamp)
    except ValueError:
        return None
    return head, f"{head}/slo/{stamp}/", when


async def _groups(
    segments: SwiftContainer, prefix: str
) -> AsyncIterator[tuple[str, str, float, list[tuple[str, int]]]]:
    """Consecutive listing entries of one upload, as (name, upload prefix, time, segments)."""
    current: tuple[str, str, float] | None = None
    members: list[tuple[str, int]] = []
    async for page in segments.list_pages(prefix):
        for entry in page:
            found = upload_of(entry["name"])
            if found is None:
                continue
            if current is not None and found[1] != current[1]:
                yield (*current, members)
                members = []
            current = found
            members.append((entry["name"], int(entry.get("bytes", 0))))
    if current is not None:
        yield (*current, members)


async def delete_orphan_segments(
    container: SwiftContainer,
    prefix: str = "",
    *,
    older_than: float = 86400.0,
    dry_run: bool = False,
) -> OrphanReport:
    """Delete (or, with ``dry_run``, only count) the segments under ``prefix`` in ``container``'s
    segment container that no current manifest in ``container`` points at and whose upload is
    older than ``older_than`` seconds (see the module docstring)."""
    segments = SwiftContainer(container.session, segment_container(container.name))
    report = OrphanReport()
    if not await segments.exists():
        return report
    cutoff = time.time() - older_than
    referenced: tuple[str, set[str]] = ("", set())  # the last object's manifest, read once
    batch: list[str] = []
    async for name, upload, when, members in _groups(segments, prefix):
        if when > cutoff:
            continue  # possibly still being written
        if referenced[0] != name:
            paths = (p.lstrip("/").partition("/") for p in await segments_of(container, name))
            referenced = (name, {obj for cont, _, obj in paths if cont == segments.name})
        if any(member in referenced[1] for member, _ in members):
            continue  # the object's manifest uses this upload
        report.uploads += 1
        report.segments += len(members)
        report.bytes += sum(size for _, size in members)
        if len(report.examples) < 5:
            report.examples.append(upload)
        if not dry_run:
            batch += [member for member, _ in members]
            if len(batch) >= DELETE_BATCH:
                await segments.bulk_delete(batch)
                batch = []
    if batch:
        await segments.bulk_delete(batch)
    report.deleted = not dry_run and report.segments > 0
    log.info(
        "%s %d orphaned segments (%d bytes) of %d uploads under %s/%s",
        "would delete" if dry_run else "deleted",
        report.segments,
        report.bytes,
        report.uploads,
        segments.name,
        prefix,
    )
    return report
