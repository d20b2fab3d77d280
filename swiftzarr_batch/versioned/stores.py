"""The zarr stores of a repository: ``SnapshotStore`` (read-only, one snapshot) and
``SessionStore`` (a writable session's view: its own writes over its parent snapshot).

Both are plain ``zarr.abc.store.Store``s over a ``SwiftStore`` opened at the repository's
prefix, and both pickle small (the base store's URL and token, the snapshot's piece list, the
session id), so dask workers read and write through them.

A session writes key ``k`` to ``chunks/<session>/<k>``: a name no snapshot references yet and
that the session alone writes, derived from (session, key) so the committing client finds every
write by listing ``chunks/<session>/`` whichever process made it. A deletion is an empty
object with the "deleted" content type under the same name, so of a write and a delete of one
key the later wins, as one atomic PUT. Deleting a whole directory (``delete_dir``, zarr's
``mode="w"``) records the prefix under ``sessions/<session>/``; the commit drops every parent
key under it that the session did not write again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

from zarr.abc.store import ByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype

from swiftzarr_batch.errors import ReadOnlyError
from swiftzarr_batch.store.swift_store import SwiftStore
from swiftzarr_batch.versioned.errors import CorruptRecordError, SessionClosedError
from swiftzarr_batch.versioned.manifests import ManifestReader
from swiftzarr_batch.versioned.records import (
    CHUNKS_DIR,
    DELETED_CONTENT_TYPE,
    SESSIONS_DIR,
    Snapshot,
    chunk_key,
    encode,
    piece_key,
)

PROTO = default_buffer_prototype()
RECORD_LIMIT = 100_000
"""How many written keys a session store remembers in its own process, to check the commit's
listing holds them (beyond it the listing alone is trusted)."""


def manifest_reader(base: SwiftStore, snapshot: Snapshot, cache_pieces: int = 16) -> ManifestReader:
    """A ``ManifestReader`` of ``snapshot`` loading pieces from ``base``; a missing piece is a
    ``CorruptRecordError`` (a snapshot's pieces are never deleted while it is reachable)."""

    async def load(piece_id: str) -> bytes | bytearray:
        buf = await base.get(piece_key(piece_id), PROTO)
        if buf is None:
            raise CorruptRecordError(
                f"manifest piece {piece_id} of snapshot {snapshot.id} is missing from {base}"
            )
        return buf.to_bytes()

    return ManifestReader(snapshot.pieces, load, cache_pieces)


def _dir_prefix(prefix: str) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/" if prefix else ""


def _children(keys: Iterable[str], prefix: str) -> list[str]:
    cut = len(prefix)
    return sorted({k[cut:].split("/", 1)[0] for k in keys if k.startswith(prefix) and k[cut:]})


class SnapshotStore(Store):
    """One snapshot, read-only: every key resolves through the snapshot's manifest to the
    object that held it at commit time, so nothing written later is ever seen."""

    supports_writes = False
    supports_deletes = False
    supports_listing = True
    supports_partial_writes = False

    def __init__(self, base: SwiftStore, snapshot: Snapshot) -> None:
        super().__init__(read_only=True)
        self.base, self.snapshot = base, snapshot
        self.manifest = manifest_reader(base, snapshot)

    def __repr__(self) -> str:
        return f"SnapshotStore({self.base}, snapshot={self.snapshot.id})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, SnapshotStore)
            and other.base == self.base
            and other.snapshot.id == self.snapshot.id
        )

    def __hash__(self) -> int:
        return hash((str(self.base), self.snapshot.id))

    def __getstate__(self) -> dict[str, Any]:
        return {"base": self.base, "snapshot": self.snapshot}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["base"], state["snapshot"])  # type: ignore[misc]

    async def get(
        self,
        key: str,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        """``key`` as the snapshot holds it: found through the manifest (None if the snapshot has no
        such key), then read from the object that held it at commit time. ``CorruptRecordError`` if
        that object is gone."""
        ref = await self.manifest.lookup(key)
        if ref is None:
            return None
        buf = await self.base.get(chunk_key(ref[0], key), prototype or PROTO, byte_range)
        if buf is None:
            raise CorruptRecordError(
                f"{key} of snapshot {self.snapshot.id}: its object {chunk_key(ref[0], key)} is "
                f"missing from {self.base} (deleted outside the repository?)"
            )
        return buf

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        """``get`` of every (key, range), concurrently, in order."""
        return list(await asyncio.gather(*(self.get(k, prototype, r) for k, r in key_ranges)))

    async def exists(self, key: str) -> bool:
        """Whether the snapshot holds ``key``: answered by the manifest alone, no data object is
        read."""
        return await self.manifest.lookup(key) is not None

    async def getsize(self, key: str) -> int:
        """The size the manifest recorded for ``key`` (no data object is read);
        ``FileNotFoundError`` if the snapshot has no such key."""
        ref = await self.manifest.lookup(key)
        if ref is None:
            raise FileNotFoundError(key)
        return ref[1]

    async def set(self, key: str, value: Buffer) -> None:
        """Always ``ReadOnlyError``: a snapshot never changes (open a writable session)."""
        raise ReadOnlyError(f"snapshot {self.snapshot.id} (open a writable session to change it)")

    async def delete(self, key: str) -> None:
        """Always ``ReadOnlyError``: a snapshot never changes (open a writable session)."""
        raise ReadOnlyError(f"snapshot {self.snapshot.id} (open a writable session to change it)")

    async def list(self) -> AsyncIterator[str]:
        """Every key of the snapshot, in key order, from its manifest a piece at a time (no listing
        of the container)."""
        async for key, _ in self.manifest.entries(""):
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        """The snapshot's keys starting with ``prefix``, from the manifest pieces whose range meets
        it."""
        async for key, _ in self.manifest.entries(prefix):
            yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        """The names directly under ``prefix`` in the snapshot, from its manifest (holds the keys
        under ``prefix`` in memory)."""
        base = _dir_prefix(prefix)
        keys = [k async for k, _ in self.manifest.entries(base)]
        for child in _children(keys, base):
            yield child


class SessionStore(Store):
    """A writable session's store: writes go to the session's own objects, reads see them over
    the parent snapshot. Nothing here moves a branch; ``WritableSession.commit`` does."""

    supports_writes = True
    supports_deletes = True
    supports_listing = True
    supports_partial_writes = False

    def __init__(
        self,
        base: SwiftStore,
        session: str,
        parent: Snapshot,
        deleted_prefixes: Iterable[str] = (),
    ) -> None:
        super().__init__(read_only=False)
        self.base, self.session, self.parent = base, session, parent
        self.parent_store = SnapshotStore(base, parent)
        self.deleted_prefixes = set(deleted_prefixes)
        self.written: set[str] = set()  # this process's writes (up to RECORD_LIMIT)
        self.closed = False

    def __repr__(self) -> str:
        return f"SessionStore({self.base}, session={self.session}, parent={self.parent.id})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, SessionStore)
            and other.base == self.base
            and other.session == self.session
        )

    def __hash__(self) -> int:
        return hash((str(self.base), self.session))

    def __getstate__(self) -> dict[str, Any]:
        return {
            "base": self.base,
            "session": self.session,
            "parent": self.parent,
            "deleted_prefixes": sorted(self.deleted_prefixes),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(  # type: ignore[misc]
            state["base"], state["session"], state["parent"], state["deleted_prefixes"]
        )

    def with_read_only(self, read_only: bool = False) -> SessionStore:
        """The same session's view; read-only if asked (zarr opens ``mode="r"`` this way)."""
        clone = SessionStore(self.base, self.session, self.parent, self.deleted_prefixes)
        clone._read_only = read_only
        clone.closed = self.closed
        return clone

    def _own(self, key: str) -> str:
        return chunk_key(self.session, key)

    def _check_open(self) -> None:
        self._check_writable()
        if self.closed:
            raise SessionClosedError(
                f"session {self.session} already committed or closed: open a new writable session"
            )

    def _dropped(self, key: str) -> bool:
        return any(key.startswith(p) for p in self.deleted_prefixes)

    async def _own_state(self, key: str) -> bool | None:
        """True: written in this session; False: deleted in it; None: not touched."""
        resp = await (await self.base.swift_container()).head(self.base.object_name(self._own(key)))
        if resp is None:
            return None
        return resp.headers.get("Content-Type", "").split(";")[0] != DELETED_CONTENT_TYPE

    # -- reads ------------------------------------------------------------------------------
    async def get(
        self,
        key: str,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        """This session's own write of ``key`` if there is one (None if it deleted it), else the
        parent snapshot's, unless a ``delete_dir`` of this session covers it."""
        prototype = prototype or PROTO
        if byte_range is None:
            buf = await self.base.get(self._own(key), prototype)
            if buf is not None and (len(buf) or await self._own_state(key)):
                return buf
            if buf is not None:
                return None  # an empty object that is a deletion marker
        else:
            state = await self._own_state(key)
            if state is not None:
                return await self.base.get(self._own(key), prototype, byte_range) if state else None
        if self._dropped(key):
            return None
        return await self.parent_store.get(key, prototype, byte_range)

    async def get_partial_values(
        self, prototype: BufferPrototype, key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> list[Buffer | None]:
        """``get`` of every (key, range), concurrently, in order."""
        return list(await asyncio.gather(*(self.get(k, prototype, r) for k, r in key_ranges)))

    async def exists(self, key: str) -> bool:
        """Whether ``key`` is in this session's view: its own write or delete first (one HEAD), else
        the parent's manifest."""
        state = await self._own_state(key)
        if state is not None:
            return state
        return not self._dropped(key) and await self.parent_store.exists(key)

    # -- writes -----------------------------------------------------------------------------
    def _remember(self, key: str) -> None:
        if len(self.written) < RECORD_LIMIT:
            self.written.add(key)

    async def set(self, key: str, value: Buffer) -> None:
        """Write ``key`` to the session's own object (no snapshot sees it until ``commit``).
        ``SessionClosedError`` after commit or close; zarr's ``ValueError`` on a read-only view;
        ``TypeError`` unless ``value`` is a ``Buffer``."""
        self._check_open()
        if not isinstance(value, Buffer):
            raise TypeError(
                f"SessionStore.set(): value must be a Buffer, got {type(value).__name__}"
            )
        await self.base.set(self._own(key), value)
        self._remember(key)

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        """Create ``key`` unless it exists in this session's view (not atomic against another
        process of the same session: the session is its writer's alone)."""
        if not await self.exists(key):
            await self.set(key, value)

    async def delete(self, key: str) -> None:
        """Delete ``key`` in this session: an empty marker object under its own name, so the later
        of a write and a delete wins; the parent snapshot is untouched. Raises like ``set``."""
        self._check_open()
        name = self.base.object_name(self._own(key))
        container = await self.base.swift_container()
        try:
            await container.put(name, b"", headers={"Content-Type": DELETED_CONTENT_TYPE})
        finally:
            self.base.read_cache.forget(name)
        self._remember(key)

    async def delete_dir(self, prefix: str) -> None:
        """Delete every key under ``prefix``: one record for the parent snapshot's keys, and
        this session's own objects under it removed."""
        self._check_open()
        prefix = _dir_prefix(prefix)
        record = f"{SESSIONS_DIR}/{self.session}/{uuid.uuid4().hex}.json"
        await self.base.set(record, PROTO.buffer.from_bytes(encode({"prefix": prefix})))
        self.deleted_prefixes.add(prefix)
        await self.base.delete_dir(f"{CHUNKS_DIR}/{self.session}/{prefix}".rstrip("/"))
        self.written = {k for k in self.written if not k.startswith(prefix)}

    async def clear(self) -> None:
        """Delete every key in this session's view (``delete_dir`` of the root); the parent snapshot
        itself is untouched."""
        await self.delete_dir("")

    # -- listings ---------------------------------------------------------------------------
    async def _own_entries(self, prefix: str) -> AsyncIterator[tuple[str, bool]]:
        """(key, written?) of this session's own objects under ``prefix``, from the listing."""
        container = await self.base.swift_container()
        own_base = self.base.listing_base + self._own("")
        async for page in container.list_pages(own_base + prefix):
            for entry in page:
                deleted = entry.get("content_type", "").split(";")[0] == DELETED_CONTENT_TYPE
                yield entry["name"][len(own_base) :], not deleted

    async def _keys(self, prefix: str) -> list[str]:
        keys = {
            k async for k, _ in self.parent_store.manifest.entries(prefix) if not self._dropped(k)
        }
        async for key, written in self._own_entries(prefix):
            if written:
                keys.add(key)
            else:
                keys.discard(key)
        return sorted(keys)

    async def list(self) -> AsyncIterator[str]:
        """Every key of this session's view: the parent's manifest merged with a listing of the
        session's own objects, sorted. Holds every key in memory."""
        for key in await self._keys(""):
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        """The keys under ``prefix`` in this session's view (parent manifest plus the session's own
        listing), sorted; holds them in memory."""
        for key in await self._keys(prefix):
            yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        """The names directly under ``prefix`` in this session's view (holds the keys under
        ``prefix`` in memory)."""
        base = _dir_prefix(prefix)
        for child in _children(await self._keys(base), base):
            yield child
