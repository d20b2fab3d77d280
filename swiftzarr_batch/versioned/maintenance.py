"""Repository upkeep: ``collect_garbage`` (what ``Repository.gc`` runs) and ``export_snapshot``
(a plain zarr copy of one snapshot).

Garbage is every object no kept snapshot reaches: snapshots off every branch's and tag's
ancestry (rolled back, or a commit that lost a head race), manifest pieces and chunk objects
only those reference, objects of sessions that never committed, and sessions' delete records.
Only objects older than the grace period are deleted, because a writable session's objects are
unreferenced until it commits: the grace period must be longer than the longest session. The
reachable set is computed again after the listing, so a commit landing meanwhile keeps its
objects.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype

from swiftzarr_batch.store.keys import is_metadata_key
from swiftzarr_batch.store.objects import swift_objects
from swiftzarr_batch.versioned.errors import CorruptRecordError
from swiftzarr_batch.versioned.records import (
    CHUNKS_DIR,
    MANIFESTS_DIR,
    SESSIONS_DIR,
    SNAPSHOTS_DIR,
    chunk_key,
    piece_key,
    snapshot_key,
)
from swiftzarr_batch.versioned.stores import manifest_reader

if TYPE_CHECKING:
    from swiftzarr_batch.versioned.repository import Repository

log = logging.getLogger(__name__)
PROTO = default_buffer_prototype()
COPY_CONCURRENCY = 32


@dataclass
class GCReport:
    """What ``gc`` deleted (keys relative to the repository) and what it kept."""

    deleted: list[str] = field(default_factory=list)
    kept_snapshots: int = 0
    kept_objects: int = 0

    @property
    def deleted_snapshots(self) -> list[str]:
        """Ids of the snapshots deleted (or that a dry run would delete): rolled back, or commits
        that lost a head race."""
        return [k.split("/", 1)[1] for k in self.deleted if k.startswith(f"{SNAPSHOTS_DIR}/")]

    def counts(self) -> dict[str, int]:
        """How many objects were deleted per kind (``snapshots``, ``manifests``, ``chunks``,
        ``sessions``)."""
        out: dict[str, int] = {}
        for key in self.deleted:
            kind = key.split("/", 1)[0]
            out[kind] = out.get(kind, 0) + 1
        return out


async def reachable(repo: Repository) -> tuple[set[str], set[str]]:
    """Keys (relative to the repository) of every snapshot, piece and chunk object that some
    branch or tag reaches, and the ids of those snapshots.

    Holds one key per referenced object in memory (about 100 bytes each)."""
    roots = {*(await repo.refs("branch")).values(), *(await repo.refs("tag")).values()}
    snapshots: set[str] = set()
    keys: set[str] = set()
    pieces_done: set[str] = set()
    todo = list(roots)
    while todo:
        sid = todo.pop()
        if sid in snapshots:
            continue
        snapshots.add(sid)
        snap = await repo.read_snapshot(sid)
        keys.add(snapshot_key(sid))
        reader = manifest_reader(repo.base, snap)
        for ref in snap.pieces:
            if ref.id in pieces_done:
                continue
            pieces_done.add(ref.id)
            keys.add(piece_key(ref.id))
            for key, (session, _) in (await reader.piece(ref)).items():
                keys.add(chunk_key(session, key))
        if snap.parent is not None:
            todo.append(snap.parent)
    return keys, snapshots


def _modified(entry: dict[str, object]) -> float:
    text = str(entry.get("last_modified", ""))
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return time.time()  # unknown age: treat as new, never delete


async def collect_garbage(repo: Repository, older_than: float, dry_run: bool = False) -> GCReport:
    """What ``Repository.gc`` runs (see the module docstring): deletes chunks first and snapshots
    last, so an interrupted run leaves no snapshot whose objects are gone. ``ValueError`` for a
    negative ``older_than``; an object of unknown age is kept."""
    if older_than < 0:
        raise ValueError(f"older_than must be >= 0 seconds, got {older_than}")
    keep, snapshots = await reachable(repo)
    container = await repo.base.swift_container()
    base = repo.base.listing_base
    cutoff = time.time() - older_than
    candidates: list[str] = []
    for top in (SNAPSHOTS_DIR, MANIFESTS_DIR, CHUNKS_DIR, SESSIONS_DIR):
        async for page in container.list_pages(f"{base}{top}/"):
            for entry in page:
                key = str(entry["name"])[len(base) :]
                if key not in keep and _modified(entry) < cutoff:
                    candidates.append(key)
    # a commit that landed while we listed: its objects are reachable now
    keep_now, snapshots = await reachable(repo)
    doomed = [k for k in candidates if k not in keep_now]
    report = GCReport(sorted(doomed), len(snapshots), len(keep_now))
    if doomed and not dry_run:
        # chunk objects first, snapshots last: an interrupted gc never leaves a snapshot whose
        # pieces are gone while the snapshot itself still looks alive to `log` by id
        order = {CHUNKS_DIR: 0, SESSIONS_DIR: 0, MANIFESTS_DIR: 1, SNAPSHOTS_DIR: 2}
        doomed.sort(key=lambda k: order[k.split("/", 1)[0]])
        await container.bulk_delete(base + k for k in doomed)
    log.info(
        "gc %s: %d objects %s, %d snapshots kept",
        repo,
        len(doomed),
        "would be deleted" if dry_run else "deleted",
        len(snapshots),
    )
    return report


@dataclass
class ExportReport:
    keys: int = 0
    bytes: int = 0
    server_side: bool = False


async def export_snapshot(repo: Repository, snapshot_id: str, dest: Store) -> ExportReport:
    """Copy every key of the snapshot to ``dest`` under its plain zarr name: chunks first,
    metadata last (a reader of ``dest`` never meets metadata before its data). A Swift
    destination the same token can write gets server-side copies (no bytes through here)."""
    snap = await repo.read_snapshot(snapshot_id)
    reader = manifest_reader(repo.base, snap)
    dest_objects = swift_objects(dest)
    source = swift_objects(repo.base)
    assert source is not None
    route = dest_objects.copy_source(source) if dest_objects is not None else None
    report = ExportReport(server_side=route is not None)
    if dest_objects is not None:
        await dest_objects.ensure_container()
    sem = asyncio.Semaphore(COPY_CONCURRENCY)

    async def copy(key: str, session: str, size: int) -> None:
        async with sem:
            src = chunk_key(session, key)
            if dest_objects is not None and route is not None:
                if await dest_objects.copy_from(route, src, key) is None:
                    raise CorruptRecordError(f"{src} of snapshot {snapshot_id} is missing")
            else:
                buf = await repo.base.get(src, PROTO)
                if buf is None:
                    raise CorruptRecordError(f"{src} of snapshot {snapshot_id} is missing")
                await dest.set(key, buf)
            report.keys += 1
            report.bytes += size

    metadata: list[tuple[str, str, int]] = []
    batch: list[Awaitable[None]] = []
    async for key, (session, size) in reader.entries(""):
        if is_metadata_key(key):
            metadata.append((key, session, size))
            continue
        batch.append(copy(key, session, size))
        if len(batch) >= 1000:
            await asyncio.gather(*batch)
            batch = []
    await asyncio.gather(*batch)
    metadata.sort(key=lambda m: -m[0].count("/"))  # deepest nodes before their parents
    await asyncio.gather(*(copy(*m) for m in metadata))
    return report
