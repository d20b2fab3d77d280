"""Object operations on one Swift container, in Swift's terms (names, listings, bulk delete).

Why a layer of its own: the store (zarr's view: keys relative to a prefix, Buffers), the copy
tools and the locks all need the same container operations, with the same paging, the same
"404 on PUT means create the container" rule and the same parallel bulk deletes. It knows
Swift's API shapes but not HTTP status meanings (``status`` does, including what a bulk-delete
result says) nor retries or authentication (``session`` does).

It is also where the store meets containers as people make them: listings leave out directory
markers (``is_marker``) unless asked for them, deletes fall back to single DELETEs where the
cluster has no bulk middleware or a name cannot be a bulk-delete line (``bulk``), and every
write carries the store's ``WriteOptions`` (storage policy, expiry).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Sequence
from typing import Any
from urllib.parse import quote

from swiftzarr_batch.errors import ConfigurationError, SwiftHTTPError
from swiftzarr_batch.swift import bulk
from swiftzarr_batch.swift.capabilities import bulk_delete_limits, cluster_info, storage_policies
from swiftzarr_batch.swift.names import quote_path
from swiftzarr_batch.swift.session import Response, SwiftSession
from swiftzarr_batch.swift.status import (
    NO_CONTENT,
    NOT_FOUND,
    PRECONDITION_FAILED,
    RANGE_NOT_SATISFIABLE,
    check_bulk_delete,
)
from swiftzarr_batch.swift.write_options import STORAGE_POLICY, WriteOptions, resolve_policy

log = logging.getLogger(__name__)

LISTING_PAGE = 10_000  # Swift's default container_listing_limit
BULK_DELETE_PARALLEL = 10  # concurrent bulk-delete requests (see bulk_delete)
# Names per request when there are many; well below the middleware's max_deletes_per_request
# (10 000 by default), and small enough that the requests finish together.
BULK_DELETE_SPLIT = 1_000
BULK_DELETE_MIN = 100  # names per request below which splitting further does not pay
SINGLE_DELETE_PARALLEL = 32  # concurrent DELETEs where a bulk request cannot be used
#: Content types of directory markers: Swift's (and swiftclient's) own, and the historic one.
MARKER_TYPES = frozenset({"application/directory", "text/directory"})
_warned_policy: set[tuple[str, str]] = set()


_MAX_LIMIT = re.compile(rb"Maximum limit is (\d+)")
_cluster_page: dict[str, int] = {}
"""A storage URL -> the cluster's ``container_listing_limit`` when it is below LISTING_PAGE."""


def listing_page_size(storage_url: str) -> int:
    """The listing page size used for the account at ``storage_url``: Swift's default, or
    the cluster's lower ``container_listing_limit`` once a listing learned it."""
    return _cluster_page.get(storage_url, LISTING_PAGE)


_EMPTY_OBJECT = re.compile(rb'"bytes"\s*:\s*0\s*[,}]')
"""An entry of 0 bytes in a raw listing page: only those can be directory markers, so a page
without one (the usual page of chunks) is passed on without a Python step per entry."""
_LISTING_KEY = re.compile(rb'"(?:name|subdir)"\s*:\s*"')
_LISTING_TAIL = 16 * 1024  # holds the last entry: names are <= 1 024 bytes (6x when escaped)
_DECODER = json.JSONDecoder()


def last_name_if_full(body: bytes | bytearray, limit: int) -> str | None:
    """The last entry's name (or subdir) of a JSON listing page that holds ``limit`` entries,
    without decoding the page; None if the page is not full or its tail cannot be read.

    A JSON string never holds an unescaped quote, so ``"name": `` (and ``"subdir": ``) occurs
    in the raw body exactly once per entry, as a key: counting them tells a full page. (Another
    separator than Swift's ``": "`` just turns the shortcut off.)
    """
    if body.count(b'"name": ') + body.count(b'"subdir": ') < limit:
        return None
    tail = bytes(body[-_LISTING_TAIL:])
    found = None
    for match in _LISTING_KEY.finditer(tail):  # the last key of the tail: the last entry's
        found = match
    if found is None:
        return None
    try:
        value, _ = _DECODER.raw_decode(tail[found.end() - 1 :].decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, str) else None


