"""Chunk objects that exist though a listing lacks them: Swift's listings lag behind writes.

Why: a Swift object server answers a PUT 201 once the object is stored; the container listing
learns of it from a container update that, on a busy cluster, waits in ``async_pending`` until
the object-updater replays it (seconds to hours). A copy, mirror or verify that trusts the
listing would then "complete" without objects that exist. A listing is not proof of absence.

For zarr data the metadata says which chunk keys can exist: every key of the chunk grid. So the
grid keys the listing lacked are asked for one by one (a HEAD each): those that answer are
"present but not yet listed". The cost is one HEAD per grid key the listing lacked, which is
nothing for a dense array and one request per never-written chunk of a sparse one
(``write_empty_chunks=False``); ``probe_unlisted=False`` on the callers skips it. For keys that
are not zarr chunks (plain prefixes, metadata documents not yet listed) nothing names what could
exist: there only a later listing (``settle`` seconds, see ``copy_store``) can tell.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from zarr.abc.store import Store
from zarr.core.sync import sync

from swiftzarr_batch.store.hierarchy import parse_hierarchy
from swiftzarr_batch.store.objects import swift_objects
from swiftzarr_batch.transfer.chunk_presence import ChunkPresence
from swiftzarr_batch.transfer.objects import ObjectInfo
from swiftzarr_batch.transfer.verify_scan import Scan, discover_metadata, listing_pages

log = logging.getLogger(__name__)

__all__ = ["UnlistedProbe", "head_keys", "probe_unlisted"]


@dataclass
class UnlistedProbe:
    """What a listing lacked of the chunk grids under a path, and what HEADs found."""

    listed: int = 0  # keys the listing showed
    expected: int = 0  # chunk keys the arrays' grids call for
    probed: int = 0  # HEADs sent: grid keys the listing lacked (the cost)
    present: list[ObjectInfo] = field(default_factory=list)  # exist though not listed

    @property
    def absent(self) -> int:
        """Grid keys neither listed nor found by a HEAD: really missing (or never written)."""
        return self.probed - len(self.present)


def head_keys(store: Store, keys: list[str], concurrency: int) -> list[ObjectInfo]:
    """The keys of ``keys`` that exist (one HEAD each, ``concurrency`` at a time), with size
    and ETag; a 404 means absent, any other failure raises."""
    swift = swift_objects(store)

    async def one(key: str, gate: asyncio.Semaphore) -> ObjectInfo | None:
        async with gate:
            if swift is not None:
                return await swift.head(key)
            if not await store.exists(key):
                return None
            return ObjectInfo(key, await store.getsize(key))

    async def run() -> list[ObjectInfo]:
        gate = asyncio.Semaphore(concurrency)
        found = await asyncio.gather(*(one(key, gate) for key in keys))
        return [info for info in found if info is not None]

    return sync(run()) if keys else []


def probe_unlisted(store: Store, path: str = "", *, concurrency: int = 16) -> UnlistedProbe:
    """List ``path`` once, then HEAD every chunk grid key (and metadata document read by
    name) the listing lacked.

    Keys are the store's (not relative to ``path``). Metadata documents come from
    ``discover_metadata`` (which reads them by name where the listing does not show them).
    """
    path = path.strip("/")
    meta = discover_metadata(store, path, concurrency)
    found = parse_hierarchy(meta.docs)
    arrays: dict[str, ChunkPresence] = {}
    for node, spec in found.arrays.items():
        try:
            arrays[node] = ChunkPresence(spec)
        except ValueError as exc:  # verify reports it; nothing to probe here
            log.debug("array %s: %s", node, exc)
    probe = UnlistedProbe()
    scan = Scan(arrays, meta.known, 0)
    listed_docs: set[str] = set()
    for page in listing_pages(store, path):
        scan.add(page)
        listed_docs.update(i.key for i in page if i.key in meta.docs)
    probe.listed = scan.keys
    # documents read by name (a consolidated root names its members) that the listing lacked
    lacking = sorted(set(meta.docs) - listed_docs)
    lacking += [key for p in arrays.values() for key in p.missing_keys(p.missing)]
    probe.expected = sum(p.expected for p in arrays.values())
    probe.probed = len(lacking)
    probe.present = head_keys(store, lacking, concurrency)
    if probe.present:
        log.warning(
            "%d chunk objects under %s exist but are not listed yet (the listing lags behind "
            "writes); found by %d HEADs of the chunk grid",
            len(probe.present),
            path or "/",
            probe.probed,
        )
    return probe
