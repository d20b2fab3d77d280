"""Moving whole files for the ``swift://`` file system: local upload and download, server-side
copy, one-shot writes. Each works in bounded memory whatever the file's size.

- ``write_object``: a body already in memory (``pipe_file``): one PUT with its MD5, or a Static
  Large Object above the cluster's ``max_file_size``; optionally exclusive.
- ``upload_file``: a local file read ``PARALLEL`` segments ahead, never whole: one PUT when it
  is small, else a ``SegmentedUpload`` (segments of ``SEGMENT`` bytes, or larger when the file
  would need more segments than the cluster allows).
- ``download_file``: ranged GETs of ``SEGMENT`` bytes, ``PARALLEL`` at a time, written in order
  while the whole body's MD5 is computed and checked against the object's (its ETag, or for a
  large object the MD5 it carries); a mismatch deletes the local file and raises.
- ``copy_object``: server-side (``X-Copy-From``), a large object segment by segment
  (``swift.large_copy``): no body passes through the client.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from swiftzarr_batch.errors import IntegrityError
from swiftzarr_batch.store.fs_paths import content_type_for
from swiftzarr_batch.swift.capabilities import large_object_limits, limits
from swiftzarr_batch.swift.checksums import BODY_MD5_HEADER
from swiftzarr_batch.swift.container import SwiftContainer
from swiftzarr_batch.swift.large_copy import copy_large
from swiftzarr_batch.swift.large_objects import put_large
from swiftzarr_batch.swift.segmented_upload import SegmentedUpload

__all__ = ["PARALLEL", "SEGMENT", "copy_object", "download_file", "upload_file", "write_object"]

SEGMENT = 32 * 2**20  # bytes per segment / ranged GET
PARALLEL = 4  # segments or ranges in flight per file

Progress = Callable[[int], object]


async def write_object(
    container: SwiftContainer, name: str, body: bytes | memoryview, *, exclusive: bool = False
) -> bool:
    """PUT ``body`` (a large object above ``max_file_size``); False when ``exclusive`` found
    an object there already."""
    limit = await large_object_limits(container.session, len(body))
    if limit is not None:
        return await put_large(container, name, body, limit, if_none_match=exclusive)
    headers = {"Content-Type": content_type_for(name)}
    return await container.put(name, body, if_none_match=exclusive, headers=headers)


async def upload_file(
    container: SwiftContainer,
    name: str,
    local: str | os.PathLike[str],
    *,
    exclusive: bool = False,
    progress: Progress | None = None,
) -> bool:
    """Upload the local file ``local`` to ``name`` (see the module docstring)."""
    size = os.path.getsize(local)
    limit = await limits(container.session)
    if size <= min(SEGMENT, limit.max_file_size):
        body = await asyncio.to_thread(Path(local).read_bytes)
        created = await write_object(container, name, body, exclusive=exclusive)
        if progress is not None:
            progress(len(body))
        return created
    per_segment = -(-size // max(limit.max_manifest_segments, 1))
    seg = min(max(SEGMENT, per_segment), limit.max_file_size)
    upload = SegmentedUpload(container, name, limit)
    await upload.start()
    whole = hashlib.md5()
    gate = asyncio.Semaphore(PARALLEL)
    tasks: list[asyncio.Task[None]] = []

    async def send(index: int, part: bytes) -> None:
        try:
            await upload.add(index, part)
            if progress is not None:
                progress(len(part))
        finally:
            gate.release()

    try:
        with open(local, "rb") as handle:
            for index in range(-(-size // seg)):
                await gate.acquire()  # at most PARALLEL segments read and not yet sent
                part = await asyncio.to_thread(handle.read, seg)
                await asyncio.to_thread(whole.update, part)
                tasks.append(asyncio.ensure_future(send(index, part)))
                del part
                failed = [t for t in tasks if t.done() and t.exception() is not None]
                if failed:
                    await failed[0]
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await upload.abort()
        raise
    return await upload.complete(
        whole.hexdigest(), content_type=content_type_for(name), if_none_match=exclusive
    )


async def download_file(
    container: SwiftContainer,
    name: str,
    local: str | os.PathLike[str],
    *,
    progress: Progress | None = None,
) -> bool:
    """Download ``name`` into the local file ``local``; False when it is missing (nothing is
    written then)."""
    head = await container.head(name)
    if head is None:
        return False
    size = int(head.headers["Content-Length"])
    large = "X-Static-Large-Object" in head.headers
    expected = head.headers.get(BODY_MD5_HEADER if large else "Etag", "").strip('"')
    etag = head.headers.get("Etag", "").strip('"')
    whole = hashlib.md5()
    try:
        with open(local, "wb") as out:
            for window in range(0, size, SEGMENT * PARALLEL):
                ends = range(window, min(window + SEGMENT * PARALLEL, size), SEGMENT)
                parts = await asyncio.gather(
                    *(
                        _range(container, name, start, min(start + SEGMENT, size), etag)
                        for start in ends
                    )
                )
                for part in parts:
                    await asyncio.to_thread(whole.update, part)
                    await asyncio.to_thread(out.write, part)
                    if progress is not None:
                        progress(len(part))
                del parts
        if expected and whole.hexdigest() != expected:
            raise IntegrityError(
                f"GET {container.name}/{name}: the downloaded bytes do not match the object's "
                "MD5 (it changed while it was read, or was corrupted)",
                method="GET",
                path=name,
            )
    except BaseException:
        Path(local).unlink(missing_ok=True)
        raise
    return True


async def _range(container: SwiftContainer, name: str, start: int, end: int, etag: str) -> bytes:
    resp = await container.get(name, range_header=f"bytes={start}-{end - 1}")
    if resp is None:
        raise FileNotFoundError(f"{container.name}/{name} disappeared while it was read")
    served = resp.headers.get("Etag", "").strip('"')
    if etag and served and served != etag:
        raise IntegrityError(
            f"GET {container.name}/{name}: the object changed while it was read",
            method="GET",
            path=name,
        )
    if len(resp.body) != end - start:
        raise IntegrityError(
            f"GET {container.name}/{name}: {len(resp.body)} bytes for a range of {end - start}",
            method="GET",
            path=name,
        )
    return bytes(resp.body)


async def copy_object(
    source: SwiftContainer, src_name: str, dest: SwiftContainer, dst_name: str
) -> bool:
    """Server-side copy (see the module docstring); False when the source is missing."""
    head = await source.head(src_name)  # a plain object's body is not read to find out
    if head is None:
        return False
    if "X-Static-Large-Object" in head.headers:
        return await copy_large(source, src_name, dest, dst_name, server_side=True) is not None
    return await dest.copy_from(source.name, src_name, dst_name) is not None
