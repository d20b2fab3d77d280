"""The two steps of ``verify_store`` that touch every key, in memory that does not grow with it.

1. **The hierarchy**, from its metadata only. On Swift it is walked directory by directory:
   ``D/zarr.json`` and ``D/.zarray`` are read, and only a directory that is not an array is
   listed (one delimiter listing, its own objects and subdirectories), so an array's chunks are
   never listed here. Other stores have no cheap directory listing that tells objects from
   directories, so their listing is read once for its metadata keys alone.
2. **One streamed listing** of everything under the path, page by page: every key is counted,
   handed to the content check in batches, and either recorded in its array's chunk bitmap
   (``ChunkPresence``) or counted as an orphan. Only a bounded sample of names is kept.

Metadata documents that the walk did not read (a v2 array's ``.zattrs``, a node document inside
an array) come out of the listing and are read afterwards; there are as many as there are nodes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from dataclasses import dataclass, field

from zarr.abc.store import Store
from zarr.core.sync import sync

from swiftzarr_batch.errors import SwiftZarrError
from swiftzarr_batch.store.keys import (
    BOOKKEEPING_DIR,
    METADATA_NAMES,
    ZARR_JSON,
    ZARRAY,
    dirname,
    is_bookkeeping_key,
    is_metadata_key,
    join,
)
from swiftzarr_batch.store.objects import SwiftObjects, swift_objects
from swiftzarr_batch.transfer.chunk_presence import ChunkPresence
from swiftzarr_batch.transfer.objects import ObjectInfo, dir_prefix, list_objects, read_with_info

__all__ = ["Docs", "Scan", "discover_metadata", "listing_pages", "read_docs"]

PAGE = 10_000
METADATA_SUFFIXES = tuple(METADATA_NAMES)
MAX_LATE_DOCS = 10_000
"""Metadata documents found only by the listing that are read afterwards; beyond this many
(a pathological store), the rest are reported unread."""


@dataclass
class Docs:
    """Metadata documents by store key, and the metadata keys that could not be read."""

    docs: dict[str, bytes] = field(default_factory=dict)
    unreadable: list[tuple[str, str]] = field(default_factory=list)

    @property
    def known(self) -> set[str]:
        """Every metadata key the hierarchy step saw, read or not: the listing's other metadata keys
        are read later."""
        return set(self.docs) | {k for k, _ in self.unreadable}


# -- step 1: the hierarchy -----------------------------------------------------------------
def discover_metadata(store: Store, path: str, concurrency: int) -> Docs:
    """Step 1: the metadata documents of the hierarchy under ``path``, walked directory by directory
    on Swift (no array's chunks are listed), else from one listing of the store."""
    swift = swift_objects(store)
    if swift is None:
        return sync(_from_listing(store, path, concurrency))
    return sync(_walk(store, swift, path, concurrency))


async def _from_listing(store: Store, path: str, concurrency: int) -> Docs:
    keys = [
        info.key
        async for info in list_objects(store, path)
        if is_metadata_key(info.key) and not is_bookkeeping_key(info.key)
    ]
    return await read_docs(store, keys, concurrency, listed=True)


async def _walk(store: Store, swift: SwiftObjects, root: str, concurrency: int) -> Docs:
    found = Docs()
    limit = asyncio.Semaphore(concurrency)

    async def visit(node: str) -> list[str]:
        """Read the node documents of directory ``node``; list it unless it is an array (or
        a node whose document is unusable: its keys are then orphans, not more nodes)."""
        async with limit:
            got = await read_docs(store, [join(node, ZARR_JSON), join(node, ZARRAY)], 2)
        _merge(found, got)
        if got.unreadable or any(_is_array(k, v) for k, v in got.docs.items()):
            return []
        children: list[str] = []
        others: list[str] = []
        async with limit:
            async for name, size in swift.first_level(node):
                if size is None:
                    if name.rstrip("/").rsplit("/", 1)[-1] != BOOKKEEPING_DIR:
                        children.append(name.rstrip("/"))
                elif is_metadata_key(name) and name not in got.docs:
                    others.append(name)
        if any(k.endswith((ZARR_JSON, ZARRAY)) for k in others):
            # listed, but read as 404 above: quarantined or lost. Not descended (as unusable).
            children = []
        else:  # members a consolidated group names, listed or not (listings lag behind writes)
            named = _consolidated_children(got.docs.get(join(node, ZARR_JSON)))
            children += sorted({join(node, c) for c in named} - set(children))
        _merge(found, await read_docs(store, others, concurrency, listed=True))
        return children

    level = [root]
    while level:
        results = await asyncio.gather(*(visit(d) for d in level))
        level = [child for r in results for child in r]
    return found


def _consolidated_children(doc: bytes | None) -> set[str]:
    """First-level member names of a zarr 3 group's consolidated metadata (none if absent or
    unreadable: the listing still finds the members it shows)."""
    if doc is None:
        return set()
    try:
        members = json.loads(doc).get("consolidated_metadata", {}).get("metadata", {})
        return {str(name).split("/", 1)[0] for name in members if str(name).strip("/")}
    except (ValueError, AttributeError):
        return set()


def _merge(into: Docs, got: Docs) -> None:
    into.docs.update(got.docs)
    into.unreadable += got.unreadable


def _is_array(key: str, doc: bytes) -> bool:
    if key.endswith(ZARRAY):
        return True
    try:
        return bool(json.loads(doc).get("node_type") == "array")
    except (ValueError, AttributeError):
        return False


async def read_docs(
    store: Store, keys: list[str], concurrency: int, *, listed: bool = False
) -> Docs:
    """Read metadata documents; a missing one is skipped, or, when ``listed`` (the listing
    showed it), reported as unreadable: a listed object that reads as 404 was quarantined."""
    limit = asyncio.Semaphore(concurrency)
    out = Docs()

    async def one(key: str) -> None:
        async with limit:
            try:
                got = await read_with_info(store, key)
            except SwiftZarrError as exc:  # e.g. IntegrityError: reported, the rest goes on
                out.unreadable.append((key, f"unreadable: {type(exc).__name__}: {exc}"))
                return
        if got is not None:
            out.docs[key] = got[0]
        elif listed:
            out.unreadable.append((key, "listed but not readable (404)"))

    await asyncio.gather(*(one(k) for k in keys))
    return out


# -- step 2: one listing ---------------------------------------------------------------------
def listing_pages(store: Store, path: str) -> Iterator[list[ObjectInfo]]:
    """The listing under ``path`` in pages of up to ``PAGE`` keys, pulled one page at a time
    from zarr's event loop (so a caller may run dask work between pages)."""
    pages = _pages(store, path)
    try:
        while True:
            page = sync(_next(pages))
            if page is None:
                return
            yield page
    finally:
        sync(pages.aclose())


async def _pages(store: Store, path: str) -> AsyncGenerator[list[ObjectInfo]]:
    swift = swift_objects(store)
    if swift is not None:
        async for infos in swift.list_object_pages(dir_prefix(path)):
            yield infos
        return
    page: list[ObjectInfo] = []
    async for info in list_objects(store, path):
        page.append(info)
        if len(page) >= PAGE:
            yield page
            page = []
    if page:
        yield page


async def _next(pages: AsyncIterator[list[ObjectInfo]]) -> list[ObjectInfo] | None:
    try:
        return await anext(pages)
    except StopAsyncIteration:
        return None


class Scan:
    """What the listing showed, against the arrays' chunk grids (see the module docstring)."""

    def __init__(self, arrays: dict[str, ChunkPresence], known_meta: set[str], sample: int):
        self.arrays = arrays
        self.known_meta = known_meta
        self.sample = sample
        self.keys = 0
        self.bytes = 0
        self.orphans: list[str] = []
        self.orphan_count = 0
        self.late_meta: list[str] = []
        self.late_dropped = 0
        self._last: ChunkPresence | None = None

    def add(self, page: list[ObjectInfo]) -> None:
        """Step 2, per listing page: count every key, record chunks in their arrays' bitmaps, and
        count the rest as orphans (keeping a bounded sample) or as metadata to read later."""
        # The hot loop of a verify (once per listed key): locals, cheapest tests first.
        known, orphans, owner_of = self.known_meta, self.orphans, self._owner
        self.keys += len(page)
        for info in page:
            key = info.key
            self.bytes += info.size or 0
            if BOOKKEEPING_DIR in key and is_bookkeeping_key(key):
                continue
            if key.endswith(METADATA_SUFFIXES) and is_metadata_key(key):
                if key not in known:
                    if len(self.late_meta) < MAX_LATE_DOCS:
                        self.late_meta.append(key)
                    else:
                        self.late_dropped += 1
                continue
            owner = owner_of(key)
            if owner is None or not owner.record(key):
                self.orphan_count += 1
                if len(orphans) < self.sample:
                    orphans.append(key)

    def _owner(self, key: str) -> ChunkPresence | None:
        """The array whose directory holds ``key``. Listings come sorted, so it is nearly
        always the previous key's; otherwise each parent directory is looked up."""
        last = self._last
        if last is not None and key.startswith(last.node_prefix):
            return last
        node = dirname(key)
        while True:
            found = self.arrays.get(node)
            if found is not None:
                self._last = found
                return found
            if not node:
                return None
            node = dirname(node)

    def array_at_or_above(self, node: str) -> str | None:
        """The path of the array at ``node`` or holding it, if any."""
        while True:
            if node in self.arrays:
                return node
            if not node:
                return None
            node = dirname(node)
