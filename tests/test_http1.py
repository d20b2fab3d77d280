"""The data path's HTTP/1.1 client against a scripted TCP server on 127.0.0.1.

Swift itself is exercised by every other test; these cover what a real Swift rarely sends but
the client must get right: heads and bodies split across reads, chunked bodies, interim 1xx
responses, bodies that end with the connection, resets, stalls, malformed responses, header
injection, keep-alive reuse and the pool's bound.
"""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from swiftzarr_batch.swift.http1 import ConnectionFailed, Endpoint, Headers, Pool, request_head


class Scripted:
    """A TCP server that reads each request (head and Content-Length body) and answers with
    ``script(request_number, head, body, writer)``; it counts connections."""

    rcvbuf: int | None = None  # a small receive buffer makes the server's slowness visible

    def __init__(self, script):
        self.script = script
        self.connections = 0
        self.open = 0
        self.max_open = 0
        self.requests = 0
        self.bodies: list[bytes] = []

    async def __aenter__(self):
        sock = socket.socket()
        if self.rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
        sock.bind(("127.0.0.1", 0))
        self.server = await asyncio.start_server(self._handle, sock=sock)
        self.port = sock.getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    async def _handle(self, reader, writer):
        self.connections += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.decode().split("\r\n"):
                    if line.lower().startswith("content-length:"):
                        length = int(line.split(":", 1)[1])
                body = await self._read_body(reader, length)
                self.bodies.append(body)
                n = self.requests
                self.requests += 1
                if await self.script(n, head, body, writer) == "close":
                    return
        finally:
            self.open -= 1
            writer.close()

    async def _read_body(self, reader, length):
        return await reader.readexactly(length) if length else b""

    def pool(self, **kw) -> Pool:
        kw.setdefault("limit", 4)
        kw.setdefault("connect_timeout", 2.0)
        kw.setdefault("read_timeout", 2.0)
        return Pool(Endpoint(f"http://127.0.0.1:{self.port}/v1/AUTH_t"), **kw)


async def fails_with(script, match: str) -> None:
    """A GET answered by ``script`` raises ConnectionFailed matching ``match``."""
    async with Scripted(script) as srv:
        pool = srv.pool()
        with pytest.raises(ConnectionFailed, match=match):
            await pool.request("GET", "/x")
        pool.close()


def ok(body: bytes, extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nEtag: x\r\n{extra}\r\n".encode() + body
    )


async def test_split_heads_and_bodies_and_keepalive_reuse():
    payload = bytes(range(256)) * 1000

    async def script(n, head, body, w):
        raw = ok(payload)
        for i in range(0, len(raw), 7 if n == 0 else 50_000):  # tiny pieces, then big ones
            w.write(raw[i : i + (7 if n == 0 else 50_000)])
            await w.drain()

    async with Scripted(script) as srv:
        pool = srv.pool()
        for _ in range(3):
            r = await pool.request("GET", "/v1/AUTH_t/c/o")
            assert r.status == 200 and r.body == payload and r.headers["ETAG"] == "x"
        assert srv.connections == 1  # kept alive
        pool.close()


async def test_chunked_body_with_extensions_and_trailers():
    async def script(n, head, body, w):
        w.write(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1\r\n \r\n"
        )
        await w.drain()
        w.write(b"5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n")

    async with Scripted(script) as srv:
        pool = srv.pool()
        assert (await pool.request("GET", "/x")).body == b"hello world"
        assert (await pool.request("GET", "/x")).body == b"hello world"
        assert srv.connections == 1
        pool.close()


async def test_interim_100_continue_then_the_response():
    async def script(n, head, body, w):
        w.write(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"done"))

    async with Scripted(script) as srv:
        pool = srv.pool()
        r = await pool.request("PUT", "/x", body=b"abc")
        assert (r.status, r.body) == (200, b"done")
        assert srv.bodies == [b"abc"]
        pool.close()


async def test_head_has_no_body_and_204_neither():
    async def script(n, head, body, w):
        if n == 0:
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
        else:
            w.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")

    async with Scripted(script) as srv:
        pool = srv.pool()
        r = await pool.request("HEAD", "/x")
        assert r.status == 200 and r.body == b"" and r.headers["content-length"] == "1234"
        assert (await pool.request("DELETE", "/x")).status == 204
        assert srv.connections == 1
        pool.close()


async def test_body_until_close_and_connection_close_header():
    async def script(n, head, body, w):
        if n == 0:
            w.write(b"HTTP/1.1 200 OK\r\n\r\nall of it")
            return "close"
        w.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
        return "close"

    async with Scripted(script) as srv:
        pool = srv.pool()
        assert (await pool.request("GET", "/x")).body == b"all of it"
        assert (await pool.request("GET", "/x")).body == b"ok"
        assert (await pool.request("GET", "/x")).body == b"ok"
        assert srv.connections == 3  # none of them reusable
        pool.close()


