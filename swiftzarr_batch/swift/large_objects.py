"""Objects larger than the cluster's ``max_file_size``: Static Large Objects (SLO).

Why: Swift refuses a single PUT above ``max_file_size`` (5 GiB by default) with 413. A zarr
chunk or a copied file can be larger, so the store writes such a value as segments of at most
``max_file_size`` bytes into ``<container>_segments`` (python-swiftclient's convention, so the
``swift`` CLI understands them) and then a manifest under the object's own name, last: until
the manifest exists, readers see the old value or none, never a partial one. A GET of the
manifest returns the joined body; its ETag is the MD5 of the segments' ETags, so the whole
body's MD5 is stored as metadata (``session.BODY_MD5_HEADER``) and checked on every full read.

Deleting a manifest with ``?multipart-manifest=delete`` removes its segments; overwriting one
with another SLO removes the old segments once the new manifest is in place. (Overwriting a
large object with a small value leaves its old segments behind: finding them would cost a HEAD
on every small write.)

What the cluster allows (``max_file_size``, SLO's manifest limits) is read by ``capabilities``;
this module only decides how to split a body by it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from typing import Any

from swiftzarr_batch.errors import ConfigurationError, SwiftHTTPError
from swiftzarr_batch.swift.capabilities import (
    DEFAULT_MAX_FILE_SIZE,
    SMALL_ENOUGH,
    Limits,
    limits,
)
from swiftzarr_batch.swift.checksums import BODY_MD5_HEADER, md5_hex
from swiftzarr_batch.swift.container import SwiftContainer
from swiftzarr_batch.swift.names import MAX_OBJECT_NAME_BYTES, quote_path
from swiftzarr_batch.swift.session import SwiftSession
from swiftzarr_batch.swift.status import NOT_FOUND, PRECONDITION_FAILED, check_bulk_delete

__all__ = [
    "DEFAULT_MAX_FILE_SIZE",
    "SMALL_ENOUGH",
    "Limits",
    "delete_large",
    "delete_paths",
    "delete_segments_quietly",
    "is_large",
    "limits",
    "put_large",
    "segment_container",
    "segments_of",
]
# Limits, limits, DEFAULT_MAX_FILE_SIZE and SMALL_ENOUGH are ``capabilities``'; re-exported
# because the store and the tests have always found them here.

log = logging.getLogger(__name__)

SEGMENT_SUFFIX = "_segments"
_PARALLEL_SEGMENTS = 4


def segment_container(container: str) -> str:
    """The container that holds the segments of ``container``'s large objects (``<name>_segments``,
    python-swiftclient's convention, so its tools find them)."""
    return f"{container}{SEGMENT_SUFFIX}"


def is_large(listing_entry: dict[str, Any]) -> bool:
    """True for a container listing entry of an SLO manifest (Swift lists its ``slo_etag``)."""
    return "slo_etag" in listing_entry


