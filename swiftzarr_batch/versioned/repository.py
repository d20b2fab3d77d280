"""``Repository``: versioned zarr datasets on plain Swift (the model is in the docs'
"Versioned datasets" section; the records in ``records``, the lease in ``lease``).

A writable session writes only objects no snapshot references (``stores.SessionStore``). Its
commit (1) lists the session's own objects, (2) merges them into the parent's manifest pieces,
writing only the touched pieces, (3) PUTs the snapshot record (content-addressed), (4) checks
the lease's fence and that the branch still points to the parent, (5) moves the head with one
PUT and (6) reads it back. A reader resolves a branch, tag, snapshot id or time to one snapshot
record and from then on reads only objects that record reaches, all written before the head
moved and never rewritten: it sees the whole commit or none of it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype

from swiftzarr_batch.store.objects import SwiftObjects
from swiftzarr_batch.store.swift_store import SwiftStore
from swiftzarr_batch.versioned.errors import (
    BranchMovedError,
    CommitLostError,
    RefNotFoundError,
    RepositoryNotFoundError,
    VersionedError,
)
from swiftzarr_batch.versioned.lease import BranchLease, owner_name
from swiftzarr_batch.versioned.maintenance import (
    ExportReport,
    GCReport,
    collect_garbage,
    export_snapshot,
)
from swiftzarr_batch.versioned.manifests import (
    DEFAULT_PIECE_ENTRIES,
    ManifestReader,
)
from swiftzarr_batch.versioned.records import (
    FORMAT,
    FORMAT_VERSION,
    REFS_DIR,
    REPO_KEY,
    Head,
    LogEntry,
    Snapshot,
    branch_key,
    check_id,
    check_ref_name,
    content_id,
    decode,
    encode,
    piece_key,
    snapshot_key,
    tag_key,
)
from swiftzarr_batch.versioned.sessions import ReadonlySession, WritableSession, run
from swiftzarr_batch.versioned.stores import manifest_reader

log = logging.getLogger(__name__)

PROTO = default_buffer_prototype()


@dataclass(frozen=True)
class Diff:
    """Keys that differ between two snapshots (``Repository.diff``), each list sorted."""

    added: list[str]
    removed: list[str]
    modified: list[str]

    @property
    def changed(self) -> list[str]:
        """Every key that differs, in one sorted list."""
        return sorted([*self.added, *self.removed, *self.modified])


class Repository:
    """A versioned dataset at ``swift://container/prefix`` (see the module docstring)."""

    def __init__(
        self, base: SwiftStore, *, settle: float = 1.0, piece_entries: int = DEFAULT_PIECE_ENTRIES
    ) -> None:
        self.base, self.settle, self.piece_entries = base, settle, piece_entries
        self.objects = SwiftObjects(base)

    def __repr__(self) -> str:
        return f"Repository({self.base})"

    def __str__(self) -> str:
        return str(self.base)

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    def open(
        cls, container: str, prefix: str = "", *, settle: float = 1.0, **store_options: Any
    ) -> Repository:
        """Open an existing repository; ``RepositoryNotFoundError`` if there is none."""
        return cls.from_store(SwiftStore(container, prefix, **store_options), settle=settle)

    @classmethod
    def open_or_create(
        cls,
        container: str,
        prefix: str = "",
        *,
        settle: float = 1.0,
        piece_entries: int = DEFAULT_PIECE_ENTRIES,
        **store_options: Any,
    ) -> Repository:
        """Open the repository, or create it (with an empty first snapshot on ``main``)."""
        base = SwiftStore(container, prefix, **store_options)
        return cls.from_store(base, settle=settle, create=True, piece_entries=piece_entries)

    @classmethod
    def from_store(
        cls,
        base: SwiftStore,
        *,
        settle: float = 1.0,
        create: bool = False,
        piece_entries: int = DEFAULT_PIECE_ENTRIES,
    ) -> Repository:
        """Open (or with ``create``, create) the repository at ``base``'s prefix.
        ``RepositoryNotFoundError`` if there is none and ``create`` is false; ``VersionedError`` if
        ``repo.json`` is of another format or version."""
        return run(cls._open(base, settle, create, piece_entries))

    @classmethod
    async def _open(
        cls, base: SwiftStore, settle: float, create: bool, piece_entries: int
    ) -> Repository:
        if piece_entries < 2:
            raise ValueError(f"piece_entries must be at least 2, got {piece_entries}")
        body = await SwiftObjects(base).read_newest(REPO_KEY)
        if body is None:
            if not create:
                raise RepositoryNotFoundError(f"no versioned repository at {base}")
            await SwiftObjects(base).ensure_container()
            doc = {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "piece_entries": piece_entries,
                "created": time.time(),
            }
            repo = cls(base, settle=settle, piece_entries=piece_entries)
            first = Snapshot.body(None, time.time(), "Repository initialized", "", [])
            first_id = content_id(first)
            await repo.put_new(snapshot_key(first_id), first)
            await repo.put_new(
                branch_key("main"), Head(first_id, 0, time.time(), owner_name()).body()
            )
            if await repo.put_new(REPO_KEY, encode(doc)):
                log.info("created versioned repository %s", base)
            body = await SwiftObjects(base).read_newest(REPO_KEY)
            assert body is not None
        doc = decode(body, f"{base}/{REPO_KEY}")
        if doc.get("format") != FORMAT or doc.get("version") != FORMAT_VERSION:
            raise VersionedError(f"{base}: not a {FORMAT} v{FORMAT_VERSION} repository ({doc})")
        return cls(base, settle=settle, piece_entries=int(doc["piece_entries"]))

    # -- low-level records ------------------------------------------------------------------
    async def put_new(self, key: str, body: bytes) -> bool:
        """Create ``key`` unless it exists (False then): for records that are never rewritten."""
        container = await self.base.swift_container()
        return await container.put(self.base.object_name(key), body, if_none_match=True)

    async def put(self, key: str, body: bytes) -> None:
        """Write ``key`` (relative to the repository), overwriting it: heads, leases and manifest
        pieces (whose names are their content) go this way."""
        await self.base.set(key, PROTO.buffer.from_bytes(body))

    async def save_piece(self, piece_id: str, body: bytes) -> None:
        """Store a manifest piece under its id; a piece already there has the same body, so
        rewriting it is harmless."""
        await self.put(piece_key(piece_id), body)

    async def read_newest(self, key: str) -> bytes | bytearray | None:
        """``key``'s body from the newest replica (``X-Newest``), or None on a 404: for records that
        are rewritten (heads, leases, tags)."""
        return await self.objects.read_newest(key)

    async def read_head(self, branch: str) -> Head:
        """Where ``branch`` points now (newest replica); ``RefNotFoundError`` if there is no such
        branch."""
        key = branch_key(branch)
        body = await self.read_newest(key)
        if body is None:
            raise RefNotFoundError(f"no branch {branch!r} in {self}")
        return Head.parse(body, key)

    async def read_snapshot(self, snapshot_id: str) -> Snapshot:
        """The snapshot record, checked against its id; ``RefNotFoundError`` if it is absent,
        ``CorruptRecordError`` if it does not match."""
        body = await self.base.get(snapshot_key(snapshot_id), PROTO)
        if body is None:
            raise RefNotFoundError(f"no snapshot {snapshot_id} in {self}")
        return Snapshot.parse(body.to_bytes(), snapshot_id)

    async def read_tag(self, name: str) -> str:
        """The snapshot id that tag ``name`` names; ``RefNotFoundError`` if there is no such tag."""
        body = await self.read_newest(tag_key(name))
        if body is None:
            raise RefNotFoundError(f"no tag {name!r} in {self}")
        return check_id(str(decode(body, tag_key(name)).get("snapshot")))

    async def move_head(
        self, branch: str, lease: BranchLease, snapshot_id: str, *, expect: str | None
    ) -> None:
        """Move ``branch`` to ``snapshot_id`` under ``lease``: the fence check, one PUT, a
        read-back. ``expect``: the head must still be there (None: any head)."""
        await lease.check()
        head = await self.read_head(branch)
        if expect is not None and head.snapshot != expect:
            raise BranchMovedError(
                f"branch {branch!r} moved to {head.snapshot} (fencing number {head.fence}) "
                f"since this session started from {expect}; nothing was committed"
            )
        if head.fence > lease.fence:
            raise BranchMovedError(
                f"branch {branch!r} was moved under a newer lease (fencing number {head.fence} "
                f"> ours {lease.fence}); nothing was committed"
            )
        await self.put(
            branch_key(branch), Head(snapshot_id, lease.fence, time.time(), lease.owner).body()
        )
        await asyncio.sleep(self.settle)  # let a racing head PUT land before we look
        after = await self.read_head(branch)
        if after.snapshot != snapshot_id:
            raise CommitLostError(
                f"branch {branch!r}: our head move to {snapshot_id} was overwritten by "
                f"{after.writer}'s move to {after.snapshot}; snapshot {snapshot_id} is intact "
                "and readable by its id (tag it or roll back to it to keep it)"
            )

    async def take_lease(self, branch: str, ttl: float) -> tuple[BranchLease, Head]:
        """Take ``branch``'s lease (``LeaseHeldError`` if another writer holds it) and return it
        with the head read after taking it, the one a session must start from."""
        head = await self.read_head(branch)
        lease = BranchLease(branch, self.read_newest, self.put, run, ttl=ttl, settle=self.settle)
        await lease.take(head.fence)
        return lease, await self.read_head(branch)

    # -- sessions ---------------------------------------------------------------------------
    def writable_session(
        self, branch: str = "main", *, lease_ttl: float = 300.0
    ) -> WritableSession:
        """Take the branch's lease and start a session on its head (``LeaseHeldError`` when
        another writer has it). Use it as a context manager, or ``commit``/``close`` it."""
        lease, head = run(self.take_lease(check_ref_name(branch), lease_ttl))
        try:
            parent = run(self.read_snapshot(head.snapshot))
        except BaseException:
            run(lease.release())
            raise
        lease.start_heartbeat()
        return WritableSession(self, branch, head, parent, lease)

    def readonly_session(
        self,
        branch: str | None = None,
        *,
        snapshot_id: str | None = None,
        tag: str | None = None,
        as_of: datetime | None = None,
    ) -> ReadonlySession:
        """A snapshot: a branch's head, a snapshot id, a tag, or the branch's newest snapshot
        committed at or before ``as_of`` (an aware datetime; default branch ``main``)."""
        if (
            sum(x is not None for x in (snapshot_id, tag)) + (branch is not None and as_of is None)
            > 1
        ):
            raise ValueError("give one of branch, snapshot_id, tag (as_of goes with a branch)")
        return ReadonlySession(self, run(self._resolve(branch, snapshot_id, tag, as_of)))

    async def _resolve(
        self, branch: str | None, snapshot_id: str | None, tag: str | None, as_of: datetime | None
    ) -> Snapshot:
        if snapshot_id is not None:
            return await self.read_snapshot(check_id(snapshot_id))
        if tag is not None:
            return await self.read_snapshot(await self.read_tag(tag))
        head = await self.read_head(branch or "main")
        snapshot = await self.read_snapshot(head.snapshot)
        if as_of is None:
            return snapshot
        if as_of.tzinfo is None:
            raise ValueError("as_of must be timezone-aware (e.g. datetime.now(UTC))")
        limit = as_of.timestamp()
        while snapshot.time > limit:
            if snapshot.parent is None:
                raise RefNotFoundError(
                    f"branch {branch or 'main'!r} has no snapshot as old as {as_of.isoformat()}"
                )
            snapshot = await self.read_snapshot(snapshot.parent)
        return snapshot

    def resolve(self, ref: str) -> str:
        """A snapshot id from a snapshot id, a tag or a branch name (in that order)."""
        return run(self.ref_id(ref))

    async def ref_id(self, ref: str) -> str:
        """The async form of ``resolve``: 32 hex digits are always taken as a snapshot id, then a
        tag of that name, then a branch; ``RefNotFoundError`` if none."""
        if len(ref) == 32 and all(c in "0123456789abcdef" for c in ref):
            return (await self.read_snapshot(ref)).id
        if await self.read_newest(tag_key(ref)) is not None:
            return await self.read_tag(ref)
        return (await self.read_head(ref)).snapshot

    # -- history ----------------------------------------------------------------------------
    def log(self, branch: str = "main", *, limit: int | None = None) -> list[LogEntry]:
        """The branch's snapshots, newest first (id, parent, message, time)."""

        async def go() -> list[LogEntry]:
            out: list[LogEntry] = []
            next_id: str | None = (await self.read_head(branch)).snapshot
            while next_id is not None and (limit is None or len(out) < limit):
                snap = await self.read_snapshot(next_id)
                out.append(
                    LogEntry(snap.id, snap.parent, snap.message, snap.written_at, snap.key_count)
                )
                next_id = snap.parent
            return out

        return run(go())

    def branches(self) -> dict[str, str]:
        """Every branch with the snapshot it points to."""
        return run(self.refs("branch"))

    def tags(self) -> dict[str, str]:
        """Every tag with the snapshot it names (one listing, then one read per tag)."""
        return run(self.refs("tag"))

    async def refs(self, kind: str) -> dict[str, str]:
        """Every branch or tag (``kind``: ``"branch"`` or ``"tag"``) with its snapshot id: one
        listing of ``refs/``, then each record read from the newest replica."""
        container = await self.base.swift_container()
        base = self.base.listing_base + f"{REFS_DIR}/{kind}."
        names = [
            e["name"][len(base) : -len(".json")]
            async for page in container.list_pages(base)
            for e in page
        ]
        if kind == "branch":
            return {n: (await self.read_head(n)).snapshot for n in names}
        return {n: await self.read_tag(n) for n in names}

    def create_branch(self, name: str, snapshot_id: str) -> None:
        """A new branch pointing at ``snapshot_id`` (``VersionedError`` if it exists)."""

        async def go() -> None:
            await self.read_snapshot(check_id(snapshot_id))
            head = Head(snapshot_id, 0, time.time(), owner_name())
            if not await self.put_new(branch_key(name), head.body()):
                raise VersionedError(f"branch {name!r} already exists in {self}")

        run(go())

    def tag(self, name: str, snapshot_id: str) -> None:
        """Name a snapshot for good (tags never move; ``VersionedError`` if it exists)."""

        async def go() -> None:
            await self.read_snapshot(check_id(snapshot_id))
            body = encode({"snapshot": snapshot_id, "time": time.time()})
            if not await self.put_new(tag_key(name), body):
                raise VersionedError(f"tag {name!r} already exists in {self}")
            await asyncio.sleep(self.settle)
            if await self.read_tag(name) != snapshot_id:
                raise VersionedError(f"tag {name!r} was created by another writer at once")

        run(go())

    def rollback(self, branch: str, snapshot_id: str, *, lease_ttl: float = 60.0) -> str:
        """Point ``branch`` back at ``snapshot_id`` with one head PUT, under the lease.
        Returns the snapshot the branch pointed to before (snapshots after it stay readable
        by id until ``gc`` removes them)."""

        async def go() -> str:
            target = await self.read_snapshot(check_id(snapshot_id))
            lease, head = await self.take_lease(check_ref_name(branch), lease_ttl)
            try:
                await self.move_head(branch, lease, target.id, expect=head.snapshot)
            finally:
                await lease.release()
            log.info("branch %s rolled back from %s to %s", branch, head.snapshot, target.id)
            return head.snapshot

        return run(go())

    def diff(self, a: str, b: str) -> Diff:
        """Keys added, removed and modified from snapshot ``a`` to snapshot ``b`` (ids, tags or
        branches). Pieces both share are skipped unread."""

        async def go() -> Diff:
            sa = await self.read_snapshot(await self.ref_id(a))
            sb = await self.read_snapshot(await self.ref_id(b))
            shared = {p.id for p in sa.pieces} & {p.id for p in sb.pieces}
            left = _entries(manifest_reader(self.base, sa), shared)
            right = _entries(manifest_reader(self.base, sb), shared)
            added: list[str] = []
            removed: list[str] = []
            modified: list[str] = []
            x, y = await anext(left, None), await anext(right, None)
            while x is not None or y is not None:
                if y is None or (x is not None and x[0] < y[0]):
                    assert x is not None
                    removed.append(x[0])
                    x = await anext(left, None)
                elif x is None or y[0] < x[0]:
                    added.append(y[0])
                    y = await anext(right, None)
                else:
                    if x[1] != y[1]:
                        modified.append(x[0])
                    x, y = await anext(left, None), await anext(right, None)
            return Diff(added, removed, modified)

        return run(go())

    # -- upkeep -----------------------------------------------------------------------------
    def gc(self, older_than: float = 7 * 86400, *, dry_run: bool = False) -> GCReport:
        """Delete every object no branch or tag reaches (their ancestry included) that is older
        than ``older_than`` seconds; returns what was deleted. The grace period must exceed
        the longest writable session: until it commits, its objects are unreferenced."""
        return run(collect_garbage(self, older_than, dry_run))

    def export(self, snapshot_id: str, dest: Store) -> ExportReport:
        """Copy one snapshot (id, tag or branch) to ``dest`` as a plain zarr hierarchy (Swift
        server-side copies where the same token can write ``dest``)."""

        async def go() -> ExportReport:
            return await export_snapshot(self, await self.ref_id(snapshot_id), dest)

        return run(go())


async def _entries(reader: ManifestReader, skip: set[str]) -> AsyncIterator[tuple[str, Any]]:
    for ref in reader.pieces:
        if ref.id in skip:
            continue
        for item in (await reader.piece(ref)).items():
            yield item
