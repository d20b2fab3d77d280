"""One keep-alive HTTP/1.1 connection of the data path: strict framing, bounded memory and time.

Why this is apart from ``http1`` (the pool): this is the part that must trust nothing the
server sends. A response is taken only when its framing is unambiguous (RFC 9112):

* heads, chunked bodies and close-delimited bodies are parsed by ``httptools`` (llhttp, the
  parser of Node.js, aiohttp and uvicorn), which refuses conflicting or non-decimal
  ``Content-Length``, ``Content-Length`` together with ``Transfer-Encoding``, bad chunk sizes,
  obsolete line folding and bytes where none may be; on top of it we refuse any
  transfer-coding other than a single ``chunked`` (we never ask for one), protocol upgrades,
  more than ``MAX_INTERIM`` interim (1xx) heads and heads over ``MAX_HEAD`` bytes;
* a body of known length is still received straight into its final buffer (no copy between
  socket and zarr): the parser only sees what arrived together with the head;
* the header lines are split by us, once per head, from the bytes llhttp has just accepted
  (strict CRLF, no folding, valid names and values), not handed over one Python callback and
  two decodes per header; a body the caller will check is hashed while it arrives
  (``body_digest``);
* every refusal is a ``ConnectionFailed`` naming what was wrong, and the connection is closed.

Never out of step (desync): a connection is reused only when its response was consumed exactly,
nothing arrived while it was idle (checked again right before reuse) and the server did not ask
to close. Memory follows what arrived: the body buffer is pre-sized from ``Content-Length`` only
up to what the caller expects (``expect``) or ``PRESIZE`` bytes, then grows with the data; a
failed response drops its buffer at once. Time: a request fails when less than
``PROGRESS_BYTES`` moved (either way) within ``read_timeout``, so a server that trickles a byte
now and then cannot hold a request forever; a request given a ``deadline`` (the retry budget's,
``retry``) fails with ``TimeoutError`` once it passes, checked by the same watchdog, so the
success path sets no timer of its own.
"""

from __future__ import annotations

import asyncio
import select
import socket
import struct
from typing import cast

import httptools

from swiftzarr_batch.swift.body_digest import STEP as DIGEST_STEP
from swiftzarr_batch.swift.body_digest import BodyDigest
from swiftzarr_batch.swift.http_messages import ConnectionFailed, Headers, HTTPResponse

try:  # bytes the kernel still holds for sending (Linux, BSD, macOS); progress of an upload
    import fcntl
    import termios

    _TIOCOUTQ: int | None = termios.TIOCOUTQ
except ImportError:  # pragma: no cover - other platforms see only asyncio's own buffer
    _TIOCOUTQ = None

__all__ = ["MAX_HEAD", "MAX_INTERIM", "PRESIZE", "PROGRESS_BYTES", "Connection"]

MAX_HEAD = 64 * 1024  # bytes of response head (interim heads included) before we refuse it
MAX_INTERIM = 32  # interim (1xx) heads before the real one; more is a misbehaving server
PRESIZE = 16 << 20  # a body buffer is sized from Content-Length up to this, then grows
PROGRESS_BYTES = 16 * 1024  # at least this much must move per read_timeout (a minimum rate)
_HAS_POLL = hasattr(select, "poll")  # not on Windows: select() there
# HTTP/1.1 framing (RFC 9112), not status meanings: these answers never carry a body.
_NO_BODY_STATUS = frozenset({204, 304})

# States: idle, reading heads, a Content-Length body (zero-copy), a chunked body, a body that
# ends with the connection.
_IDLE, _HEAD, _FIXED, _CHUNKED, _TO_EOF = range(5)

# llhttp's messages, in the words of what was wrong.
_PARSER_REASONS = {
    "Duplicate Content-Length": "conflicting Content-Length",
    "Invalid character in Content-Length": "non-decimal Content-Length",
    "Content-Length overflow": "Content-Length too large",
    "Transfer-Encoding can't be present with Content-Length": (
        "Content-Length together with Transfer-Encoding"
    ),
    "Invalid character in chunk size": "malformed chunk size",
    "Chunk size overflow": "chunk size too large",
}


