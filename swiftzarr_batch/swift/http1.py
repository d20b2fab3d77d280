"""A small asyncio HTTP/1.1 client for the data path: keep-alive connections and nothing else.

Why not aiohttp: every data-path request is one PUT/GET/HEAD/DELETE of a body that is already in
memory, and aiohttp's generality (payload objects, cookie and redirect handling, tracing, timeout
objects, stream readers) cost ~0.3 ms of client CPU per request here. That CPU is what limits a
dask worker talking to remote Swift proxies (and on a shared box it is taken from the server). So
this module does the minimum, in one place:

* a request is one ``writelines`` of the head and the body (no copy of the body on Python 3.12+);
* the response is read by a ``BufferedProtocol`` (``http_connection``) under a strict parser
  (llhttp): a body of known length is received straight into its final buffer (an 8 MiB chunk
  is never copied between socket and zarr), a response with ambiguous framing is refused;
* connections are kept alive in a bounded pool per event loop; a connection the server closed,
  one that received anything while idle and one idle longer than ``keepalive`` seconds are not
  reused;
* a request during which less than ``http_connection.PROGRESS_BYTES`` moved (read or written)
  within ``read_timeout`` seconds fails, however long the whole transfer takes; one given a
  ``deadline`` fails with ``TimeoutError`` when it passes. Both are checked by one watchdog
  timer per pool, so a request that goes well sets no timer of its own.

It knows no status meanings (``status`` does) and never retries (``retry`` does): every failure
to get a complete, well-formed response is a ``ConnectionFailed``, a TLS handshake that fails is a
``TLSFailure``. The values it sends and returns (``Endpoint``, the request head, ``Headers``,
``HTTPResponse``) are ``http_messages``'; they are re-exported here.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Mapping

from swiftzarr_batch.swift.http_connection import Connection
from swiftzarr_batch.swift.http_messages import (
    ConnectionFailed,
    Endpoint,
    Headers,
    HTTPResponse,
    TLSFailure,
    request_head,
)
from swiftzarr_batch.swift.proxy import absolute_form, refused
from swiftzarr_batch.swift.proxy import connect as connect_via_proxy

__all__ = [
    "ConnectionFailed",
    "Endpoint",
    "HTTPResponse",
    "Headers",
    "Pool",
    "TLSFailure",
    "request_head",
]

_SCRATCH = 256 * 1024  # bytes per read before a body's length is known (asyncio's own default)
_EARLY = time.get_clock_info("monotonic").resolution  # how early asyncio may run a timer


class Pool:
    """Keep-alive connections to one endpoint, for one event loop, at most ``limit`` at once."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        limit: int,
        connect_timeout: float,
        read_timeout: float,
        keepalive: float = 30.0,
    ) -> None:
        self.endpoint = endpoint
        self._limit = asyncio.Semaphore(limit)
        self._idle: list[Connection] = []
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        self._keepalive = keepalive
        self._scratch = bytearray(_SCRATCH)
        # One watchdog per pool, not a timer per request: it looks at the requests in flight
        # every read_timeout / 4, so a stall is noticed after 1 to 1.25 read_timeouts.
        self._active: set[Connection] = set()
        self._watchdog: asyncio.TimerHandle | None = None
        self._watch_every = max(read_timeout / 4, 0.01)
        self.loop = asyncio.get_running_loop()
        self.closed = False
        # decided once, not per request: an http proxy takes absolute-form targets
        self._forward = endpoint.proxy is not None and endpoint.ssl is None

    async def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | bytearray | memoryview | None = None,
        *,
        expect: int | None = None,
        digest: bool = False,
        deadline: float | None = None,
    ) -> HTTPResponse:
        """One request and its whole response. ``target`` is the percent-encoded path+query.

        ``expect``: the most body bytes the caller expects (an object's listed size, a range's
        length): the body buffer is pre-sized from Content-Length no larger than this (without
        it, no larger than ``http_connection.PRESIZE``) and grows with what arrives beyond.
        ``digest``: hash a large 200 body while it arrives (``HTTPResponse.digest``).
        ``deadline``: ``loop.time()`` by which the request must be done, waiting for a free
        connection and connecting included, or it fails with ``TimeoutError``.
        """
        length = len(body) if body is not None else (0 if method in ("PUT", "POST") else None)
        if isinstance(body, memoryview):
            length = body.nbytes
        forward = self._forward
        if forward:
            target, headers = absolute_form(self.endpoint, target, headers)
        head = request_head(method, target, self.endpoint.host_header, headers, length)
        limit = self._limit
        if deadline is not None and limit.locked():  # a wait for a free slot: bounded too
            async with asyncio.timeout_at(deadline):
                await limit.acquire()
        else:
            await limit.acquire()
        try:
            conn = self._reuse() or await self._connect(deadline)
            self._active.add(conn)
            watchdog = self._watchdog
            if watchdog is None:
                when = self.loop.time() + self._watch_every
                if deadline is not None and deadline < when:
                    when = deadline
                self._watchdog = self.loop.call_at(when, self._watch)
            elif deadline is not None and deadline < watchdog.when():
                watchdog.cancel()
                self._watchdog = self.loop.call_at(deadline, self._watch)
            try:
                response = await conn.roundtrip(method, head, body, expect, digest, deadline)
            except BaseException:  # failed or cancelled mid-request: the stream is unusable
                conn.abort()
                raise
            finally:
                self._active.discard(conn)
            if conn.reusable and not conn.closed and not self.closed:
                self._idle.append(conn)
            else:
                conn.abort()
        finally:
            limit.release()
        if forward and response.status == 407:  # the proxy's answer, not Swift's
            raise refused(self.endpoint, 407, response.reason, method)
        return response

    def _watch(self) -> None:
        # call_at may run a timer up to one clock resolution early: count that as on time
        now = self.loop.time() + _EARLY
        when = now + self._watch_every
        for conn in list(self._active):
            conn.check_stall(now)
            if conn.deadline is not None and not conn.closed and conn.deadline < when:
                when = conn.deadline
        self._watchdog = (
            self.loop.call_at(when, self._watch) if self._active and not self.closed else None
        )

    def _reuse(self) -> Connection | None:
        now = self.loop.time()
        while self._idle:
            conn = self._idle.pop()
            if not conn.idle_and_clean():  # closed, or bytes arrived out of turn
                conn.abort()
                continue
            if now - conn.idle_since > self._keepalive:
                conn.abort()
                continue
            return conn
        return None

    async def _connect(self, deadline: float | None = None) -> Connection:
        """A new connection, within ``connect_timeout`` and the request's ``deadline`` (a
        TimeoutError when the deadline is what ran out)."""
        if deadline is None:
            return await self._connect_now()
        async with asyncio.timeout_at(deadline):
            return await self._connect_now()

    async def _connect_now(self) -> Connection:
        ep = self.endpoint
        if ep.proxy is not None:  # swift.proxy's errors name the proxy (never its credentials)
            return await connect_via_proxy(
                self.loop,
                lambda: Connection(self.loop, self._read_timeout, self._scratch),
                ep,
                self._connect_timeout,
            )
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await self.loop.create_connection(
                    lambda: Connection(self.loop, self._read_timeout, self._scratch),
                    ep.host,
                    ep.port,
                    ssl=ep.ssl,
                    server_hostname=ep.host if ep.ssl else None,
                )
        except ssl.SSLCertVerificationError as exc:
            raise TLSFailure(
                f"TLS verification of {ep.host} failed ({exc.verify_message or exc.reason})"
            ) from None
        except ssl.SSLError as exc:
            raise TLSFailure(
                f"TLS handshake with {ep.host} failed ({exc.reason or type(exc).__name__})"
            ) from None
        except TimeoutError:
            raise ConnectionFailed(f"connect to {ep.host}:{ep.port} timed out") from None
        except OSError as exc:
            raise ConnectionFailed(
                f"connect to {ep.host}:{ep.port}: {type(exc).__name__}"
            ) from None
        return conn

    def close(self) -> None:
        """Close idle connections; connections in use close when their request ends."""
        self.closed = True
        while self._idle:
            self._idle.pop().abort()
