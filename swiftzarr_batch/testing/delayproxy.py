"""``DelayProxy``: Swift made far away, for benchmarks of distance (a campus, a WAN).

The fault proxy's delay mode (``testing.faultproxy`` misbehaves; this one only waits): a TCP
relay on 127.0.0.1 that adds a fixed delay to every round trip (the benchmarks' W12: Swift 2 or
20 ms away), the same for every client.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import deque

from yarl import URL

__all__ = ["DelayProxy"]

log = logging.getLogger(__name__)


class DelayProxy:
    """A TCP relay on 127.0.0.1 that adds ``delay`` seconds to every round trip to ``target``:
    the fault proxy's delay mode, for distance (a campus, a WAN) rather than misbehaviour.

    This kernel has no netem, so latency is added in user space. Why a byte relay and not
    ``FaultProxy``'s HTTP forwarding: it must cost every client the same and add nothing but
    the delay. Bytes towards the server are held ``delay`` seconds (in order, each read as it
    came), bytes back pass at once, and a new connection reaches the server ``delay`` seconds
    after it was accepted (the handshake's round trip). So one HTTP/1.1 request on a kept-alive
    connection takes ``delay`` longer, a request on a new connection ``2 * delay`` longer, and
    bodies stream through without being buffered whole or parsed. Auth answers name the server
    by the ``Host`` the client sent (TempAuth does), so a client that authenticates through the
    relay sends all its requests through it. Flow control is passed through both ways.
    """

    def __init__(self, target: str, *, delay: float) -> None:
        u = URL(target)
        if u.scheme != "http" or u.host is None or u.port is None:
            raise ValueError(f"DelayProxy relays plain http://host:port, got {target!r}")
        if delay < 0:
            raise ValueError(f"delay must be >= 0, got {delay}")
        self.target_host, self.target_port, self.delay = u.host, u.port, delay
        self.port: int | None = None
        self.connections = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``: point a client (or a storage URL) here instead of Swift."""
        if self.port is None:
            raise RuntimeError("DelayProxy is not started")
        return f"http://127.0.0.1:{self.port}"

    def __repr__(self) -> str:
        where = self.url if self.port else "not started"
        return f"<DelayProxy {where} -> {self.target_host}:{self.target_port} +{self.delay:g} s>"

    def __enter__(self) -> DelayProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> DelayProxy:
        """Listen on a free loopback port, in a thread with its own event loop."""
        if self._thread is not None:
            raise RuntimeError("already started")
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve(ready))
            finally:
                ready.set()
                loop.close()

        self._thread = threading.Thread(target=run, name="DelayProxy", daemon=True)
        self._thread.start()
        ready.wait(30)
        if self.port is None:
            raise RuntimeError("DelayProxy did not start")
        return self

    def stop(self) -> None:
        """Close the listener and every relayed connection, and end the thread."""
        if self._thread is None or self._loop is None or self._stopped is None:
            return
        self._loop.call_soon_threadsafe(self._stopped.set)
        self._thread.join(30)
        self._thread = None

    async def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        relays: set[_ClientSide] = set()

        def accept() -> _ClientSide:
            self.connections += 1
            return _ClientSide(self, relays)

        server = await loop.create_server(accept, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        try:
            await self._stopped.wait()
        finally:
            server.close()
            for relay in list(relays):
                relay.close()
            await server.wait_closed()


class _Delayed:
    """Bytes for one transport, each written ``delay`` s after it was queued, in order, and
    none before ``not_before`` + ``delay``: a client cannot send before its connection's
    handshake is done, which takes one round trip."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay: float, not_before: float) -> None:
        self._loop, self._delay, self._not_before = loop, delay, not_before
        self._queue: deque[tuple[float, bytes | None]] = deque()  # None: close after the rest
        self._timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None  # writes wait until it is set

    def put(self, data: bytes | None) -> None:
        self._queue.append((max(self._loop.time(), self._not_before) + self._delay, data))
        if self._timer is None and self.transport is not None:
            self._timer = self._loop.call_at(self._queue[0][0], self.flush)

    def flush(self) -> None:
        self._timer = None
        transport = self.transport
        if transport is None:
            return
        now = self._loop.time() + 0.0005  # a timer may run a hair early
        while self._queue and self._queue[0][0] <= now:
            _, data = self._queue.popleft()
            if data is None:
                if transport.can_write_eof():
                    transport.write_eof()
                else:
                    transport.close()
            elif not transport.is_closing():
                transport.write(data)
        if self._queue:
            self._timer = self._loop.call_at(self._queue[0][0], self.flush)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._queue.clear()


class _ClientSide(asyncio.Protocol):
    """A client's connection to the relay; its bytes go to the server ``delay`` s later."""

    def __init__(self, proxy: DelayProxy, relays: set[_ClientSide]) -> None:
        self._proxy, self._relays = proxy, relays
        self.transport: asyncio.Transport | None = None
        self._upstream: _ServerSide | None = None
        self._loop = asyncio.get_running_loop()
        # the handshake's round trip: the connection is usable ``delay`` after the accept
        self._to_server = _Delayed(self._loop, proxy.delay, self._loop.time() + proxy.delay)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = _cast_transport(transport)
        self._relays.add(self)
        self._loop.call_later(self._proxy.delay, self._connect)

    def _connect(self) -> None:
        async def connect() -> None:
            try:
                _, upstream = await self._loop.create_connection(
                    lambda: _ServerSide(self), self._proxy.target_host, self._proxy.target_port
                )
            except OSError:
                self.close()
                return
            self._upstream = upstream
            self._to_server.transport = upstream.transport
            self._to_server.flush()

        if self.transport is not None and not self.transport.is_closing():
            self._loop.create_task(connect())

    def data_received(self, data: bytes) -> None:
        self._to_server.put(data)

    def eof_received(self) -> bool:
        self._to_server.put(None)  # the client's FIN, after its last bytes
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._relays.discard(self)
        if self._upstream is not None and self._upstream.transport is not None:
            if exc is None:
                self._to_server.put(None)
            else:  # a reset: pass it on at once
                self._to_server.cancel()
                self._upstream.transport.abort()

    # the server reads slower than the client sends: stop reading from the client
    def pause_writing(self) -> None:
        if self._upstream is not None and self._upstream.transport is not None:
            self._upstream.transport.pause_reading()

    def resume_writing(self) -> None:
        if self._upstream is not None and self._upstream.transport is not None:
            self._upstream.transport.resume_reading()

    def close(self) -> None:
        self._to_server.cancel()
        if self.transport is not None:
            self.transport.abort()
        if self._upstream is not None and self._upstream.transport is not None:
            self._upstream.transport.abort()


class _ServerSide(asyncio.Protocol):
    """The relay's connection to the server; its bytes go back to the client at once."""

    def __init__(self, client: _ClientSide) -> None:
        self._client = client
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = _cast_transport(transport)

    def data_received(self, data: bytes) -> None:
        if self._client.transport is not None:
            self._client.transport.write(data)

    def eof_received(self) -> bool:
        if self._client.transport is not None and self._client.transport.can_write_eof():
            self._client.transport.write_eof()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        if self._client.transport is not None:
            if exc is None:
                self._client.transport.close()
            else:
                self._client.transport.abort()

    def pause_writing(self) -> None:  # the client reads slower than the server sends
        if self._client.transport is not None:
            self._client.transport.pause_reading()

    def resume_writing(self) -> None:
        if self._client.transport is not None:
            self._client.transport.resume_reading()


def _cast_transport(transport: asyncio.BaseTransport) -> asyncio.Transport:
    assert isinstance(transport, asyncio.Transport)
    return transport
