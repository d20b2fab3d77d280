"""``FaultProxy``: an HTTP proxy between a client and a real Swift that injects faults.

Why: "faults cost time, never data" is only proven by making faults happen, at known rates,
against the real server. The proxy forwards every request to the real Swift proxy and, for a
chosen fraction of them, misbehaves the way busy proxies, load balancers and networks do:

==========================  ===============================================================
kind                        what the client sees
==========================  ===============================================================
``503`` ``429`` ``498``     that status *instead of* forwarding (overload, rate limiting)
``500`` ``502`` ``504``     that status *after* the server handled the request (the write
                            happened, the client cannot know: retries must be idempotent)
``<status>-retry-after``    the same, with ``Retry-After: retry_after`` seconds
``reset-before-body``       the connection is reset before the request body is read
``reset-after-body``        the request is forwarded (it took effect), then the connection
                            is reset instead of answering
``stall``                   the request is forwarded, then nothing comes back for
                            ``stall_seconds`` (set it above the client's read timeout)
``truncate``                a GET answer's headers promise the full length, the body stops
                            halfway and the connection closes
``corrupt``                 a GET answer with the right length and one flipped byte (only a
                            checksum can tell)
``corrupt-upload``          a PUT body forwarded with one flipped byte (the server stores it
                            unless the client sent the body's MD5 as ETag)
==========================  ===============================================================

``drop_request_headers`` removes the named headers from every forwarded request: a server that
answers success to a change (an ACL, metadata) it never made.

It runs an ``aiohttp.web`` server on 127.0.0.1 in its own thread and event loop, so it works
from synchronous tests and from dask workers in other processes alike. Decisions come from a
seeded ``random.Random``: the sequence of decisions is reproducible (which request gets which
decision depends on arrival order when requests are concurrent). ``counts`` says how many
faults of each kind were injected. ``inject(kind, count)`` schedules faults deterministically
for the next matching requests. Auth answers' ``X-Storage-Url`` is rewritten to point at the
proxy, so a client that authenticates through the proxy sends all its data through it too.

``testing.delayproxy.DelayProxy`` is its delay mode for distance rather than faults: a byte
relay that adds a fixed delay to every round trip (the benchmarks' W12: Swift 2 or 20 ms away).
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
import struct
import threading
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from yarl import URL

__all__ = ["ALL_FAULTS", "STATUS_FAULTS", "TRANSPORT_FAULTS", "FaultProxy"]

log = logging.getLogger(__name__)

_BEFORE = ("503", "429", "498")  # answered without forwarding
_AFTER = ("500", "502", "504")  # answered after the server handled the request
STATUS_FAULTS: tuple[str, ...] = tuple(
    kind for code in (*_BEFORE, *_AFTER) for kind in (code, f"{code}-retry-after")
)
TRANSPORT_FAULTS: tuple[str, ...] = (
    "reset-before-body",
    "reset-after-body",
    "stall",
    "truncate",
    "corrupt",
    "corrupt-upload",
)
ALL_FAULTS: tuple[str, ...] = STATUS_FAULTS + TRANSPORT_FAULTS
_GET_ONLY = frozenset({"truncate", "corrupt"})
_PUT_ONLY = frozenset({"corrupt-upload"})
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "host",
    }
)


@dataclass
class _Scripted:
    kind: str
    remaining: int
    method: str | None
    path_contains: str | None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path_contains is None or self.path_contains in path
        )


class FaultProxy:
    """Forward HTTP to ``target`` (e.g. ``LocalSwift.proxy_url``), injecting faults.

    rate: fraction of requests (0..1) that get a fault, drawn from ``kinds``.
    seed: seeds the decisions. stall_seconds: how long a ``stall`` holds the answer.
    retry_after: the ``Retry-After`` value of the ``*-retry-after`` kinds.
    ssl_context: serve HTTPS with this server context (for TLS verification tests).
    """

    def __init__(
        self,
        target: str,
        *,
        rate: float = 0.0,
        kinds: Iterable[str] = ALL_FAULTS,
        seed: int = 0,
        stall_seconds: float = 3.0,
        retry_after: float = 1,
        ssl_context: ssl.SSLContext | None = None,
        drop_request_headers: Iterable[str] = (),
    ) -> None:
        self.target = URL(target.rstrip("/"))
        #: Request headers (any case) never forwarded: a server that ignores a change (an ACL,
        #: metadata) while answering success, for the code that must notice it.
        self.drop_request_headers = frozenset(h.lower() for h in drop_request_headers)
        self.stall_seconds = stall_seconds
        self.retry_after = retry_after
        self._ssl = ssl_context
        self._rng = random.Random(seed)
        self._rate = 0.0
        self._kinds: tuple[str, ...] = ()
        self.configure(rate=rate, kinds=kinds)
        self._counts: Counter[str] = Counter()
        self._events: deque[tuple[str, str, str]] = deque(maxlen=100_000)
        self._scripted: list[_Scripted] = []
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._client: aiohttp.ClientSession | None = None
        self._stopped: asyncio.Event | None = None
        self.port: int | None = None

    # -- configuration ----------------------------------------------------------------------
    def configure(self, *, rate: float | None = None, kinds: Iterable[str] | None = None) -> None:
        """Change the fault rate and/or kinds while running."""
        if rate is not None:
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"rate must be within [0, 1], got {rate}")
            self._rate = rate
        if kinds is not None:
            kinds = tuple(kinds)
            unknown = sorted(set(kinds) - set(ALL_FAULTS))
            if unknown or not kinds:
                raise ValueError(f"unknown or no fault kinds {unknown}; known: {ALL_FAULTS}")
            self._kinds = kinds

    def inject(
        self,
        kind: str,
        count: int = 1,
        *,
        method: str | None = None,
        path_contains: str | None = None,
    ) -> None:
        """Give the next ``count`` requests that match ``method``/``path_contains`` this fault."""
        if kind not in ALL_FAULTS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {ALL_FAULTS}")
        with self._lock:
            self._scripted.append(_Scripted(kind, count, method, path_contains))

    @property
    def counts(self) -> dict[str, int]:
        """Faults injected so far by kind, plus ``requests``, ``forwarded`` (and ``forwarded
        <METHOD>``: answered by the server, faulted after or not) and ``upstream-errors``."""
        with self._lock:
            return dict(self._counts)

    @property
    def injected(self) -> int:
        """How many faults were injected so far (all kinds), for tests that assert some were."""
        with self._lock:
            return sum(v for k, v in self._counts.items() if k in ALL_FAULTS)

    def events(self) -> list[tuple[str, str, str]]:
        """(kind, method, path) of every fault injected (the last 100 000)."""
        with self._lock:
            return list(self._events)

    def reset_counts(self) -> None:
        """Forget the counts and events so far (between phases of one test)."""
        with self._lock:
            self._counts.clear()
            self._events.clear()

    @property
    def url(self) -> str:
        """The proxy's base URL on 127.0.0.1; ``RuntimeError`` before ``start()``."""
        if self.port is None:
            raise RuntimeError("FaultProxy is not started")
        return f"{'https' if self._ssl else 'http'}://127.0.0.1:{self.port}"

    def via(self, url: str) -> str:
        """``url`` (e.g. a storage URL of the target) rewritten to go through this proxy."""
        u = URL(url)
        if (u.scheme, u.host, u.port) != (self.target.scheme, self.target.host, self.target.port):
            raise ValueError(f"{url} is not on the proxied server {self.target}")
        return str(URL(self.url).with_path(u.raw_path, encoded=True).with_query(u.raw_query_string))

    def __repr__(self) -> str:
        where = self.url if self.port else "not started"
        return f"<FaultProxy {where} -> {self.target} rate={self._rate}>"

    # -- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> FaultProxy:
        """Serve on a free port of 127.0.0.1 from a daemon thread; returns once it listens.
        Raises ``RuntimeError`` if already started or if it did not come up within 30 s."""
        if self._thread is not None:
            raise RuntimeError("already started")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve(ready))
            except BaseException as e:
                failure.append(e)
                ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="FaultProxy", daemon=True)
        self._thread.start()
        ready.wait(30)
        if failure or self.port is None:
            raise RuntimeError(f"FaultProxy did not start: {failure[:1]}")
        return self

    def stop(self) -> None:
        """Stop serving and join the thread (idempotent; a no-op if never started)."""
        if self._thread is None or self._loop is None or self._stopped is None:
            return
        self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(30)
        self._thread = None

    async def _serve(self, ready: threading.Event) -> None:
        self._stopped = asyncio.Event()
        self._client = aiohttp.ClientSession(
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            connector=aiohttp.TCPConnector(limit=256),
            timeout=aiohttp.ClientTimeout(total=600, connect=10),
        )
        app = web.Application(client_max_size=1 << 40)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=self._ssl)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        ready.set()
        try:
            await self._stopped.wait()
        finally:
            await self._runner.cleanup()
            await self._client.close()

    # -- the proxy --------------------------------------------------------------------------
    def _choose(self, method: str, path: str) -> str | None:
        with self._lock:
            self._counts["requests"] += 1
            for script in self._scripted:
                if script.remaining > 0 and script.matches(method, path):
                    script.remaining -= 1
                    kind: str | None = script.kind
                    break
            else:
                kind = None
                if self._rate and self._rng.random() < self._rate:
                    allowed = [
                        k
                        for k in self._kinds
                        if (method == "GET" or k not in _GET_ONLY)
                        and (method == "PUT" or k not in _PUT_ONLY)
                    ]
                    kind = self._rng.choice(allowed) if allowed else None
            self._scripted = [s for s in self._scripted if s.remaining > 0]
            return kind

    def _record(self, kind: str, request: web.Request) -> None:
        with self._lock:
            self._counts[kind] += 1
            self._events.append((kind, request.method, request.path))
        log.debug("fault proxy: %s on %s %s", kind, request.method, request.path)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        kind = self._choose(request.method, request.path)
        if kind == "reset-before-body":
            self._record(kind, request)
            return _reset(request)
        body = await request.read()
        code = kind.split("-", 1)[0] if kind in STATUS_FAULTS else None
        if kind is not None and code in _BEFORE:
            self._record(kind, request)
            return self._status(int(code), kind)
        if kind == "corrupt-upload":
            if len(body) >= 2:
                self._record(kind, request)
                middle = len(body) // 2
                body = body[:middle] + bytes([body[middle] ^ 0xFF]) + body[middle + 1 :]
            kind = None  # otherwise forwarded as it is
        try:
            status, headers, data = await self._forward(request, body)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            with self._lock:
                self._counts["upstream-errors"] += 1
            return web.Response(
                status=502, text=f"fault proxy: upstream unreachable ({type(exc).__name__})\n"
            )
        if kind is None:
            return _response(status, headers, data)
        if code in _AFTER:
            self._record(kind, request)
            return self._status(int(code), kind)
        if kind == "reset-after-body":
            self._record(kind, request)
            return _reset(request)
        if kind == "stall":
            self._record(kind, request)
            await asyncio.sleep(self.stall_seconds)
            return _reset(request)
        if len(data) >= 2 and status == 200:  # truncate / corrupt need a body to damage
            self._record(kind, request)
            if kind == "corrupt":
                middle = len(data) // 2
                damaged = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
                return _response(status, headers, damaged)
            return await _truncated(request, status, headers, data)
        return _response(status, headers, data)

    def _status(self, code: int, kind: str) -> web.Response:
        headers = {"Retry-After": f"{self.retry_after:g}"} if kind.endswith("retry-after") else {}
        return web.Response(status=code, headers=headers, text=f"fault proxy: injected {kind}\n")

    async def _forward(
        self, request: web.Request, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Send the request on to the target; its (status, headers to pass on, body)."""
        assert self._client is not None
        dropped = _HOP_BY_HOP | self.drop_request_headers
        headers = {k: v for k, v in request.headers.items() if k.lower() not in dropped}
        url = URL(f"{self.target}{request.raw_path}", encoded=True)
        async with self._client.request(
            request.method,
            url,
            headers=headers,
            data=body if body else None,
            allow_redirects=False,
            skip_auto_headers=("Accept-Encoding", "User-Agent", "Content-Type"),
        ) as resp:
            data = await resp.read()
            out = [(k, v) for k, v in resp.headers.items() if k.lower() not in _HOP_BY_HOP]
            if request.method == "HEAD" and "Content-Length" in resp.headers:
                out.append(("Content-Length", resp.headers["Content-Length"]))
            with self._lock:
                self._counts["forwarded"] += 1
                self._counts[f"forwarded {request.method}"] += 1
            return resp.status, self._rewrite(out), data

    def _rewrite(self, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Point auth answers' storage URL at this proxy."""
        out = []
        for k, v in headers:
            if k.lower() == "x-storage-url" and v.startswith(str(self.target)):
                v = self.url + v[len(str(self.target)) :]
            out.append((k, v))
        return out


def _response(status: int, headers: list[tuple[str, str]], data: bytes) -> web.Response:
    resp = web.Response(status=status, body=data if data else None)
    for k, v in headers:
        if k.lower() == "content-length":
            continue
        resp.headers.add(k, v)
    head_length = next((v for k, v in headers if k.lower() == "content-length"), None)
    if head_length is not None and not data and status not in (204, 304):
        resp.headers["Content-Length"] = head_length  # a HEAD answer keeps the object's size
    return resp


async def _truncated(
    request: web.Request, status: int, headers: list[tuple[str, str]], data: bytes
) -> web.StreamResponse:
    resp = web.StreamResponse(status=status)
    for k, v in headers:
        if k.lower() != "content-length":
            resp.headers.add(k, v)
    resp.content_length = len(data)
    await resp.prepare(request)
    await resp.write(data[: len(data) // 2])
    _abort(request)
    return resp


def _abort(request: web.Request) -> None:
    """Close the client connection with a TCP reset (SO_LINGER 0), not a polite FIN."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    transport.abort()


def _reset(request: web.Request) -> web.StreamResponse:
    _abort(request)
    raise asyncio.CancelledError  # nothing to answer on a dead connection