class Connection(asyncio.BufferedProtocol):
    """One keep-alive connection; a single request at a time (``roundtrip``)."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, read_timeout: float, scratch: bytearray
    ) -> None:
        self._loop = loop
        self._read_timeout = read_timeout
        self.transport: asyncio.Transport | None = None
        # readiness of the plain socket, registered once (None: TLS, or no socket to look at)
        self._idle_poll: select.poll | None = None
        self.closed = False
        self.reusable = True
        self.idle_since = loop.time()
        # shared by the pool's connections: every read is consumed before the next one starts
        self._scratch = scratch
        self._scratch_view = memoryview(scratch)
        self._state = _IDLE
        self._parser: httptools.HttpResponseParser | None = None
        self._waiter: asyncio.Future[HTTPResponse] | None = None
        self._head_only = False
        self._expect: int | None = None
        self._head_bytes = 0
        self._head_buf = bytearray()  # head bytes given to the parser, not yet split by us
        self._interim = 0
        self._digest_wanted = False
        self._digest: BodyDigest | None = None
        self.deadline: float | None = None  # loop time after which the request is cut
        self._status, self._reason, self._headers = 0, "", Headers([])
        self._body = bytearray()
        self._body_view: memoryview | None = None
        self._size = 0  # announced Content-Length of a _FIXED body
        self._filled = 0
        self._activity = 0.0  # loop time of the last progress point
        self._moved = 0  # bytes moved (either way) since then
        self._write_left: int | None = None  # unsent request bytes at the last stall check

    # -- asyncio callbacks ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """asyncio: the transport is up; on plain TCP, one poll object for the reuse checks."""
        self.transport = cast(asyncio.Transport, transport)  # a stream transport, always
        # Set up here, not per reuse: a poll object registered once makes the check before
        # each reuse one poll(2) call, not select's lists and fd sets built every time. TLS
        # may hold decrypted bytes the socket no longer shows; its transport is not polled.
        # (A proxy's CONNECT tunnel calls this again with its TLS transport.)
        self._idle_poll = None
        sock = transport.get_extra_info("socket")
        if sock is not None and transport.get_extra_info("sslcontext") is None and _HAS_POLL:
            poller = select.poll()
            poller.register(sock.fileno(), select.POLLIN | select.POLLPRI)
            self._idle_poll = poller

    def connection_lost(self, exc: Exception | None) -> None:
        """asyncio: the socket closed: a response in flight fails, unless its body ends here."""
        self.closed = True
        if self._waiter is None or self._waiter.done():
            self._drop_buffers()
            return
        if self._state == _TO_EOF:  # a body without length ends with the connection
            self._finish()
            return
        what = "before the response head" if self._state == _HEAD else "in the response body"
        self._fail(f"connection closed {what}" + (f" ({type(exc).__name__})" if exc else ""))

    def eof_received(self) -> bool:
        """asyncio: the server half-closed; False closes our side (see ``connection_lost``)."""
        return False  # close our side too; connection_lost reports what was missing

    def get_buffer(self, sizehint: int) -> memoryview:
        """asyncio (``BufferedProtocol``): where the next read lands: straight into the body of a
        Content-Length response (no copy), else the scratch buffer the parser reads."""
        if self._state == _FIXED:
            if self._filled == len(self._body):
                self._grow(self._filled + 1)
            if self._body_view is None:
                self._body_view = memoryview(self._body)
            return self._body_view[self._filled :]
        return self._scratch_view

    def buffer_updated(self, nbytes: int) -> None:
        """asyncio: ``nbytes`` arrived in ``get_buffer``'s memory. Counts progress for the stall
        deadline; bytes while no request is in flight make the connection unusable."""
        self._moved += nbytes
        if self._moved >= PROGRESS_BYTES:
            self._activity, self._moved = self._loop.time(), 0
        if self._state == _FIXED:
            self._filled += nbytes
            if self._filled == self._size:
                self._finish()
            elif self._digest is not None:
                self._digest.progress(self._filled)
            return
        if self._state == _IDLE:  # the server talks out of turn: never reuse this connection
            self.reusable = False
            self.abort()
            return
        data = self._scratch_view[:nbytes]
        if self._state == _TO_EOF:
            self._body += data
            return
        try:
            if self._state == _HEAD:
                self._heads(nbytes)
            else:
                self._feed(data)
        except ConnectionFailed as exc:
            self._fail(exc.reason)

    def _heads(self, nbytes: int) -> None:
        """Parse the head(s) in this read, giving the parser each head alone when its end is
        in sight, so that a Content-Length body that came with it is copied once, straight
        into its buffer, not first into the parser's callback."""
        scratch, view, pos = self._scratch, self._scratch_view, 0
        while self._state == _HEAD and pos < nbytes:
            end = scratch.find(b"\r\n\r\n", pos, nbytes)
            cut = nbytes if end < 0 else end + 4
            self._feed(view[pos:cut])
            pos = cut
        if pos == nbytes:
            return
        rest = view[pos:nbytes]
        if self._state == _FIXED:
            take = min(len(rest), self._size - self._filled)
            end = self._filled + take
            if end > len(self._body):
                self._grow(end)
            self._body[self._filled : end] = rest[:take]
            self._filled = end
            if take < len(rest):
                self.reusable = False  # bytes beyond the response: the stream is out of step
            if self._filled == self._size:
                self._finish()
        elif self._state == _TO_EOF:
            self._body += rest
        elif self._state == _CHUNKED:
            self._feed(rest)
        else:  # bytes after a complete answer without body (HEAD, 204, 304, length 0)
            self.reusable = False

    # -- the parser's callbacks (httptools calls these by name) -----------------------------
    def on_message_begin(self) -> None:
        """httptools: a response begins; one nobody asked for makes the connection unusable."""
        if self._state == _IDLE:  # a second response after the one we asked for
            self.reusable = False

    def _split_head(self) -> list[str]:
        """The lines of the head llhttp has just completed, taken from ``_head_buf`` (the
        bytes fed in this state, see ``_feed``); what follows it stays for the next head."""
        buf = self._head_buf
        end = buf.find(b"\r\n\r\n")
        lines = buf[:end].decode("latin-1").split("\r\n")
        del buf[: end + 4]
        return lines

    def on_headers_complete(self) -> None:
        """httptools: a head is complete. Skips interim 1xx heads, refuses 101 and any coding but
        chunked (``ConnectionFailed``), and decides how the body ends."""
        if self._state != _HEAD:
            self.reusable = False
            return
        parser = self._parser
        assert parser is not None
        status = parser.get_status_code()
        lines = self._split_head()
        if 100 <= status < 200:  # an interim head: the real one follows
            if status == 101:
                raise ConnectionFailed("unrequested protocol upgrade (101)")
            self._interim += 1
            if self._interim > MAX_INTERIM:
                raise ConnectionFailed(f"more than {MAX_INTERIM} interim (1xx) responses")
            return
        self._head_buf.clear()
        self._status = status
        # "HTTP/1.1 200 OK": the reason is what follows the second space (maybe nothing)
        self._reason = lines[0].partition(" ")[2].partition(" ")[2]
        # llhttp accepted these lines: CRLF-terminated, "name:" without whitespace before the
        # colon, leading whitespace of the value not part of it (trailing whitespace is).
        fields = [line.partition(":") for line in lines[1:]]
        headers = Headers([(name, value.lstrip(" \t")) for name, _, value in fields])
        if not parser.should_keep_alive():  # Connection: close, or HTTP/1.0 without keep-alive
            self.reusable = False
        codings: list[str] = []
        if "transfer-encoding" in headers:  # rare: look at every value only then
            codings = [v for n, v in headers.items() if n.lower() == "transfer-encoding"]
            if len(codings) > 1 or codings[0].strip().lower() != "chunked":
                raise ConnectionFailed(f"unsupported Transfer-Encoding {', '.join(codings)!r}")
        self._headers = headers
        if self._head_only or status in _NO_BODY_STATUS:
            self._finish()  # anything after this head is out of step: on_body says so
        elif codings:
            self._state = _CHUNKED
        elif (length := headers.get("content-length")) is None:
            self._state, self.reusable = _TO_EOF, False  # the body ends with the connection
        else:
            self._start_fixed(int(length))  # llhttp checked: decimal digits, one value

    def on_body(self, data: bytes) -> None:
        """httptools: body bytes (a Content-Length body's only with the head: see ``_heads``)."""
        state = self._state
        if state == _FIXED:  # only what arrived with the head; the rest goes straight in
            end = self._filled + len(data)
            if end > len(self._body):
                self._grow(end)
            self._body[self._filled : end] = data
            self._filled = end
        elif state in (_CHUNKED, _TO_EOF):
            self._body += data
        elif state == _IDLE:  # e.g. bytes after a HEAD answer: the stream is out of step
            self.reusable = False

    def on_message_complete(self) -> None:
        """httptools: the response ended; completes a Content-Length or chunked response."""
        if self._state in (_FIXED, _CHUNKED):
            self._finish()

    # -- request ----------------------------------------------------------------------------
    async def roundtrip(
        self,
        method: str,
        head: bytes,
        body: bytes | bytearray | memoryview | None,
        expect: int | None = None,
        digest: bool = False,
        deadline: float | None = None,
    ) -> HTTPResponse:
        """Send one request; return its response. ``expect``: the most body bytes the caller
        expects (object size, range length), to pre-size the buffer no larger than that.
        ``digest``: hash a large body of known length while it arrives (the response's
        ``digest``). ``deadline``: loop time at which the request fails with TimeoutError."""
        assert self.transport is not None and self._state == _IDLE
        waiter: asyncio.Future[HTTPResponse] = self._loop.create_future()
        self._waiter = waiter
        self._state, self._head_only, self._expect = _HEAD, method == "HEAD", expect
        self._parser, self._head_bytes, self._interim = None, 0, 0
        self._head_buf.clear()
        self._digest_wanted, self.deadline = digest, deadline
        self._activity, self._moved, self._write_left = self._loop.time(), 0, None
        try:
            if body is not None and len(body):
                self.transport.writelines((head, body))
            else:
                self.transport.write(head)
            return await waiter
        finally:
            self._waiter = None

    def idle_and_clean(self) -> bool:
        """Whether this idle connection may carry a request: open, and nothing arrived since
        its last response (not even a byte the event loop has not delivered yet)."""
        transport = self.transport
        if self.closed or not self.reusable or transport is None or transport.is_closing():
            return False
        poller = self._idle_poll
        if poller is not None:
            try:  # any event counts: unread bytes (out of step), the server's FIN, an error
                return not poller.poll(0)  # or POLLNVAL, a socket closed under us
            except (OSError, ValueError):
                return False
        sock = transport.get_extra_info("socket")
        if sock is not None and transport.get_extra_info("sslcontext") is None:
            try:  # no poll(2) on this platform
                readable, _, _ = select.select([sock.fileno()], [], [], 0)
            except (OSError, ValueError):
                return False
            if readable:
                return False
        return True

    def check_stall(self, now: float) -> None:
        """Called by the pool's watchdog: fail the request if less than ``PROGRESS_BYTES``
        moved (read, or taken by the peer from the upload) within ``read_timeout``."""
        if self._waiter is None or self._waiter.done() or self.transport is None:
            return
        if self.deadline is not None and now >= self.deadline:
            self.reusable = False
            self.abort()
            self._waiter.set_exception(TimeoutError("the request's deadline passed"))
            return
        left = self._unsent()
        if self._write_left is not None and left < self._write_left:
            self._moved += self._write_left - left  # the upload moved since the last look
        self._write_left = left
        if self._moved >= PROGRESS_BYTES:
            self._activity, self._moved = now, 0
        if now - self._activity >= self._read_timeout:
            if self._moved:  # something trickles in: a minimum rate, not a keep-alive
                self._fail(
                    f"too slow: no progress for {self._read_timeout:g} s (only {self._moved} "
                    f"bytes moved; at least {PROGRESS_BYTES} must per read_timeout)"
                )
            else:
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
    def _feed(self, data: memoryview) -> None:
        """Give ``data`` to the parser (heads, chunked bodies); raise ConnectionFailed."""
        parser = self._parser
        if parser is None:
            parser = self._parser = httptools.HttpResponseParser(self)
        heading = self._state == _HEAD
        if heading:
            self._head_buf += data  # for _split_head: the lines are split once it completes
        try:
            parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, ConnectionFailed):
                raise exc.__context__ from None
            raise  # a bug of ours, not the server's
        except httptools.HttpParserUpgrade:
            raise ConnectionFailed("unrequested protocol upgrade") from None
        except httptools.HttpParserError as exc:
            if self._state == _IDLE:  # junk after a complete response: taken, not reused
                self.reusable = False
                return
            detail = str(exc)
            where = "head" if self._state == _HEAD else "body"
            reason = _PARSER_REASONS.get(detail, detail)
            raise ConnectionFailed(f"malformed response {where}: {reason}") from None
        if heading:
            self._head_bytes += len(data)
            if self._state == _HEAD and self._head_bytes > MAX_HEAD:
                raise ConnectionFailed(f"response head over {MAX_HEAD} bytes")
        if self._state == _FIXED:
            self._parser = None  # the rest of the body bypasses the parser
            if self._filled == self._size:
                self._finish()

    def _start_fixed(self, size: int) -> None:
        """A Content-Length body: pre-size its buffer, as far as the caller expects it."""
        cap = PRESIZE if self._expect is None else self._expect
        self._size, self._filled = size, 0
        self._body, self._body_view = bytearray(min(size, max(cap, 0))), None
        self._state = _FIXED
        if size == 0:
            self._finish()
        elif (
            self._digest_wanted
            and self._status == 200
            and size >= 2 * DIGEST_STEP
            and len(self._body) == size  # never resized: the digest's jobs may read it
        ):
            self._body_view = memoryview(self._body)
            self._digest = BodyDigest(self._body_view)

    def _grow(self, need: int) -> None:
        """Make the body buffer hold at least ``need`` bytes (doubling, up to the announced
        length): memory follows the bytes that arrived, not the bytes announced."""
        new = min(self._size, max(need, 2 * len(self._body), 1 << 16))
        view, self._body_view = self._body_view, None
        if view is not None:
            view.release()
        try:
            self._body += bytes(new - len(self._body))
        except BufferError:  # a view of it is still alive somewhere: copy instead
            grown = bytearray(new)
            grown[: self._filled] = memoryview(self._body)[: self._filled]
            self._body = grown

    # -- completion -------------------------------------------------------------------------
    def _finish(self) -> None:
        body, digest = self._body, self._digest
        self._state, self._parser, self._digest = _IDLE, None, None
        self._body, self._body_view = bytearray(), None
        self.idle_since = self._loop.time()
        if self._waiter is not None and not self._waiter.done():
            response = HTTPResponse(self._status, self._reason, self._headers, body)
            response.digest = digest
            self._waiter.set_result(response)

    def _fail(self, reason: str) -> None:
        self.reusable = False
        self.abort()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionFailed(reason))

    def _drop_buffers(self) -> None:
        """Let go of a partial body at once: a failed try must not hold memory into the next."""
        self._state, self._parser, self._digest = _IDLE, None, None
        self._head_buf.clear()
        self._body, self._body_view = bytearray(), None

    def abort(self) -> None:
        """Close at once (no FIN handshake) and drop any partial response."""
        self.closed, self.reusable = True, False
        self._drop_buffers()
        if self.transport is not None:
            try:
                self.transport.abort()
            except RuntimeError:  # its event loop is closed: close the socket itself
                sock = self.transport.get_extra_info("socket")
                if sock is not None:
                    socket.socket.close(sock._sock if hasattr(sock, "_sock") else sock)
