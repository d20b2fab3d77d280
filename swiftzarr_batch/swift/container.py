"""Object operations on one Swift container, in Swift's terms (names, listings, bulk delete).

Why a layer of its own: the store (zarr's view: keys relative to a prefix, Buffers), the copy
tools and the locks all need the same container operations, with the same paging, the same
"404 on PUT means create the container" rule and the same parallel bulk deletes. It knows
Swift's API shapes but not HTTP status meanings (``status`` does, including what a bulk-delete
result says) nor retries or authentication (``session`` does).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import Any
from urllib.parse import quote

from swiftzarr_batch.errors import SwiftHTTPError
from swiftzarr_batch.swift.names import quote_path
from swiftzarr_batch.swift.session import Response, SwiftSession
from swiftzarr_batch.swift.status import (
    NO_CONTENT,
    NOT_FOUND,
    PRECONDITION_FAILED,
    RANGE_NOT_SATISFIABLE,
    check_bulk_delete,
)

log = logging.getLogger(__name__)

LISTING_PAGE = 10_000  # Swift's default container_listing_limit
BULK_DELETE_PARALLEL = 10  # concurrent bulk-delete requests (see bulk_delete)
# Names per request when there are many; well below the middleware's max_deletes_per_request
# (10 000 by default), and small enough that the requests finish together.
BULK_DELETE_SPLIT = 1_000
BULK_DELETE_MIN = 100  # names per request below which splitting further does not pay


_MAX_LIMIT = re.compile(rb"Maximum limit is (\d+)")
_cluster_page: dict[str, int] = {}
"""A storage URL -> the cluster's ``container_listing_limit`` when it is below LISTING_PAGE."""


def listing_page_size(storage_url: str) -> int:
    """The listing page size used for the account at ``storage_url``: Swift's default, or
    the cluster's lower ``container_listing_limit`` once a listing learned it."""
    return _cluster_page.get(storage_url, LISTING_PAGE)


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


def _drop(task: asyncio.Task[Response]) -> None:
    task.cancel()
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: no "never retrieved" warning


class SwiftContainer:
    """One container seen through a shared SwiftSession."""

    def __init__(self, session: SwiftSession, name: str) -> None:
        self.session = session
        self.name = name
        self._path = quote_path(name)

    def __repr__(self) -> str:
        return f"SwiftContainer({self.session.storage_url!r}, {self.name!r})"

    def _obj(self, name: str) -> str:
        return f"{self._path}/{quote(name, safe='/')}"

    # -- container --------------------------------------------------------------------------
    async def exists(self) -> bool:
        resp = await self.session.request("HEAD", self._path)
        return resp.status != NOT_FOUND

    async def ensure_exists(self) -> None:
        """Create the container if it is missing (HEAD, then PUT only on 404); cached per
        session, so a dask worker does this at most once."""
        if self.name in self.session.known_containers:
            return
        if not await self.exists():
            await self.session.request("PUT", self._path)
            log.info("created container %s", self.name)
        self.session.known_containers.add(self.name)

    # -- objects ----------------------------------------------------------------------------
    async def get(
        self,
        name: str,
        *,
        range_header: str | None = None,
        check_md5: bool = True,
    ) -> Response | None:
        """GET an object (or a byte range); None only when the server says 404.

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
        return None if resp.status == NOT_FOUND else resp

    async def get_newest(self, name: str) -> Response | None:
        """GET the newest replica's object (``X-Newest: true``: the proxy asks every replica
        and serves the latest, not the first to answer), MD5-checked; None only on 404. For
        small objects that must not be read stale, such as locks."""
        resp = await self.session.request(
            "GET", self._obj(name), headers={"X-Newest": "true"}, check_md5=True
        )
        return None if resp.status == NOT_FOUND else resp

    async def head(self, name: str) -> Response | None:
        resp = await self.session.request("HEAD", self._obj(name))
        return None if resp.status == NOT_FOUND else resp

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
        send = dict(headers) if headers else {}
        if if_none_match:
            send["If-None-Match"] = "*"
        path = self._obj(name)
        resp = await self.session.request(
            "PUT", path, headers=send, body=body, allow=(PRECONDITION_FAILED,)
        )
        if resp.status == NOT_FOUND:
            self.session.known_containers.discard(self.name)
            await self.ensure_exists()
            resp = await self.session.request(
                "PUT", path, headers=send, body=body, allow=(PRECONDITION_FAILED,)
            )
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
    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield listing pages (JSON entries) until the listing ends, following ``marker``.

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
                yield page
        finally:
            if pending is not None:  # the caller stopped early, or this one failed
                _drop(pending)

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

    async def list_names(self, prefix: str = "") -> AsyncIterator[str]:
        async for page in self.list_pages(prefix):
            for entry in page:
                yield entry["name"]

    # -- bulk delete ------------------------------------------------------------------------
    async def bulk_delete(self, names: Iterable[str]) -> int:
        """Delete many objects with the bulk middleware (parallel requests of <= 1 000 names).

        The middleware answers 200 even when some deletes fail; its JSON body is read and any
        error other than "not found" raises. Returns how many objects were deleted.
        """
        # The middleware deletes only ``delete_concurrency`` (2) objects at a time per request,
        # so one big request is slow: split the names into requests of at most
        # BULK_DELETE_SPLIT names, BULK_DELETE_PARALLEL of them at once (python-swiftclient's
        # `swift delete` does the same: 10 requests of 1 000). Smaller requests also keep one
        # slow request from holding up the end.
        todo = list(names)
        size = min(BULK_DELETE_SPLIT, max(BULK_DELETE_MIN, -(-len(todo) // BULK_DELETE_PARALLEL)))
        batches = [todo[i : i + size] for i in range(0, len(todo), size)]
        gate = asyncio.Semaphore(BULK_DELETE_PARALLEL)

        async def one(batch: list[str]) -> int:
            async with gate:
                return await self._bulk_delete_batch(batch)

        return sum(await asyncio.gather(*(one(b) for b in batches)))

    async def _bulk_delete_batch(self, names: Sequence[str]) -> int:
        lines = "\n".join(f"/{quote(self.name, safe='')}/{quote(n, safe='/')}" for n in names)
        resp = await self.session.request(
            "POST",
            "",
            params={"bulk-delete": "1"},  # an account-level request
            headers={"Content-Type": "text/plain", "Accept": "application/json"},
            body=lines.encode("utf-8"),
        )
        result = check_bulk_delete(
            resp.body,
            what=f"bulk delete in {self.name}",
            http_status=resp.status,
            method="POST",
            path="?bulk-delete",
            total=len(names),
        )
        if result is None:
            raise SwiftHTTPError(
                f"bulk delete in {self.name} answered {resp.status} without a JSON result; is "
                "the bulk middleware enabled?",
                status=resp.status,
                method="POST",
                path="?bulk-delete",
            )
        return result.deleted