async def put_large(
    container: SwiftContainer,
    name: str,
    body: bytes | memoryview,
    limit: Limits,
    *,
    if_none_match: bool = False,
    segment_size: int | None = None,
) -> bool:
    """Write ``body`` as segments + manifest; False only when ``if_none_match`` found one.

    Segments that end up unused (a failure, or an existing object under ``if_none_match``)
    are deleted again before returning or raising.
    """
    if not limit.slo:
        raise ConfigurationError(
            f"{name}: {len(body)} bytes exceed the cluster's max_file_size "
            f"({limit.max_file_size}) and the cluster has no SLO middleware (its /info lists no "
            "'slo') to store them as a large object: write smaller chunks"
        )
    size = len(body)
    seg = int(segment_size or limit.max_file_size)
    count = -(-size // seg)
    if count > limit.max_manifest_segments:
        raise ConfigurationError(
            f"{name}: {size} bytes need {count} segments of {seg} bytes, more than the cluster's "
            f"max_manifest_segments ({limit.max_manifest_segments})"
        )
    session = container.session
    segments = SwiftContainer(session, segment_container(container.name), container.writes)
    base = f"{name}/slo/{time.time():.6f}/{size}/{seg}/"
    if len((base + "00000000").encode("utf-8")) > MAX_OBJECT_NAME_BYTES:
        raise ConfigurationError(f"{name[:60]!r}...: too long a name for large-object segments")
    await container.ensure_exists()  # cached per session: no request once known
    await segments.ensure_exists()
    view = memoryview(body).cast("B")
    names = [f"{base}{i:08d}" for i in range(count)]
    md5s: list[str] = [""] * count
    gate = asyncio.Semaphore(_PARALLEL_SEGMENTS)

    async def upload(i: int) -> None:
        part = view[i * seg : (i + 1) * seg]
        async with gate:  # hashed inside the gate: at most _PARALLEL_SEGMENTS threads hash
            md5s[i] = await md5_hex(part)  # in a thread: a segment's MD5 takes seconds
            await segments.put(names[i], part, headers={"ETag": md5s[i]})

    # The whole body's MD5 (seconds for GiBs) runs in a thread while the segments go out.
    body_md5 = asyncio.ensure_future(md5_hex(view))
    try:
        await asyncio.gather(*(upload(i) for i in range(count)))
        old = await segments_of(container, name)
        entries = [
            (f"/{segments.name}/{n}", md5s[i], min(seg, size - i * seg))
            for i, n in enumerate(names)
        ]
        status = await put_manifest(
            container,
            name,
            entries,
            body_md5=await body_md5,
            content_type="application/octet-stream",
            if_none_match=if_none_match,
        )
    except BaseException:
        body_md5.cancel()
        await delete_segments_quietly(segments, names)
        raise
    if status == PRECONDITION_FAILED:
        await delete_segments_quietly(segments, names)
        return False
    stale = [p for p in old if p not in {f"/{segments.name}/{n}" for n in names}]
    if stale:
        await delete_paths(session, stale)
    log.debug("wrote %s/%s as %d segments of %d bytes", container.name, name, count, seg)
    return True


async def put_manifest(
    container: SwiftContainer,
    name: str,
    entries: list[tuple[str, str, int]],
    *,
    body_md5: str,
    content_type: str,
    if_none_match: bool = False,
) -> int:
    """PUT the SLO manifest of ``name`` from ``(segment path, MD5, size)`` entries: the object
    appears. Its ETag is the MD5 of the segments' MD5s (Swift checks it) and it carries the
    whole body's MD5 (``BODY_MD5_HEADER``) for copies and verify. Returns 201, or 412 when
    ``if_none_match`` found an object there; a 404 (a segment or the container gone) raises."""
    manifest = json.dumps(
        [{"path": path, "etag": md5, "size_bytes": size} for path, md5, size in entries]
    ).encode("utf-8")
    headers = container.writes.object_headers(
        {
            "ETag": hashlib.md5("".join(md5 for _, md5, _ in entries).encode("ascii")).hexdigest(),
            BODY_MD5_HEADER: body_md5,
            "Content-Type": content_type,
        }
    )
    if if_none_match:
        headers["If-None-Match"] = "*"
    resp = await container.session.request(
        "PUT",
        quote_path(container.name, name),
        params={"multipart-manifest": "put"},
        headers=headers,
        body=manifest,
        allow=(PRECONDITION_FAILED,),
    )
    if resp.status == NOT_FOUND:
        raise SwiftHTTPError(
            f"PUT {container.name}/{name} (manifest) answered 404: a segment or the container "
            "is gone",
            status=NOT_FOUND,
            method="PUT",
            path=name,
        )
    return resp.status


async def segments_of(container: SwiftContainer, name: str) -> list[str]:
    """Segment paths (``/container/object``) of the manifest at ``name``; [] if none."""
    head = await container.head(name)  # a plain object's body is not worth downloading
    if head is None or "X-Static-Large-Object" not in head.headers:
        return []
    resp = await container.session.request(
        "GET",
        quote_path(container.name, name),
        params={"multipart-manifest": "get", "format": "raw"},
    )
    if resp.status == NOT_FOUND or "X-Static-Large-Object" not in resp.headers:
        return []
    try:
        return [entry["path"] for entry in json.loads(resp.body)]
    except (ValueError, KeyError, TypeError):
        log.warning(
            "could not read the old manifest of %s/%s; its segments are left", container.name, name
        )
        return []


async def delete_paths(session: SwiftSession, paths: list[str]) -> None:
    """Delete objects named by ``/container/object`` paths (an SLO manifest's segments), with one
    bulk delete per container; a refused delete raises (``bulk_delete``)."""
    by_container: dict[str, list[str]] = {}
    for path in paths:
        cont, _, obj = path.lstrip("/").partition("/")
        by_container.setdefault(cont, []).append(obj)
    for cont, objs in by_container.items():
        await SwiftContainer(session, cont).bulk_delete(objs)


async def delete_segments_quietly(segments: SwiftContainer, names: list[str]) -> None:
    """Remove segments a failed large write (or copy) left unused; a failure here is logged,
    not raised, so it never hides the error that made the segments useless."""
    try:
        await segments.bulk_delete(names)
    except Exception as exc:
        log.warning(
            "could not remove %d unused segments of %s (%s)",
            len(names),
            segments.name,
            type(exc).__name__,
        )


async def delete_large(container: SwiftContainer, name: str) -> bool:
    """Delete the manifest at ``name`` and its segments; False if it was missing."""
    resp = await container.session.request(
        "DELETE",
        quote_path(container.name, name),
        params={"multipart-manifest": "delete"},
        headers={"Accept": "application/json"},
    )
    if resp.status == NOT_FOUND:
        return False
    result = check_bulk_delete(
        resp.body,
        what=f"deleting large object {container.name}/{name}",
        http_status=resp.status,
        method="DELETE",
        path=name,
    )
    if result is None:
        return True  # an old SLO middleware answers 204 without a body
    return result.deleted > 0 or result.not_found == 0
