"""Checksums of bodies on the data path: the MD5 sent as a PUT's ETag, the check of a GET's body
against its ETag (or, for a large object, against the whole body's MD5 kept as metadata).

Why a module of its own: the session, large objects and the store's object view all hash
bodies, and big bodies must be hashed off the event loop (hashlib releases the GIL), or every
other request of the loop stalls while an 8 MiB chunk is hashed.
"""

from __future__ import annotations

import asyncio
import hashlib
import re

from swiftzarr_batch.swift.body_digest import BodyDigest
from swiftzarr_batch.swift.http_messages import Headers
from swiftzarr_batch.swift.retry import RetryableFailure

__all__ = ["BODY_MD5_HEADER", "MD5_OFF_LOOP_BYTES", "check_body_md5", "md5_hex"]

_MD5_HEX = re.compile(r"^[0-9a-f]{32}$")
#: Metadata of a large object holding its whole body's MD5 (its ETag is not that MD5).
BODY_MD5_HEADER = "X-Object-Meta-Swiftzarr-Body-Md5"

#: Bodies this big or bigger are hashed in a worker thread (hashlib releases the GIL): the MD5
#: of an 8 MiB chunk takes ~11 ms, which on the event loop would stall every other request.
MD5_OFF_LOOP_BYTES = 1 << 20


async def md5_hex(data: bytes | bytearray | memoryview) -> str:
    """Hex MD5 of ``data``; off the event loop for big bodies."""
    if memoryview(data).nbytes >= MD5_OFF_LOOP_BYTES:
        return await asyncio.to_thread(lambda: hashlib.md5(data).hexdigest())
    return hashlib.md5(data).hexdigest()


async def check_body_md5(
    headers: Headers, data: bytes | bytearray, digest: BodyDigest | None = None
) -> None:
    """Raise RetryableFailure if a plain object's body does not hash to its ETag.

    Large-object manifests (SLO/DLO) carry a different ETag: they are checked against the
    whole body's MD5 that ``large_objects`` stores as metadata, or skipped without it, as are
    range reads. ``digest``: the body's MD5 already under way since it started arriving
    (``body_digest``), used instead of hashing ``data`` now.
    """
    if "Content-Range" in headers:
        return
    etag = headers.get("Etag", "").strip('"')
    if "X-Static-Large-Object" in headers or "X-Object-Manifest" in headers:
        etag = headers.get(BODY_MD5_HEADER, "")
    if not _MD5_HEX.match(etag):
        return
    got = await digest.hexdigest() if digest is not None else await md5_hex(data)
    if got != etag:
        raise RetryableFailure("MD5 mismatch")
