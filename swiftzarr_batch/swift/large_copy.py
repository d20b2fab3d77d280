"""Copying a Static Large Object segment by segment: never its whole body in the client.

Why: a plain server-side copy (``X-Copy-From``) of an SLO manifest makes *one* object of the
joined body, which the cluster refuses beyond ``max_file_size`` (that is why it is an SLO), and
reading it through the client held the whole body (GBs). Its manifest says what it is made of
(``?multipart-manifest=get``: each segment's path, ETag and size), so a copy is:

- each segment copied to the destination's segment container: server-side (``X-Copy-From``,
  no bytes through the client) when both ends are on one cluster with one token, else read
  and written one segment at a time (each GET checked against the segment's ETag, each PUT
  sent with it, so the server checks it too);
- then a new manifest under the destination name, last (readers see the old value or the new
  one, never a part), carrying the source's whole-body MD5 (``BODY_MD5_HEADER``; computed on
  the way through when the source has none and the bytes pass the client);
- then the old segments of what the new manifest replaced are deleted.

Segment names follow ``large_objects.put_large`` (``<name>/slo/<time>/<size>/<segment size>/``
+ an 8-digit index in ``<container>_segments``), so ``delete_large`` and the ``swift`` CLI
understand the copies.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from swiftzarr_batch.errors import IntegrityError, SwiftHTTPError
from swiftzarr_batch.swift.checksums import BODY_MD5_HEADER
from swiftzarr_batch.swift.container import SwiftContainer
from swiftzarr_batch.swift.large_objects import (
    delete_paths,
    delete_segments_quietly,
    segment_container,
    segments_of,
)
from swiftzarr_batch.swift.names import quote_path
from swiftzarr_batch.swift.status import NOT_FOUND

__all__ = ["LargeCopy", "copy_large", "manifest_of"]

log = logging.getLogger(__name__)

_PARALLEL_SERVER_SIDE = 4  # segment copies the cluster runs at once for one object


@dataclass(frozen=True)
class LargeCopy:
    """What ``copy_large`` wrote: the object's size, its body's MD5 ("" if unknown), and the
    bytes that passed through the client."""

    size: int
    md5: str
    through_client: int


async def manifest_of(
    container: SwiftContainer, name: str
) -> tuple[list[dict[str, Any]], str] | None:
    """The segments of the SLO at ``name`` (``path``, ``etag``, ``size_bytes`` each) and its
    whole-body MD5 header ("" if none); None when ``name`` is missing or not an SLO."""
    resp = await container.session.request(
        "GET",
        quote_path(container.name, name),
        params={"multipart-manifest": "get", "format": "raw"},
    )
    if resp.status == NOT_FOUND or "X-Static-Large-Object" not in resp.headers:
        return None
    try:
        entries = json.loads(resp.body)
        segments = [
            {"path": e["path"], "etag": e["etag"], "size_bytes": int(e["size_bytes"])}
            for e in entries
        ]
    except (ValueError, KeyError, TypeError):
        raise IntegrityError(
            f"{container.name}/{name}: its large-object manifest cannot be read",
            method="GET",
            path=name,
        ) from None
    return segments, resp.headers.get(BODY_MD5_HEADER, "")


async def copy_large(
    source: SwiftContainer,
    src_name: str,
    dest: SwiftContainer,
    dst_name: str,
    *,
    server_side: bool,
    src_account: str | None = None,
) -> LargeCopy | None:
    """Copy the SLO ``source/src_name`` to ``dest/dst_name`` segment by segment (see the module
    docstring); None when the source is missing or is not an SLO (the caller copies it as a
    plain object)."""
    found = await manifest_of(source, src_name)
    if found is None:
        return None
    segments, body_md5 = found
    size = sum(s["size_bytes"] for s in segments)
    largest = max((s["size_bytes"] for s in segments), default=0)
    seg_container = SwiftContainer(dest.session, segment_container(dest.name), dest.writes)
    await dest.ensure_exists()
    await seg_container.ensure_exists()
    base = f"{dst_name}/slo/{time.time():.6f}/{size}/{largest}/"
    names = [f"{base}{i:08d}" for i in range(len(segments))]
    through = 0
    try:
        if server_side:
            await _copy_segments_server_side(segments, seg_container, names, src_account)
        else:
            through, computed = await _copy_segments_through(source, segments, seg_container, names)
            body_md5 = body_md5 or computed
        old = await segments_of(dest, dst_name)
        await _put_manifest(dest, dst_name, seg_container.name, names, segments, body_md5)
    except BaseException:
        await delete_segments_quietly(seg_container, names)
        raise
    new = {f"/{seg_container.name}/{n}" for n in names}
    stale = [p for p in old if p not in new]
    if stale:
        await delete_paths(dest.session, stale)
    log.debug("copied %s/%s as %d segments", dest.name, dst_name, len(names))
    return LargeCopy(size, body_md5, through)


def _split(path: str) -> tuple[str, str]:
    container, _, name = path.lstrip("/").partition("/")
    return container, name


async def _copy_segments_server_side(
    segments: list[dict[str, Any]],
    seg_container: SwiftContainer,
    names: list[str],
    src_account: str | None,
) -> None:
    gate = asyncio.Semaphore(_PARALLEL_SERVER_SIDE)

    async def one(i: int) -> None:
        cont, name = _split(segments[i]["path"])
        async with gate:
            resp = await seg_container.copy_from(cont, name, names[i], src_account=src_account)
        if resp is None:
            raise SwiftHTTPError(
                f"segment {segments[i]['path']} of a large object is missing",
                status=NOT_FOUND,
                method="PUT",
                path=names[i],
            )
        etag = resp.headers.get("Etag", "").strip('"')
        if etag and etag != segments[i]["etag"]:
            raise IntegrityError(
                f"segment {segments[i]['path']} changed while it was copied",
                method="PUT",
                path=names[i],
            )

    await asyncio.gather(*(one(i) for i in range(len(segments))))


async def _copy_segments_through(
    source: SwiftContainer,
    segments: list[dict[str, Any]],
    seg_container: SwiftContainer,
    names: list[str],
) -> tuple[int, str]:
    """One segment at a time: the client never holds more than one segment's bytes."""
    whole = hashlib.md5()
    through = 0
    for segment, name in zip(segments, names, strict=True):
        cont, src_name = _split(segment["path"])
        resp = await SwiftContainer(source.session, cont).get(src_name)  # checked vs its ETag
        if resp is None:
            raise SwiftHTTPError(
                f"segment {segment['path']} of a large object is missing",
                status=NOT_FOUND,
                method="GET",
                path=segment["path"],
            )
        body = resp.body
        whole.update(body)
        await seg_container.put(name, memoryview(body), headers={"ETag": segment["etag"]})
        through += len(body)
        del body, resp
    return through, whole.hexdigest()


async def _put_manifest(
    dest: SwiftContainer,
    name: str,
    seg_container: str,
    names: list[str],
    segments: list[dict[str, Any]],
    body_md5: str,
) -> None:
    manifest = json.dumps(
        [
            {"path": f"/{seg_container}/{n}", "etag": s["etag"], "size_bytes": s["size_bytes"]}
            for n, s in zip(names, segments, strict=True)
        ]
    ).encode("utf-8")
    headers = {
        "ETag": hashlib.md5("".join(s["etag"] for s in segments).encode("ascii")).hexdigest(),
        "Content-Type": "application/octet-stream",
    }
    if body_md5:
        headers[BODY_MD5_HEADER] = body_md5
    await dest.session.request(
        "PUT",
        quote_path(dest.name, name),
        params={"multipart-manifest": "put"},
        headers=dest.writes.object_headers(headers),  # the store's expiry, as for every write
        body=manifest,
    )
