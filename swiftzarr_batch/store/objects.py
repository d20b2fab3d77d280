"""What a store can do at the object level beyond zarr's ``Store`` ABC: ``swift_objects(store)``.

Copies, checks, ``swiftzarr ls``/``rm`` and the dataset lock work on *any* zarr store through
zarr's ABC. A Swift container offers more, for free or in one request: its listing carries every
object's size and MD5 (no HEADs), the server checks the MD5 sent with every PUT, it copies
objects itself (``X-Copy-From``), deletes up to 1 000 names per request, reads the newest
replica (``X-Newest``) and expires objects (``X-Delete-After``).

``swift_objects(store)`` asks a store for those extras: a ``SwiftObjects`` for a SwiftStore,
``None`` for any other store (then the caller uses the ABC). Other rooms branch on that answer,
never on the store's class, and never see a ``SwiftContainer`` or an object name: the extras
take zarr keys relative to the store, like the ABC. They live in a view object rather than in
more ``SwiftStore`` methods so that ``SwiftStore`` stays zarr's store and nothing more, and a
backend that grows the same abilities later is answered here, in one place.

``ObjectInfo`` (a key with its size and MD5 when known) is what listings and reads report; it
lives here because the store produces it and the transfer room compares it.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Collection, Iterable
from dataclasses import dataclass
from typing import NamedTuple

from zarr.abc.store import Store

from swiftzarr_batch.errors import ConfigurationError
from swiftzarr_batch.store.keys import join
from swiftzarr_batch.store.swift_store import SwiftStore
from swiftzarr_batch.swift.bulk_stream import delete_streamed, listed_for_delete
from swiftzarr_batch.swift.checksums import BODY_MD5_HEADER
from swiftzarr_batch.swift.large_copy import LargeCopy, copy_large
from swiftzarr_batch.swift.large_objects import delete_large
from swiftzarr_batch.swift.names import object_name
from swiftzarr_batch.swift.orphan_segments import OrphanReport, delete_orphan_segments
from swiftzarr_batch.swift.write_options import WriteOptions

__all__ = ["CopySource", "ObjectInfo", "SwiftObjects", "swift_objects", "with_write_options"]


class ObjectInfo(NamedTuple):
    """One key with what is known about its content (None: unknown until read).

    A named tuple, not a frozen dataclass: listings make one per key, millions in a verify or
    a copy plan, and a tuple is made about twice as fast (immutable all the same)."""

    key: str
    size: int | None = None
    md5: str | None = None
    large: bool = False  # a Swift large object (SLO manifest): its segments go with it

    def same_content(self, other: ObjectInfo) -> bool | None:
        """True/False when sizes and MD5s decide it, None when something is unknown."""
        if self.size is not None and other.size is not None and self.size != other.size:
            return False
        if self.md5 is None or other.md5 is None or self.size is None or other.size is None:
            return None
        return self.md5 == other.md5


@dataclass(frozen=True)
class CopySource:
    """Where a server-side copy reads from, as the destination's cluster addresses it."""

    container: str
    prefix: str
    account: str | None  # None: the destination's own account


def swift_objects(store: Store) -> SwiftObjects | None:
    """The store's object-level extras, or None when it has only zarr's ABC."""
    return SwiftObjects(store) if isinstance(store, SwiftStore) else None


def with_write_options(
    store: Store, storage_policy: str | None = None, delete_after: int | None = None
) -> Store:
    """``store`` writing into ``storage_policy`` and expiring its objects after
    ``delete_after`` seconds ("" / 0 / None: not set); a ConfigurationError for a store other
    than Swift's, which has neither."""
    writes = WriteOptions.of(storage_policy, delete_after)
    if writes == WriteOptions():
        return store
    if not isinstance(store, SwiftStore):
        raise ConfigurationError(
            f"{store}: a storage policy and expiry (delete_after) exist only for swift:// locations"
        )
    return store.with_writes(writes)


_HEX = "0123456789abcdef"


def is_md5(text: str) -> bool:
    """A hex MD5 (what a plain object's ETag is; a large object's is not)."""
    return len(text) == 32 and not text.strip(_HEX)  # C speed: once per listed key


