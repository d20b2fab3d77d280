"""The writing side of the ``swift://`` file system (a mixin of ``SwiftFileSystem``):
one-shot writes, uploads, downloads, server-side copies, deletes, containers.

Every write first asks ``_writable``: an anonymous, signed-link or ``read_only`` file system
says why it cannot write before any request (``open()`` asks it too). The bytes move through
``fs_transfers``; deletes go through the store (large objects with their segments, bulk deletes
of whole prefixes, directory markers included).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from swiftzarr_batch.errors import ReadOnlyError
from swiftzarr_batch.store.fs_transfers import (
    copy_object,
    download_file,
    upload_file,
    write_object,
)
from swiftzarr_batch.store.swift_store import SwiftStore

if TYPE_CHECKING:
    from swiftzarr_batch.auth import Token
    from swiftzarr_batch.swift.container import SwiftContainer

__all__ = ["FileSystemWrites"]


class FileSystemWrites:
    """The write operations of ``SwiftFileSystem`` (see the module docstring)."""

    if TYPE_CHECKING:  # provided by SwiftFileSystem
        _anonymous: bool
        _token: Token | None
        _data: dict[str, Any]

        def split_path(self, path: str) -> tuple[SwiftStore, str]:
            """The store and key of ``path`` (``SwiftFileSystem.split_path``)."""

        async def _object(self, path: str) -> tuple[SwiftContainer, str]: ...
        async def _exists(self, path: str, **kwargs: Any) -> bool: ...
        async def _info(self, path: str, **kwargs: Any) -> dict[str, Any]: ...

    def _writable(self, path: str) -> tuple[SwiftStore, str]:
        """The store and key of a path about to be written, or the reason it cannot be."""
        if self._anonymous:
            raise ReadOnlyError(f"{path}: this swift:// file system is anonymous (read-only)")
        if self._token is not None and self._token.query:
            raise ReadOnlyError(f"{path}: this swift:// file system reads through a signed link")
        if self._data.get("read_only"):
            raise ReadOnlyError(f"{path}: this swift:// file system was opened read_only=True")
        store, key = self.split_path(path)
        if not key:
            raise IsADirectoryError(f"{path}: a container, not a file")
        return store, key

    async def _pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kw: Any) -> None:
        """Write ``value``; ``mode="create"``: only if no file is there (``If-None-Match``),
        else ``FileExistsError``."""
        store, key = self._writable(path)
        container, name = await store.swift_container(), store.object_name(key)
        try:
            created = await write_object(container, name, value, exclusive=mode == "create")
        finally:
            store.read_cache.forget(name)
        if not created:
            raise FileExistsError(path)

    async def _put_file(
        self, lpath: str, rpath: str, callback: Any = None, mode: str = "overwrite", **kw: Any
    ) -> None:
        """Upload a local file in bounded memory (``store.fs_transfers``)."""
        if os.path.isdir(lpath):
            return  # Swift has no directories: the files under it make it
        store, key = self._writable(rpath)
        container, name = await store.swift_container(), store.object_name(key)
        size = os.path.getsize(lpath)
        if callback is not None:
            callback.set_size(size)
        progress = callback.relative_update if callback is not None else None
        created = await upload_file(
            container, name, lpath, exclusive=mode == "create", progress=progress
        )
        if not created:
            raise FileExistsError(rpath)

    async def _get_file(self, rpath: str, lpath: str, callback: Any = None, **kw: Any) -> None:
        """Download to a local file in bounded memory, MD5-checked (``store.fs_transfers``)."""
        if os.path.isdir(lpath):
            return
        container, name = await self._object(rpath)
        if callback is not None:
            callback.set_size((await self._info(rpath))["size"])
        progress = callback.relative_update if callback is not None else None
        if not await download_file(container, name, lpath, progress=progress):
            raise FileNotFoundError(rpath)

    async def _cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """Server-side copy (a large object segment by segment): no bytes through here."""
        source, src_key = self.split_path(path1)
        if not src_key:
            raise FileNotFoundError(path1)
        dest, dst_key = self._writable(path2)
        copied = await copy_object(
            await source.swift_container(),
            source.object_name(src_key),
            await dest.swift_container(),
            dest.object_name(dst_key),
        )
        if not copied:
            raise FileNotFoundError(path1)

    async def _touch(self, path: str, truncate: bool = True, **kwargs: Any) -> None:
        """An empty file; ``truncate=False`` leaves an existing file as it is (Swift cannot
        change an object's time without rewriting it)."""
        if not truncate and await self._exists(path):
            return
        await self._pipe_file(path, b"")

    async def _rm_file(self, path: str, **kwargs: Any) -> None:
        store, key = self._writable(path)
        await store.delete(key)  # a missing object is not an error (nothing to do)

    async def _rm(
        self,
        path: str | list[str],
        recursive: bool = False,
        batch_size: int | None = None,
        maxdepth: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Delete objects; ``recursive``: everything under the path too, in bulk (large
        objects with their segments, markers too). Missing paths are no error: zarr's
        ``clear`` deletes a directory and then, again, the keys it held. A container is
        emptied, never deleted."""
        for one in [path] if isinstance(path, str) else path:
            store, key = self.split_path(one)
            if key:
                self._writable(one)
                await store.delete(key)
            if recursive:
                await store.delete_dir(key.rstrip("/"))

    async def _mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """A container is created (with the ``storage_policy`` option); below it, nothing:
        Swift has no empty directories, a directory exists once a file is under it."""
        store, key = self.split_path(path)
        if not key and create_parents:
            if self._data.get("read_only") or self._anonymous:
                raise ReadOnlyError(f"{path}: this swift:// file system cannot create containers")
            await (await store.swift_container()).ensure_exists()

    async def _makedirs(self, path: str, exist_ok: bool = False) -> None:
        """As ``_mkdir``; an existing container with ``exist_ok=False``: FileExistsError."""
        store, key = self.split_path(path)
        if not key:
            if not exist_ok and await (await store.swift_container()).exists():
                raise FileExistsError(path)
            await self._mkdir(path)
