"""A small asyncio HTTP/1.1 client for the data path: keep-alive connections and nothing else.

Why not aiohttp: every data-path request is one PUT/GET/HEAD/DELETE of a body that is already in
memory, and aiohttp's generality (payload objects, cookie and redirect handling, tracing, timeout
objects, stream readers) cost ~0.3 ms of client CPU per request here. That CPU is what limits a
dask worker talking to remote Swift proxies (and on a shared box it is taken from the server). So
this module does the minimum, in one place:

* a request is one ``writelines`` of the head and the body (no copy of the body on Python 3.12+);
* the response is parsed by a ``BufferedProtocol``: a body of known length is received straight
  into its final buffer (an 8 MiB chunk is never copied between socket and zarr);
* connections are kept alive in a bounded pool per event loop; a connection the server closed is
  dropped before reuse, one idle longer than ``keepalive`` seconds is not reused;
* a request that sees no progress (nothing read, nothing written) for ``read_timeout`` seconds
  fails, however long the whole transfer takes.

It knows no status meanings (``status`` does) and never retries (``retry`` does): every failure
to get a complete, well-formed response is a ``ConnectionFailed``, a TLS handshake that fails is a
``TLSFailure``. The values it sends and returns (``Endpoint``, the request head, ``Headers``,
``HTTPResponse``) are ``http_messages``'; they are re-exported here.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
from collections.abc import Mapping
from typing import cast

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

try:  # bytes the kernel still holds for sending (Linux, BSD, macOS); progress of an upload
    import fcntl
    import termios

    _TIOCOUTQ: int | None = termios.TIOCOUTQ
except ImportError:  # pragma: no cover - other platforms see only asyncio's own buffer
    _TIOCOUTQ = None

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
_MAX_HEAD = 64 * 1024  # a response head larger than this is refused
# HTTP/1.1 framing (RFC 9112), not status meanings: these answers never carry a body, and a
# 1xx is an interim head that the real one follows.
_NO_BODY_STATUS = frozenset({204, 304})

# Parser states
_IDLE, _HEAD, _FIXED, _CHUNKED, _TO_EOF = range(5)


class _Connection(asyncio.BufferedProtocol):
    """One keep-alive connection; a single request at a time."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, read_timeout: float, scratch: bytearray
    ) -> None:
        self._loop = loop
        self._read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = True
        self.idle_since = loop.time()
        # shared by the pool's connections: every read is consumed before the next one starts
        self._scratch = scratch
        self._scratch_view = memoryview(scratch)
        self._state = _IDLE
        self._buf = bytearray()  # head bytes, or chunked/EOF body bytes not yet consumed
        self._waiter: asyncio.Future[HTTPResponse] | None = None
        self._head_only = False
        self._status, self._reason, self._headers = 0, "", Headers([])
        self._body = bytearray()
        self._body_view = memoryview(self._body)
        self._filled = 0
        self._chunk_left = -1  # chunked: bytes left in the current chunk (-1: read a size line)
        self._activity = 0.0  # loop time of the last progress (a read, or the upload moving)
        self._write_left: int | None = None  # unsent request bytes at the last stall check

    # -- asyncio callbacks ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # a stream transport, always

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is None or self._waiter.done():
            return
        if self._state == _TO_EOF:  # a body without length ends with the connection
            body, self._buf = self._buf, bytearray()
            self._finish(body)
            return
        what = "before the response head" if self._state == _HEAD else "in the response body"
        self._fail(f"connection closed {what}" + (f" ({type(exc).__name__})" if exc else ""))

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost reports what was missing

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._state == _FIXED:
            return self._body_view[self._filled :]
        return self._scratch_view

    def buffer_updated(self, nbytes: int) -> None:
        self._activity = self._loop.time()
        if self._state == _FIXED:
            self._filled += nbytes
            if self._filled == len(self._body):
                self._finish(self._body)
            return
        if self._state == _IDLE:  # the server talks out of turn: never reuse this connection
            self.reusable = False
            self.abort()
            return
        data = self._scratch_view[:nbytes]
        try:
            if self._state == _HEAD and not self._buf:  # the usual case: no copy of the head
                end = self._scratch.find(b"\r\n\r\n", 0, nbytes)
                if end >= 0:
                    self._on_head(bytes(data[:end]), data[end + 4 :])
                    return
            self._buf += data
            self._advance()
        except ConnectionFailed as exc:
            self._fail(exc.reason)

    # -- request ----------------------------------------------------------------------------
    async def roundtrip(
        self, method: str, head: bytes, body: bytes | bytearray | memoryview | None
    ) -> HTTPResponse:
        assert self.transport is not None and self._state == _IDLE
        waiter: asyncio.Future[HTTPResponse] = self._loop.create_future()
        self._waiter = waiter
        self._state, self._head_only = _HEAD, method == "HEAD"
        self._buf.clear()
        self._activity, self._write_left = self._loop.time(), None
        try:
            if body is not None and len(body):
                self.transport.writelines((head, body))
            else:
                self.transport.write(head)
            return await waiter
        finally:
            self._waiter = None

    def check_stall(self, now: float) -> None:
        """Called by the pool's watchdog: fail the request if nothing moved for read_timeout."""
        if self._waiter is None or self._waiter.done() or self.transport is None:
            return
        left = self._unsent()
        if self._write_left is not None and left != self._write_left:
            self._activity = now  # the upload moved since the last look: that is progress
        self._write_left = left
        if now - self._activity >= self._read_timeout:
            self._fail(f"no progress for {self._read_timeout:g} s")

    def _unsent(self) -> int:
        """Request bytes not yet taken by the peer: asyncio's buffer plus the kernel's queue."""
        assert self.transport is not None
        left = self.transport.get_write_buffer_size()
        sock = self.transport.get_extra_info("socket")
        if _TIOCOUTQ is not None and sock is not None:
            try:
                queued = fcntl.ioctl(sock.fileno(), _TIOCOUTQ, b"\0\0\0\0")
                left += int(struct.unpack("i", queued)[0])
            except (OSError, ValueError):
                pass
        return left

    # -- parsing ----------------------------------------------------------------------------
    def _advance(self) -> None:
        """Parse what ``_buf`` holds (the slow path: a head split across reads, chunked)."""
        if self._state == _HEAD:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > _MAX_HEAD:
                    raise ConnectionFailed("response head too large")
                return
            head, rest = bytes(self._buf[:end]), self._buf[end + 4 :]
            self._buf = bytearray()
            self._on_head(head, rest)
        elif self._state == _CHUNKED:
            self._advance_chunked()

    def _on_head(self, raw: bytes, rest: memoryview | bytearray) -> None:
        """A complete response head arrived, with ``rest`` the bytes after it."""
        lines = raw.decode("latin-1").split("\r\n")
        status_line = lines[0].split(" ", 2)
        if (
            len(status_line) < 2
            or not status_line[0].startswith("HTTP/1.")
            or not status_line[1].isdigit()
        ):
            raise ConnectionFailed("malformed status line")
        status = int(status_line[1])
        if 100 <= status < 200:  # an interim response: the real head follows
            self._buf = bytearray(rest)
            if self._buf:
                self._advance()
            return
        items = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise ConnectionFailed("malformed header line")
            items.append((name.strip(), value.strip()))
        headers = Headers(items)
        self._status, self._headers = status, headers
        self._reason = status_line[2] if len(status_line) > 2 else ""
        connection = headers.get("connection", "").lower()
        if "close" in connection or (
            status_line[0] == "HTTP/1.0" and "keep-alive" not in connection
        ):
            self.reusable = False
        if self._head_only or status in _NO_BODY_STATUS:
            if len(rest):
                self.reusable = False
            self._finish(bytearray())
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._state, self._chunk_left, self._body = _CHUNKED, -1, bytearray()
            self._buf = bytearray(rest)
            self._advance_chunked()
        elif (length := headers.get("content-length")) is None:
            self._state, self.reusable = _TO_EOF, False  # the body ends with the connection
            self._buf = bytearray(rest)
        else:
            try:
                size = int(length)
            except ValueError:
                raise ConnectionFailed("malformed Content-Length") from None
            if size < 0:
                raise ConnectionFailed("malformed Content-Length")
            self._start_fixed(size, rest)

    def _start_fixed(self, size: int, rest: memoryview | bytearray) -> None:
        """Copy what arrived with the head into the body buffer; read the rest straight in."""
        body = bytearray(size)
        take = min(len(rest), size)
        if take:
            body[:take] = rest[:take]
        if len(rest) > size:
            self.reusable = False  # bytes beyond the response: the stream is out of step
        if take == size:
            self._finish(body)
            return
        self._body, self._body_view, self._filled = body, memoryview(body), take
        self._state = _FIXED

    def _advance_chunked(self) -> None:
        buf = self._buf
        while True:
            if self._chunk_left < 0:  # a size line
                end = buf.find(b"\r\n")
                if end < 0:
                    if len(buf) > 1024:
                        raise ConnectionFailed("malformed chunk size")
                    return
                try:
                    size = int(bytes(buf[:end]).split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise ConnectionFailed("malformed chunk size") from None
                del buf[: end + 2]
                if size == 0:
                    self._chunk_left = -2
                else:
                    self._chunk_left = size
            if self._chunk_left == -2:  # trailers, up to an empty line
                if buf.startswith(b"\r\n"):
                    del buf[:2]
                    self._finish(self._body)
                    return
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    return
                del buf[: end + 4]
                self._finish(self._body)
                return
            if len(buf) < self._chunk_left + 2:
                return
            self._body += buf[: self._chunk_left]
            if buf[self._chunk_left : self._chunk_left + 2] != b"\r\n":
                raise ConnectionFailed("malformed chunk")
            del buf[: self._chunk_left + 2]
            self._chunk_left = -1

    # -- completion -------------------------------------------------------------------------
    def _finish(self, body: bytearray) -> None:
        self._state = _IDLE
        self._body, self._body_view = bytearray(), memoryview(b"")
        if self._buf:
            self.reusable = False
        self.idle_since = self._loop.time()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(HTTPResponse(self._status, self._reason, self._headers, body))

    def _fail(self, reason: str) -> None:
        self.reusable = False
        self.abort()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionFailed(reason))

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            try:
                self.transport.abort()
            except RuntimeError:  # its event loop is closed: close the socket itself
                sock = self.transport.get_extra_info("socket")
                if sock is not None:
                    socket.socket.close(sock._sock if hasattr(sock, "_sock") else sock)


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
        self._idle: list[_Connection] = []
        self._connect_timeout, self._read_timeout = connect_timeout, read_timeout
        self._keepalive = keepalive
        self._scratch = bytearray(_SCRATCH)
        # One watchdog per pool, not a timer per request: it looks at the requests in flight
        # every read_timeout / 4, so a stall is noticed after 1 to 1.25 read_timeouts.
        self._active: set[_Connection] = set()
        self._watchdog: asyncio.TimerHandle | None = None
        self._watch_every = max(read_timeout / 4, 0.01)
        self.loop = asyncio.get_running_loop()
        self.closed = False

    async def request(
        self,
        method: str,
        target: str,
        headers: Mapping[str, str] | None = None,
        body: bytes | bytearray | memoryview | None = None,
    ) -> HTTPResponse:
        """One request and its whole response. ``target`` is the percent-encoded path+query."""
        length = len(body) if body is not None else (0 if method in ("PUT", "POST") else None)
        if isinstance(body, memoryview):
            length = body.nbytes
        forward = self.endpoint.proxy is not None and self.endpoint.ssl is None  # an http proxy
        if forward:
            target, headers = absolute_form(self.endpoint, target, headers)
        head = request_head(method, target, self.endpoint.host_header, headers, length)
        async with self._limit:
            conn = self._reuse() or await self._connect()
            self._active.add(conn)
            if self._watchdog is None:
                self._watchdog = self.loop.call_later(self._watch_every, self._watch)
            try:
                response = await conn.roundtrip(method, head, body)
            except BaseException:  # failed or cancelled mid-request: the stream is unusable
                conn.abort()
                raise
            finally:
                self._active.discard(conn)
            if conn.reusable and not conn.closed and not self.closed:
                self._idle.append(conn)
            else:
                conn.abort()
            if forward and response.status == 407:  # the proxy's answer, not Swift's
                raise refused(self.endpoint, 407, response.reason, method)
            return response

    def _watch(self) -> None:
        now = self.loop.time()
        for conn in list(self._active):
            conn.check_stall(now)
        self._watchdog = (
            self.loop.call_later(self._watch_every, self._watch)
            if self._active and not self.closed
            else None
        )

    def _reuse(self) -> _Connection | None:
        now = self.loop.time()
        while self._idle:
            conn = self._idle.pop()
            if conn.closed or conn.transport is None or conn.transport.is_closing():
                continue
            if now - conn.idle_since > self._keepalive:
                conn.abort()
                continue
            return conn
        return None

    async def _connect(self) -> _Connection:
        ep = self.endpoint
        if ep.proxy is not None:  # swift.proxy's errors name the proxy (never its credentials)
            return await connect_via_proxy(
                self.loop,
                lambda: _Connection(self.loop, self._read_timeout, self._scratch),
                ep,
                self._connect_timeout,
            )
        try:
            async with asyncio.timeout(self._connect_timeout):
                _, conn = await self.loop.create_connection(
                    lambda: _Connection(self.loop, self._read_timeout, self._scratch),
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