def is_marker(entry: dict[str, Any]) -> bool:
    """A directory marker, not data: an empty object named ``.../`` (Horizon's and
    Cyberduck's "folders") or typed ``application/directory`` (``swift upload`` of an empty
    folder). A zarr key never ends in ``/`` and the store never writes that type; an object
    with bytes in it is data whatever its name (a listing shows it, verify calls it an
    orphan)."""
    name = entry.get("name")
    if not isinstance(name, str) or entry.get("bytes"):
        return False  # a ``subdir`` entry of a delimiter listing, or data (the common case)
    if name[-1:] == "/":
        return True
    kind = str(entry.get("content_type", "")).split(";", 1)[0].strip().lower()
    return kind in MARKER_TYPES


def is_marker_answer(name: str, resp: Response) -> bool:
    """The answer to a HEAD or GET of ``name`` is a directory marker's (``is_marker`` told from
    headers: an empty object named ``.../`` or of a marker type). A marker is not a key: reads
    of it say "missing", as listings leave it out. The size comes from ``Content-Range`` when
    there is one (a range GET, a 416 of a range past the end), else ``Content-Length``."""
    kind = (resp.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if name[-1:] != "/" and kind not in MARKER_TYPES:
        return False  # the common case: one header lookup
    content_range = resp.headers.get("Content-Range")
    size = content_range.rsplit("/", 1)[-1] if content_range else resp.headers.get("Content-Length")
    return size is not None and size.strip() == "0"


def _drop(task: asyncio.Task[Response]) -> None:
    task.cancel()
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: no "never retrieved" warning


class SwiftContainer:
    """One container seen through a shared SwiftSession."""

    def __init__(
        self, session: SwiftSession, name: str, writes: WriteOptions | None = None
    ) -> None:
        self.session = session
        self.name = name
        self.writes = writes or WriteOptions()
        self._path = quote_path(name)

    def __repr__(self) -> str:
        return f"SwiftContainer({self.session.storage_url!r}, {self.name!r})"

    def _obj(self, name: str) -> str:
        return f"{self._path}/{quote(name, safe='/')}"

    # -- container --------------------------------------------------------------------------
    async def exists(self) -> bool:
        """Whether the container exists (one HEAD). Only a 404 says no; any other failure raises, so
        an auth or server error is never taken for a missing container."""
        resp = await self.session.request("HEAD", self._path)
        return resp.status != NOT_FOUND

    async def ensure_exists(self) -> None:
        """Create the container if it is missing (HEAD, then PUT only on 404), in the store's
        storage policy; cached per session, so a dask worker does this at most once.

        An unknown policy is a ConfigurationError naming the cluster's; an existing container
        in another policy is used as it is (Swift cannot move it), with one WARNING."""
        if self.name in self.session.known_containers:
            return
        wanted = self.writes.storage_policy
        policy = wanted and resolve_policy(wanted, await storage_policies(self.session), self.name)
        head = await self.session.request("HEAD", self._path)
        if head.status == NOT_FOUND:
            await self._create(policy)
        elif policy and head.headers.get(STORAGE_POLICY, policy).lower() != policy.lower():
            where = (self.session.storage_url, self.name)
            if where not in _warned_policy:
                _warned_policy.add(where)
                log.warning(
                    "container %s exists in storage policy %s, not %s: using it as it is "
                    "(Swift cannot move a container to another policy)",
                    self.name,
                    head.headers.get(STORAGE_POLICY),
                    policy,
                )
        self.session.known_containers.add(self.name)

    async def _create(self, policy: str | None) -> None:
        headers = {STORAGE_POLICY: policy} if policy else None
        try:
            await self.session.request("PUT", self._path, headers=headers)
        except SwiftHTTPError as exc:
            if policy and exc.status == 400:  # /info hid the policies; the server judged
                raise ConfigurationError(
                    f"the cluster refused storage policy {policy!r} for container "
                    f"{self.name!r}: {exc}"
                ) from None
            raise
        log.info("created container %s%s", self.name, f" (policy {policy})" if policy else "")

    # -- objects ----------------------------------------------------------------------------
    async def get(
        self,
        name: str,
        *,
        range_header: str | None = None,
        check_md5: bool = True,
    ) -> Response | None:
        """GET an object (or a byte range); None only when the server says 404, or when the
        object is a directory marker (``is_marker_answer``), which is no key.

        ``check_md5=False`` hands back the body as served, even if it disagrees with its ETag
        (``verify_store`` compares them itself, to report corruption instead of retrying it).
        """
        headers = {"Range": range_header} if range_header else None
        resp = await self.session.request(
            "GET",
            self._obj(name),
            headers=headers,
            check_md5=check_md5 and range_header is None,
            allow=(RANGE_NOT_SATISFIABLE,),
        )
        return None if resp.status == NOT_FOUND or is_marker_answer(name, resp) else resp

    async def get_newest(self, name: str) -> Response | None:
        """GET the newest replica's object (``X-Newest: true``: the proxy asks every replica
        and serves the latest, not the first to answer), MD5-checked; None only on 404. For
        small objects that must not be read stale, such as locks."""
        resp = await self.session.request(
            "GET", self._obj(name), headers={"X-Newest": "true"}, check_md5=True
        )
        return None if resp.status == NOT_FOUND or is_marker_answer(name, resp) else resp

    async def head(self, name: str) -> Response | None:
        """The object's headers; None when missing (404) or a directory marker."""
        resp = await self.session.request("HEAD", self._obj(name))
        return None if resp.status == NOT_FOUND or is_marker_answer(name, resp) else resp

    async def put(
        self,
        name: str,
        body: bytes | memoryview,
        *,
        if_none_match: bool = False,
        headers: dict[str, str] | None = None,
    ) -> bool:
        """PUT an object with its MD5; returns False only when ``if_none_match`` found one.

        A 404 on PUT means the container is missing: create it and try once more (so opening a
        store for writes costs no extra round trip while the container exists).
        """
        send = self.writes.object_headers(headers)
        if if_none_match:
            send["If-None-Match"] = "*"
        path = self._obj(name)
        resp = await self.session.request(
            "PUT", path, headers=send, body=body, allow=(PRECONDITION_FAILED,)
        )
        if resp.status == NOT_FOUND:
            self.session.known_containers.discard(self.name)
            await self.ensure_exists()
            # Concurrent PUTs that saw the container missing can leave the proxy's cached
            # "no such container" behind the creation for a moment: a few short waits.
            for pause in (0.0, 0.5, 1.0, 2.0):
                await asyncio.sleep(pause)
                resp = await self.session.request(
                    "PUT", path, headers=send, body=body, allow=(PRECONDITION_FAILED,)
                )
                if resp.status != NOT_FOUND:
                    break
            if resp.status == NOT_FOUND:
                raise SwiftHTTPError(
                    f"PUT {path} answered 404 right after creating container {self.name}",
                    status=NOT_FOUND,
                    method="PUT",
                    path=path,
                )
        return resp.status != PRECONDITION_FAILED

    async def copy_from(
        self,
        src_container: str,
        src_name: str,
        dst_name: str,
        *,
        src_account: str | None = None,
    ) -> Response | None:
        """Server-side copy ``src_container/src_name`` to ``dst_name`` here (PUT + X-Copy-From).

        No object body passes through the client. ``src_account`` (e.g. ``AUTH_other``) copies
        across accounts on the same cluster; the token must be allowed to read there. Returns
        the response (its ``Etag`` is the new object's MD5), or None when the source is 404.
        """
        # no body, hence no ETag from us: the copy middleware sends the source's ETag itself,
        # so the server verifies the copied bytes
        headers = {
            "X-Copy-From": f"/{quote(src_container, safe='')}/{quote(src_name, safe='/')}",
            "Content-Length": "0",
        }
        if src_account:
            headers["X-Copy-From-Account"] = quote(src_account, safe="")
        headers = self.writes.object_headers(headers)
        resp = await self.session.request("PUT", self._obj(dst_name), headers=headers)
        if resp.status == NOT_FOUND:  # the source, or this container, is missing: make sure
            self.session.known_containers.discard(self.name)
            await self.ensure_exists()
            resp = await self.session.request("PUT", self._obj(dst_name), headers=headers)
        return None if resp.status == NOT_FOUND else resp

    async def delete(self, name: str) -> bool:
        """DELETE an object; False if it was already missing."""
        resp = await self.session.request("DELETE", self._obj(name))
        return resp.status != NOT_FOUND

    # -- listings ---------------------------------------------------------------------------
    async def list_pages(
        self,
        prefix: str = "",
        *,
        delimiter: str | None = None,
        limit: int | None = None,
        markers: bool = False,
    ) -> AsyncGenerator[list[dict[str, Any]], None]:
        """Yield listing pages (JSON entries) until the listing ends, following ``marker``.

        Directory markers (``is_marker``) are left out unless ``markers`` (deletes of a prefix
        want them); a page may then be shorter than ``limit``, or empty.

        Streams: memory stays about two pages whatever the number of objects (the next page is
        requested as soon as a full page arrives, so the server works on it while the caller
        uses this one). A missing container lists as empty. Pages are in Swift's order: by
        the names' UTF-8 bytes, which is Python's ``str`` order (code points) for every name
        Swift accepts (valid UTF-8, hence no surrogates).

        ``limit`` None: Swift's default page (10 000), or the cluster's smaller
        ``container_listing_limit``, learned from its first 412 "Maximum limit is N".
        """
        learn = limit is None  # the default page: lowered if the cluster refuses it
        if limit is None:
            limit = listing_page_size(self.session.storage_url)
        params = {"format": "json", "limit": str(limit)}
        if prefix:
            params["prefix"] = prefix
        if delimiter:
            params["delimiter"] = delimiter

        def fetch(marker: str) -> asyncio.Task[Response]:
            return asyncio.ensure_future(
                self.session.request(
                    "GET",
                    self._path,
                    params={**params, "marker": marker} if marker else params,
                    allow=(PRECONDITION_FAILED,) if learn else (),
                )
            )

        pending: asyncio.Task[Response] | None = fetch("")
        try:
            while pending is not None:
                resp, pending = await pending, None
                if resp.status == PRECONDITION_FAILED:  # only the first page can be refused
                    limit = await self._learn_page_size(resp)
                    params["limit"], learn = str(limit), False
                    pending = fetch("")
                    continue
                learn = False
                if resp.status in (NOT_FOUND, NO_CONTENT) or not resp.body:
                    return
                # A full page: ask for the next one before decoding this one (~20 ms for 10 000
                # entries), with the marker read from the body's tail; checked after decoding.
                guess = last_name_if_full(resp.body, limit)
                if guess is not None:
                    pending = fetch(guess)
                page = json.loads(resp.body)
                if not page:
                    return
                last = page[-1]
                marker = last.get("name") or last.get("subdir")
                if len(page) >= limit and marker != guess:  # the guess was wrong: ask again
                    if pending is not None:
                        _drop(pending)
                    pending = fetch(marker)
                if markers or _EMPTY_OBJECT.search(resp.body) is None:
                    yield page  # no empty object on the page, hence no marker (most pages)
                else:
                    yield [e for e in page if not is_marker(e)]
        finally:
            if pending is not None:  # the caller stopped early, or this one failed
                _drop(pending)

    async def list_level(self, prefix: str = "") -> AsyncIterator[dict[str, Any]]:
        """The entries of one level under ``prefix`` (a delimiter listing: objects, and
        ``subdir`` entries for what lies deeper), without directory markers: a ``subdir`` that
        holds only markers (an empty "folder" someone made) is left out too. That costs one
        small listing per ``subdir``, run ``SINGLE_DELETE_PARALLEL`` at a time."""
        gate = asyncio.Semaphore(SINGLE_DELETE_PARALLEL)

        async def holds_data(subdir: str) -> bool:
            async with gate, contextlib.aclosing(self.list_pages(subdir, limit=100)) as pages:
                async for page in pages:
                    if page:
                        return True
                return False

        async for page in self.list_pages(prefix, delimiter="/"):
            subdirs = [e["subdir"] for e in page if "subdir" in e]
            kept = await asyncio.gather(*(holds_data(d) for d in subdirs))
            empty = {d for d, keep in zip(subdirs, kept, strict=True) if not keep}
            for entry in page:
                if entry.get("subdir") not in empty:
                    yield entry

    async def _learn_page_size(self, resp: Response) -> int:
        """The cluster's maximum page from its 412 "Maximum limit is N" (remembered per storage
        URL, so only the first listing of a process pays the refused request)."""
        found = _MAX_LIMIT.search(bytes(resp.body[:200]))
        if found is None or int(found.group(1)) < 1:
            raise SwiftHTTPError(
                f"listing {self.name} refused with 412: {bytes(resp.body[:200])!r}",
                status=PRECONDITION_FAILED,
                method="GET",
                path=self._path,
            )
        limit = int(found.group(1))
        _cluster_page[self.session.storage_url] = limit
        log.info("%s lists at most %d names per page", self.session.storage_url, limit)
        return limit

    # -- bulk delete ------------------------------------------------------------------------
    async def bulk_delete(self, names: Iterable[str]) -> int:
        """Delete many objects with the bulk middleware (parallel requests of <= 1 000 names).

        The middleware answers 200 even when some deletes fail; its JSON body is read and any
        error other than "not found" raises a ``BulkDeleteError`` naming the refused objects.
        Names that cannot be a bulk-delete line (``bulk``), and every name on a cluster
        without the middleware (``/info`` has no ``bulk_delete``), are deleted with parallel
        single DELETEs. Returns how many objects were deleted (not counting missing ones).
        """
        # The middleware deletes only ``delete_concurrency`` (2) objects at a time per request,
        # so one big request is slow: split the names into requests of at most
        # BULK_DELETE_SPLIT names, BULK_DELETE_PARALLEL of them at once (python-swiftclient's
        # `swift delete` does the same: 10 requests of 1 000). Smaller requests also keep one
        # slow request from holding up the end.
        todo = list(names)
        if not todo:
            return 0
        per_request = await bulk_delete_limits(self.session)
        if per_request is None:
            return await self.delete_each(todo)
        limit = bulk.max_line_bytes(await cluster_info(self.session))
        lines, alone = bulk.split_names(self.name, todo, limit)
        split = min(BULK_DELETE_SPLIT, per_request)
        batches = bulk.batches(lines, split, BULK_DELETE_PARALLEL, min(BULK_DELETE_MIN, split))
        gate = asyncio.Semaphore(BULK_DELETE_PARALLEL)

        async def one(batch: list[tuple[str, bytes]]) -> int:
            async with gate:
                return await self._bulk_delete_batch(batch)

        done = await asyncio.gather(*(one(b) for b in batches), self.delete_each(alone))
        return sum(done)

    async def delete_each(self, names: Sequence[str]) -> int:
        """Delete ``names`` with single DELETEs, ``SINGLE_DELETE_PARALLEL`` at a time; how many
        existed."""
        gate = asyncio.Semaphore(SINGLE_DELETE_PARALLEL)

        async def one(name: str) -> bool:
            async with gate:
                return await self.delete(name)

        return sum(await asyncio.gather(*(one(n) for n in names)))

    async def _bulk_delete_batch(self, batch: Sequence[tuple[str, bytes]]) -> int:
        resp = await self.session.request(
            "POST",
            "",
            params={"bulk-delete": "1"},  # an account-level request
            headers={"Content-Type": "text/plain", "Accept": "application/json"},
            body=b"\n".join(line for _, line in batch),
        )
        result = check_bulk_delete(
            resp.body,
            what=f"bulk delete in {self.name}",
            http_status=resp.status,
            method="POST",
            path="?bulk-delete",
            total=len(batch),
            names=[name for name, _ in batch],
        )
        if result is None:  # no bulk middleware although /info did not say so: one by one
            log.warning(
                "bulk delete in %s answered %d without a JSON result (no bulk middleware?): "
                "deleting %d objects one by one",
                self.name,
                resp.status,
                len(batch),
            )
            return await self.delete_each([name for name, _ in batch])
        return result.deleted