async def test_reset_mid_body_is_a_connection_failure():
    async def script(n, head, body, w):
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 5000)
        await w.drain()
        return "close"

    await fails_with(script, "in the response body")


async def test_a_stalled_server_fails_after_read_timeout():
    async def script(n, head, body, w):
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12345")
        await asyncio.sleep(5)

    async with Scripted(script) as srv:
        pool = srv.pool(read_timeout=0.3)
        t0 = time.monotonic()
        with pytest.raises(ConnectionFailed, match="no progress for 0.3 s"):
            await pool.request("GET", "/x")
        assert time.monotonic() - t0 < 2
        pool.close()


async def test_a_slow_upload_is_progress_not_a_stall():
    """The server reads a 32 MiB body slowly (longer than read_timeout in all): not a stall."""

    class Slow(Scripted):
        rcvbuf = 64 * 1024

        async def _read_body(self, reader, length):
            got = bytearray()
            while len(got) < length:
                got += await reader.read(min(1 << 20, length - len(got)))
                await asyncio.sleep(0.05)
            return bytes(got)

    async def script(n, head, body, w):
        w.write(ok(str(len(body)).encode()))

    async with Slow(script) as srv:
        pool = srv.pool(read_timeout=0.5)
        t0 = time.monotonic()
        r = await pool.request("PUT", "/x", body=memoryview(bytes(32 << 20)))
        assert r.body == str(32 << 20).encode()
        assert time.monotonic() - t0 > 0.5  # it did take longer than the timeout
        pool.close()


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/2 200\r\n\r\n",
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
async def test_malformed_responses_fail(answer):
    async def script(n, head, body, w):
        w.write(answer)
        await asyncio.sleep(1)

    await fails_with(script, "malformed")


async def test_idle_connection_closed_by_server_is_not_reused():
    async def script(n, head, body, w):
        w.write(ok(b"a"))
        await w.drain()
        return "close"  # closes right after answering, without saying so

    async with Scripted(script) as srv:
        pool = srv.pool()
        assert (await pool.request("GET", "/x")).body == b"a"
        await asyncio.sleep(0.1)  # the FIN arrives
        assert (await pool.request("GET", "/x")).body == b"a"
        assert srv.connections == 2
        pool.close()


async def test_pool_bounds_open_connections():
    async def script(n, head, body, w):
        await asyncio.sleep(0.02)
        w.write(ok(b"z"))

    async with Scripted(script) as srv:
        pool = srv.pool(limit=3)
        bodies = await asyncio.gather(*(pool.request("GET", f"/o{i}") for i in range(30)))
        assert all(r.body == b"z" for r in bodies)
        assert srv.max_open <= 3 and srv.connections <= 3
        pool.close()


async def test_large_body_arrives_whole():
    payload = bytes(range(251)) * (8 * 1024 * 1024 // 251)

    async def script(n, head, body, w):
        w.write(ok(payload))

    async with Scripted(script) as srv:
        pool = srv.pool()
        r = await pool.request("GET", "/big")
        assert len(r.body) == len(payload) and r.body == payload
        pool.close()


async def test_connect_refused_is_a_connection_failure():
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    pool = Pool(Endpoint(f"http://127.0.0.1:{port}"), limit=1, connect_timeout=1, read_timeout=1)
    with pytest.raises(ConnectionFailed, match="connect to 127.0.0.1"):
        await pool.request("GET", "/")


def test_header_injection_and_unquoted_targets_are_refused():
    with pytest.raises(ValueError, match="line break"):
        request_head("PUT", "/a", "h", {"X-Object-Meta-A": "x\r\nX-Evil: 1"}, 0)
    with pytest.raises(ValueError, match="line break"):
        request_head("PUT", "/a", "h", {"X-Bad\nName": "x"}, 0)
    with pytest.raises(ValueError, match="percent-encoded"):
        request_head("GET", "/a b", "h", None, None)
    head = request_head("PUT", "/a", "h:1", {"Content-Length": "99", "ETag": "e"}, 3)
    assert head.count(b"Content-Length") == 1 and b"Content-Length: 3\r\n" in head


def test_headers_are_case_insensitive_and_repr_hides_values():
    h = Headers([("X-Auth-Token", "secret"), ("Etag", "a"), ("etag", "b")])
    assert h["x-auth-token"] == "secret" and h.get("ETAG") == "a" and "etag" in h
    assert h.get("missing", "d") == "d" and len(h) == 3
    assert "secret" not in repr(h)


def test_endpoint_parsing():
    e = Endpoint("https://[::1]:8443/swift/v1/AUTH_x/")
    assert (e.host, e.port, e.host_header, e.base_path) == (
        "::1",
        8443,
        "[::1]:8443",
        "/swift/v1/AUTH_x",
    )
    assert Endpoint("http://h/v1/A").host_header == "h"
    with pytest.raises(ValueError, match="not an http"):
        Endpoint("ftp://h/v1")