class SwiftObjects:
    """The extras of a SwiftStore, in zarr keys relative to the store (see the module docstring).

    A view: it holds the store and nothing else, so it is as cheap to make as to keep, and it
    pickles as its store does (storage URL and token) for dask tasks.
    """

    def __init__(self, store: SwiftStore) -> None:
        self.store = store

    def __repr__(self) -> str:
        return f"SwiftObjects({self.store!r})"

    # -- where ------------------------------------------------------------------------------
    def location(self, path: str = "") -> str:
        """``swift://container/prefix/path`` for logs and summaries (no account, no token)."""
        parts = (self.store.container, self.store.prefix, path.strip("/"))
        return "swift://" + "/".join(p for p in parts if p)

    def address(self, path: str = "") -> str:
        """The absolute ``storage_url/container/prefix/path/``: two locations overlap exactly
        when one address starts with the other."""
        store = self.store
        return f"{store.storage_url}/{join(store.container, store.prefix, path)}/"

    # -- listings ---------------------------------------------------------------------------
    async def list_objects(self, prefix: str = "") -> AsyncIterator[ObjectInfo]:
        """Every key starting with ``prefix``, with size and MD5 from the listing itself (one
        request per 10 000 keys, no HEADs). A large object's listed hash is not its body's
        MD5: it comes with its size only, marked ``large``."""
        async for infos in self.list_object_pages(prefix):
            for info in infos:
                yield info

    async def list_object_pages(self, prefix: str = "") -> AsyncIterator[list[ObjectInfo]]:
        """``list_objects`` a server page (up to 10 000 keys) at a time: for callers that go
        through millions of keys, one step of the event loop per page rather than per key.
        The loop is the hot path of a verify or a copy plan: plain checks inline, no calls."""
        container = await self.store.swift_container()
        cut = len(self.store.listing_base)
        async for page in container.list_pages(self.store.listing_base + prefix):
            infos: list[ObjectInfo] = []
            append = infos.append
            for entry in page:
                if "slo_etag" in entry:  # large_objects.is_large: not its body's MD5
                    append(ObjectInfo(entry["name"][cut:], int(entry["bytes"]), None, True))
                    continue
                md5 = entry.get("hash")
                if md5 is not None and (len(md5) != 32 or md5.strip(_HEX)):
                    md5 = _plain_md5(md5)  # quoted, or not an MD5 at all
                append(ObjectInfo(entry["name"][cut:], int(entry["bytes"]), md5 or None, False))
            yield infos

    async def first_level(self, path: str = "") -> AsyncIterator[tuple[str, int | None]]:
        """The first level under the directory ``path`` (default: the store's top) from one
        delimiter listing, as keys relative to the store: ``("path/dir/", None)`` for each
        directory, ``(key, size)`` for each object."""
        container = await self.store.swift_container()
        base = self.store.listing_base
        path = path.strip("/")
        async for entry in container.list_level(base + (f"{path}/" if path else "")):
            if "subdir" in entry:  # list_level leaves out markers and marker-only "folders"
                yield entry["subdir"][len(base) :], None
            else:
                yield entry["name"][len(base) :], int(entry["bytes"])

    async def still_listed(self, key: str) -> bool:
        """Does the listing still show ``key``? An object that reads as 404 but is still listed
        was quarantined (its bytes no longer matched its ETag) or lost: not a deletion."""
        container = await self.store.swift_container()
        name = self.store.object_name(key)
        async for page in container.list_pages(name, limit=1):
            return bool(page) and page[0].get("name") == name
        return False

    # -- reads ------------------------------------------------------------------------------
    async def head(self, key: str) -> ObjectInfo | None:
        """Size and ETag (as ``md5``; a large object's is not its body's MD5) from a HEAD;
        None when the object is missing."""
        resp = await (await self.store.swift_container()).head(self.store.object_name(key))
        if resp is None:
            return None
        etag = resp.headers.get("Etag", "").strip('"')
        return ObjectInfo(key, int(resp.headers["Content-Length"]), etag or None)

    async def content_info(self, key: str) -> ObjectInfo | None:
        """Size and body MD5 from one HEAD (a large object's from the MD5 it carries as
        metadata; None as ``md5`` if it has none); None when missing. Compares a large object
        without reading it."""
        resp = await (await self.store.swift_container()).head(self.store.object_name(key))
        if resp is None:
            return None
        large = "X-Static-Large-Object" in resp.headers
        md5 = resp.headers.get(BODY_MD5_HEADER, "") if large else resp.headers.get("Etag", "")
        md5 = md5.strip('"')
        return ObjectInfo(key, int(resp.headers["Content-Length"]), md5 or None, large)

    async def read_unchecked(self, key: str) -> tuple[bytes | bytearray, str] | None:
        """The body as served, without the data path's MD5 check and retry, with the MD5 it
        should have ("" if unknown); None when missing. For checks that report corruption
        instead of retrying it."""
        resp = await (await self.store.swift_container()).get(
            self.store.object_name(key), check_md5=False
        )
        if resp is None:
            return None
        etag = resp.headers.get("Etag", "").strip('"')
        if "X-Static-Large-Object" in resp.headers:  # its ETag is not its body's MD5
            etag = resp.headers.get(BODY_MD5_HEADER, "")
        return resp.body, etag

    async def read_newest(self, key: str) -> bytes | bytearray | None:
        """The body of the newest replica (``X-Newest``: the proxy asks them all), not of the
        first that answers; None when missing. For small objects that must not be stale."""
        container = await self.store.swift_container()
        resp = await container.get_newest(self.store.object_name(key))
        return None if resp is None else resp.body

    # -- writes -----------------------------------------------------------------------------
    async def container_exists(self) -> bool:
        """Whether the store's container exists (a HEAD; only a 404 says no). A listing of a
        missing container is as empty as an empty one's: commands that list ask this first."""
        return await (await self.store.swift_container()).exists()

    async def ensure_container(self) -> None:
        """Create the container if it is missing (once per process), before many writes."""
        await (await self.store.swift_container()).ensure_exists()

    async def put_expiring(
        self, key: str, body: bytes, *, delete_after: int, if_none_match: bool = False
    ) -> bool:
        """Write a small object the server deletes ``delete_after`` seconds later by itself;
        with ``if_none_match``, only if none exists (returns False when one did)."""
        container = await self.store.swift_container()
        try:
            return await container.put(
                self.store.object_name(key),
                body,
                if_none_match=if_none_match,
                headers={"X-Delete-After": str(delete_after)},
            )
        finally:
            self.store.read_cache.forget(self.store.object_name(key))

    def copy_source(self, source: SwiftObjects) -> CopySource | None:
        """Where ``source``'s objects are for a server-side copy into this store, or None when
        the cluster cannot copy between them (another cluster, or another token)."""
        src_token, dst_token = source.store.session.token, self.store.session.token
        src_base, src_account = src_token.storage_url.rstrip("/").rsplit("/", 1)
        dst_base, dst_account = dst_token.storage_url.rstrip("/").rsplit("/", 1)
        if src_base != dst_base or src_token.token != dst_token.token:
            return None
        account = None if src_account == dst_account else src_account
        return CopySource(source.store.container, source.store.prefix, account)

    async def copy_from(self, source: CopySource, src_key: str, key: str) -> ObjectInfo | None:
        """Server-side copy of ``src_key`` at ``source`` to ``key`` here (no body through the
        client). The result carries the new object's ETag; None when the source is missing."""
        container = await self.store.swift_container()
        try:
            resp = await container.copy_from(
                source.container,
                object_name(source.prefix, src_key),
                object_name(self.store.prefix, key),
                src_account=source.account,
            )
        finally:
            self.store.read_cache.forget(object_name(self.store.prefix, key))
        if resp is None:
            return None
        return ObjectInfo(key, None, resp.headers.get("Etag", "").strip('"') or None)

    async def delete_markers(self, prefix: str = "") -> int:
        """Delete the directory markers (``swift.container.is_marker``) under ``prefix``:
        listings leave them out, so deleting every key of a prefix would keep its empty
        "folders" otherwise. Returns how many were deleted."""
        container = await self.store.swift_container()
        markers = listed_for_delete(container, self.store.listing_base + prefix, only_markers=True)
        return await delete_streamed(container, markers)  # markers: never cached

    async def delete_orphan_segments(
        self, prefix: str = "", *, older_than: float = 86400.0, dry_run: bool = False
    ) -> OrphanReport:
        """Delete the large-object segments under ``prefix`` that no manifest points at, left
        by writers killed before their manifest (``swift.orphan_segments``); uploads younger
        than ``older_than`` seconds are left alone (they may still be running)."""
        container = await self.store.swift_container()
        return await delete_orphan_segments(
            container, self.store.listing_base + prefix, older_than=older_than, dry_run=dry_run
        )

    async def copy_large_from(
        self, source: SwiftObjects, src_key: str, key: str, route: CopySource | None
    ) -> LargeCopy | None:
        """Copy the large object ``src_key`` of ``source`` to ``key`` here segment by segment
        (``swift.large_copy``): server-side when ``route`` says the cluster can, else one
        segment at a time through the client. None when it is missing or not a large object."""
        try:
            return await copy_large(
                await source.store.swift_container(),
                source.store.object_name(src_key),
                await self.store.swift_container(),
                self.store.object_name(key),
                server_side=route is not None,
                src_account=route.account if route is not None else None,
            )
        finally:
            self.store.read_cache.forget(self.store.object_name(key))

    async def delete_keys(self, keys: Iterable[str], *, large: Collection[str] = ()) -> None:
        """Bulk-delete ``keys`` (requests of up to 1 000 names, 10 at a time); the ones in
        ``large`` are deleted one by one, with their segments."""
        keys, large = list(keys), set(large)
        container = await self.store.swift_container()
        base = self.store.listing_base
        try:
            await container.bulk_delete(base + k for k in keys if k not in large)
            for key in large.intersection(keys):
                await delete_large(container, base + key)
        finally:
            self.store.read_cache.forget_under(base)

    async def delete_stream(self, infos: AsyncIterable[ObjectInfo]) -> int:
        """Delete every key ``infos`` streams as it streams (``swift.bulk_stream``: batches of
        names to the bulk middleware, no list of them all); ``large`` ones with their
        segments. Returns how many the server deleted."""
        container = await self.store.swift_container()
        base = self.store.listing_base

        async def names() -> AsyncIterator[tuple[str, bool]]:
            async for info in infos:
                yield base + info.key, info.large

        try:
            return await delete_streamed(container, names())
        finally:
            self.store.read_cache.forget_under(base)


def _plain_md5(etag: str | None) -> str | None:
    """The MD5 in a listing's hash (None if it is not one)."""
    if not etag:
        return None
    etag = etag.strip('"')
    return etag if is_md5(etag) else None
