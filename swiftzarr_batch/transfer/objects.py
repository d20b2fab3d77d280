"""Listing, reading and deleting the objects of *any* zarr-3 store, with sizes and MD5s when the
backend knows them for free.

Copies and checks compare objects by (size, MD5). Swift's container listing carries both for
every object (its ETag is the body's MD5), so a Swift side costs one listing request per 10 000
keys; for other stores (LocalStore, FsspecStore, ...) the MD5 is computed from the bytes, only
when a comparison actually needs it. Each function asks the store for its object-level extras
(``store.objects.swift_objects``) and falls back to zarr's Store ABC when it has none.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Iterable

from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype
from zarr.storage import FsspecStore, LocalStore

from swiftzarr_batch.store.objects import ObjectInfo, swift_objects

__all__ = [
    "ObjectInfo",
    "delete_keys",
    "delete_markers",
    "delete_stream",
    "describe",
    "dir_prefix",
    "list_objects",
    "read_with_info",
    "still_listed",
]

log = logging.getLogger(__name__)

PROTOTYPE = default_buffer_prototype()


def dir_prefix(path: str) -> str:
    """The listing prefix of a directory: ``"a/b" -> "a/b/"``, ``"" -> ""``."""
    path = path.strip("/")
    return f"{path}/" if path else ""


async def list_objects(store: Store, path: str = "") -> AsyncIterator[ObjectInfo]:
    """Every key under the directory ``path`` (relative to the store), with size/MD5 if cheap.

    Keys are returned relative to the store (not to ``path``).
    """
    prefix = dir_prefix(path)
    swift = swift_objects(store)
    if swift is not None:
        async for info in swift.list_objects(prefix):
            yield info
        return
    async for key in store.list_prefix(prefix):
        yield ObjectInfo(key)


async def read_with_info(store: Store, key: str) -> tuple[bytes, ObjectInfo] | None:
    """The object's bytes with their size and MD5; None if the key is missing.

    A SwiftStore read is checked against the server's ETag on the way (see ``swift.session``).
    """
    buf = await store.get(key, PROTOTYPE)
    if buf is None:
        return None
    data = buf.to_bytes()
    return data, ObjectInfo(key, len(data), hashlib.md5(data).hexdigest())


async def still_listed(store: Store, key: str) -> bool:
    """Does the listing still show ``key``? A Swift object that reads as 404 but is still listed
    was quarantined (its bytes no longer matched its ETag) or lost: not a deletion."""
    swift = swift_objects(store)
    return await (store.exists(key) if swift is None else swift.still_listed(key))


async def delete_keys(store: Store, keys: Iterable[str], *, large: Iterable[str] = ()) -> int:
    """Delete keys (Swift: bulk deletes of up to 1 000 names per request, 10 at a time; the
    ``large`` ones with their segments). Returns how many were asked."""
    keys = list(keys)
    if not keys:
        return 0
    swift = swift_objects(store)
    if swift is not None:
        await swift.delete_keys(keys, large=set(large))
    else:
        for start in range(0, len(keys), 64):
            await asyncio.gather(*(store.delete(k) for k in keys[start : start + 64]))
    return len(keys)


async def delete_markers(store: Store) -> int:
    """Delete the directory markers of a Swift store (none elsewhere): after its keys, what
    deleting a whole prefix leaves."""
    swift = swift_objects(store)
    return 0 if swift is None else await swift.delete_markers()


async def delete_stream(store: Store, infos: AsyncIterable[ObjectInfo]) -> int:
    """Delete the keys ``infos`` streams, as they stream, in bounded memory (Swift: bulk
    deletes of batches, ``large`` ones with their segments; other stores: 64 at a time).
    Returns how many keys were asked for."""
    swift = swift_objects(store)
    asked = 0

    async def counted() -> AsyncIterator[ObjectInfo]:
        nonlocal asked
        async for info in infos:
            asked += 1
            yield info

    if swift is not None:
        await swift.delete_stream(counted())
        return asked
    group: list[str] = []
    async for info in counted():
        group.append(info.key)
        if len(group) >= 64:
            await asyncio.gather(*(store.delete(k) for k in group))
            group = []
    await asyncio.gather(*(store.delete(k) for k in group))
    return asked


def describe(store: Store, path: str = "") -> str:
    """A human-readable location for logs and summaries (never credentials)."""
    swift = swift_objects(store)
    if swift is not None:
        return swift.location(path)
    if isinstance(store, LocalStore):
        return "/".join(p for p in (str(store.root).rstrip("/"), path.strip("/")) if p)
    if isinstance(store, FsspecStore):
        protocol = store.fs.protocol
        protocol = protocol[0] if isinstance(protocol, (tuple, list)) else protocol
        base = f"{protocol}://{store.path.lstrip('/')}".rstrip("/")
    else:
        base = str(store).rstrip("/")
    return f"{base}/{path.strip('/')}" if path.strip("/") else base
