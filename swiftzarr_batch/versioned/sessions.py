"""The sessions of a ``Repository``: ``ReadonlySession`` (one snapshot) and
``WritableSession`` (the branch's only writer until it commits; its commit is described in
``repository``'s module docstring)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Coroutine
from typing import TYPE_CHECKING, Any, Self, TypeVar

from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from swiftzarr_batch.versioned.errors import (
    CorruptRecordError,
    LeaseLostError,
    SessionClosedError,
    VersionedError,
)
from swiftzarr_batch.versioned.lease import BranchLease
from swiftzarr_batch.versioned.manifests import Change, MergeStats, merge_pieces
from swiftzarr_batch.versioned.records import (
    CHUNKS_DIR,
    DELETED_CONTENT_TYPE,
    SESSIONS_DIR,
    Head,
    Snapshot,
    content_id,
    decode,
    snapshot_key,
)
from swiftzarr_batch.versioned.stores import SessionStore, SnapshotStore, manifest_reader

if TYPE_CHECKING:
    from swiftzarr_batch.versioned.repository import Repository

log = logging.getLogger(__name__)

PROTO = default_buffer_prototype()
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on zarr's event loop thread (the one the stores' sessions use)."""
    return sync(coro)


class ReadonlySession:
    """One snapshot, read-only; ``.store`` is a zarr store of it."""

    def __init__(self, repo: Repository, snapshot: Snapshot) -> None:
        self.repo, self.snapshot = repo, snapshot
        self.store = SnapshotStore(repo.base.with_read_only(True), snapshot)

    @property
    def snapshot_id(self) -> str:
        """The id of the snapshot this session reads; it never changes, however the branch moves."""
        return self.snapshot.id

    def __repr__(self) -> str:
        return f"ReadonlySession({self.repo}, snapshot={self.snapshot.id})"


class WritableSession:
    """The only writer of a branch until it commits or closes (it holds the branch's lease).

    ``.store`` takes zarr, xarray (``ds.to_zarr(session.store)``) and dask writes; pickled
    copies write from workers. ``commit(message)`` runs here, once, after they all finished."""

    def __init__(
        self, repo: Repository, branch: str, head: Head, parent: Snapshot, lease: BranchLease
    ) -> None:
        self.repo, self.branch, self.head, self.lease = repo, branch, head, lease
        self.id = uuid.uuid4().hex
        self.store = SessionStore(repo.base, self.id, parent)
        self.parent = parent
        self.committed: str | None = None
        self.stats: MergeStats | None = None

    @property
    def snapshot_id(self) -> str:
        """The snapshot this session started from (the new one once committed)."""
        return self.committed or self.parent.id

    def __repr__(self) -> str:
        return f"WritableSession({self.repo}, branch={self.branch!r}, session={self.id})"

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def check(self) -> None:
        """Raise ``LeaseLostError`` if the heartbeat found the lease taken over (cheap, local:
        for long jobs to stop early; ``commit`` checks at the server anyway)."""
        if self.lease.lost:
            raise LeaseLostError(self.lease.lost)

    def close(self) -> None:
        """Give the branch up without committing (what was written becomes garbage for gc)."""
        if self.store.closed:
            return
        self.store.closed = True
        self.lease.stop_heartbeat()
        try:
            run(self.lease.release())
        except Exception as exc:
            log.warning(
                "could not release the lease of %s (it expires by itself): %s", self.branch, exc
            )

    def commit(self, message: str) -> str:
        """Make everything written in this session one snapshot and move the branch to it.

        Returns the new snapshot id. On any error before the head PUT the branch is unchanged
        and readers never see these writes; the session stays open (retry ``commit``)
        unless the lease was lost."""
        if self.store.closed:
            raise SessionClosedError(f"session {self.id} already committed or closed")
        snapshot_id = run(self._commit(message))
        self.committed = snapshot_id
        self.close()
        return snapshot_id

    async def _changes(self, seen: set[str]) -> AsyncIterator[Change]:
        base = self.repo.base
        container = await base.swift_container()
        own = base.listing_base + f"{CHUNKS_DIR}/{self.id}/"
        async for page in container.list_pages(own):
            for entry in page:
                key = entry["name"][len(own) :]
                if key in self.store.written:
                    seen.add(key)
                if entry.get("content_type", "").split(";")[0] == DELETED_CONTENT_TYPE:
                    yield key, None
                else:
                    yield key, (self.id, int(entry["bytes"]))

    async def _deleted_prefixes(self) -> set[str]:
        prefixes = set(self.store.deleted_prefixes)
        base = self.repo.base
        container = await base.swift_container()
        async for page in container.list_pages(base.listing_base + f"{SESSIONS_DIR}/{self.id}/"):
            for entry in page:
                key = entry["name"][len(base.listing_base) :]
                body = await base.get(key, PROTO)
                if body is None:
                    raise CorruptRecordError(f"{key} is listed but missing")
                prefixes.add(str(decode(body.to_bytes(), key)["prefix"]))
        return prefixes

    async def _commit(self, message: str) -> str:
        repo = self.repo
        # the merge reads each touched piece once, in order: no cache worth keeping
        parent_reader = manifest_reader(repo.base, self.parent, cache_pieces=1)
        prefixes = await self._deleted_prefixes()
        for attempt in range(4):
            seen: set[str] = set()
            pieces, stats = await merge_pieces(
                parent_reader, self._changes(seen), prefixes, repo.piece_entries, repo.save_piece
            )
            missing = self.store.written - seen
            if not missing:
                break
            # the container listing has not caught up with our own writes yet
            log.warning(
                "commit: %d written keys not listed yet (e.g. %s); listing again",
                len(missing),
                next(iter(missing)),
            )
            await asyncio.sleep(0.5 * (attempt + 1))
        else:
            raise VersionedError(
                f"commit of session {self.id}: {len(missing)} written keys never appeared in "
                "the container listing; nothing was committed (try commit() again later)"
            )
        self.stats = stats
        body = Snapshot.body(self.parent.id, time.time(), message, self.id, pieces)
        snapshot_id = content_id(body)
        await repo.put_new(snapshot_key(snapshot_id), body)
        log.info(
            "commit %s: %d keys, %d pieces written, %d kept",
            snapshot_id,
            stats.keys,
            stats.pieces_written,
            stats.pieces_kept,
        )
        await repo.move_head(self.branch, self.lease, snapshot_id, expect=self.parent.id)
        return snapshot_id
