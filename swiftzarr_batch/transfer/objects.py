"""Listing, reading and deleting the objects of *any* zarr-3 store, with sizes and MD5s when the
backend knows them for free.

Copies and checks compare objects by (size, MD5). Swift's container listing carries both for
every object (its ETag is the body's MD5), so a Swift side costs one listing request per 10 000
keys; for other stores (LocalStore, FsspecStore, ...) the MD5 is computed from the bytes, only
when a comparison actually needs it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype

from swiftzarr_batch.store.swift_store import SwiftStore
from swiftzarr_batch.swift.large_objects import delete_large, is_large

log = logging.getLogger(__name__)

PROTOTYPE = default_buffer_prototype()


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One key with what is known about its content (None: unknown until read)."""

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


def dir_prefix(path: str) -> str:
    """The listing prefix of a directory: ``"a/b" -> "a/b/"``, ``"" -> ""``."""
    path = path.strip("/")
    return f"{path}/" if path else ""


async def list_objects(store: Store, path: str = "") -> AsyncIterator[ObjectInfo]:
    """Every key under the directory ``path`` (relative to the store), with size/MD5 if cheap.

    Keys are returned relative to the store (not to ``path``).
    """
    prefix = dir_prefix(path)
    if isinstance(store, SwiftStore):
        container = await store.swift_container()
        base = f"{store.prefix}/" if store.prefix else ""
        async for page in container.list_pages(base + prefix):
            for entry in page:
                large = is_large(entry)
                yield ObjectInfo(
                    entry["name"][len(base) :],
                    int(entry["bytes"]),
                    None if large else _plain_md5(entry.get("hash")),
                    large,
                )
        return
    async for key in store.list_prefix(prefix):
        yield ObjectInfo(key)


def _plain_md5(etag: str | None) -> str | None:
    """The MD5 in a listing's hash (None if it is not one)."""
    if not etag:
        return None
    etag = etag.strip('"')
    return etag if len(etag) == 32 and all(c in "0123456789abcdef" for c in etag) else None


async def read_with_info(store: Store, key: str) -> tuple[bytes, ObjectInfo] | None:
    """The object's bytes with their size and MD5; None if the key is missing.

    A SwiftStore read is checked against the server's ETag on the way (see ``transport``).
    """
    buf = await store.get(key, PROTOTYPE)
    if buf is None:
        return None
    data = buf.to_bytes()
    return data, ObjectInfo(key, len(data), hashlib.md5(data).hexdigest())


async def still_listed(store: Store, key: str) -> bool:
    """Does the listing still show ``key``? A Swift object that reads as 404 but is still listed
    was quarantined (its bytes no longer matched its ETag) or lost: not a deletion."""
    if isinstance(store, SwiftStore):
        container = await store.swift_container()
        name = store.object_name(key)
        async for page in container.list_pages(name, limit=1):
            return bool(page) and page[0].get("name") == name
        return False
    return await store.exists(key)


async def delete_keys(store: Store, keys: Iterable[str], *, large: Iterable[str] = ()) -> int:
    """Delete keys (Swift: bulk deletes of 10 000 per request; the ``large`` ones with their
    segments). Returns how many were asked."""
    keys, large = list(keys), set(large)
    if not keys:
        return 0
    if isinstance(store, SwiftStore):
        container = await store.swift_container()
        base = f"{store.prefix}/" if store.prefix else ""
        await container.bulk_delete(base + k for k in keys if k not in large)
        for key in large.intersection(keys):
            await delete_large(container, base + key)
    else:
        for start in range(0, len(keys), 64):
            await asyncio.gather(*(store.delete(k) for k in keys[start : start + 64]))
    return len(keys)


def describe(store: Store, path: str = "") -> str:
    """A human-readable location for logs and summaries (never credentials)."""
    if isinstance(store, SwiftStore):
        where = "/".join(p for p in (store.container, store.prefix, path.strip("/")) if p)
        return f"swift://{where}"
    root = getattr(store, "root", None)
    if root is not None:
        return "/".join(p for p in (str(root).rstrip("/"), path.strip("/")) if p)
    fs, fs_path = getattr(store, "fs", None), getattr(store, "path", None)
    if fs is not None and fs_path is not None:  # FsspecStore
        protocol = getattr(fs, "protocol", None) or getattr(
            getattr(fs, "sync_fs", None), "protocol", "fsspec"
        )
        protocol = protocol[0] if isinstance(protocol, (tuple, list)) else protocol
        base = f"{protocol}://{str(fs_path).lstrip('/')}".rstrip("/")
    else:
        base = str(store).rstrip("/")
    return f"{base}/{path.strip('/')}" if path.strip("/") else base
