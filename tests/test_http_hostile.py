"""The data path against servers that lie, glue, trickle and flood (issue 13, parts 1-4).

Every case is a scripted server on 127.0.0.1 (``test_http1.Scripted``) or, for the big
truncated read, the real Swift behind ``FaultProxy``. Each must end in a clear
``ConnectionFailed`` (or the store's typed error) within its time bound, never in wrong bytes,
and never with more memory than its bound: memory is measured as the peak RSS of a child
process (its own ``VmHWM``), so the test process's own heap does not blur it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
import time

import pytest
from test_http1 import Scripted, fails_with, ok

from swiftzarr_batch import RetryPolicy, SwiftHTTPError
from swiftzarr_batch.swift.http1 import ConnectionFailed
from swiftzarr_batch.swift.session import SwiftSession, TransportOptions
from swiftzarr_batch.swift.tokens import Token

MiB = 1 << 20


def session_for(srv: Scripted, *, read_timeout: float = 2.0, retry: RetryPolicy) -> SwiftSession:
    token = Token(f"http://127.0.0.1:{srv.port}/v1/AUTH_t", "tok")
    return SwiftSession(token, None, TransportOptions(read_timeout=read_timeout, retry=retry))


# -- 1. strict framing ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (
            b"Content-Length: 5\r\nContent-Length: 10\r\n\r\nhello world",
            "conflicting Content-Length",
        ),
        (b"Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello", "conflicting Content-Length"),
        (b"Content-Length: 1_0\r\n\r\n0123456789", "non-decimal Content-Length"),
        (b"Content-Length: +10\r\n\r\n0123456789", "non-decimal Content-Length"),
        (b"Content-Length: 0x0a\r\n\r\n0123456789", "non-decimal Content-Length"),
        (b"Content-Length: 99999999999999999999999\r\n\r\n", "Content-Length too large"),
        (
            b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "Content-Length together with Transfer-Encoding",
        ),
        (
            b"Transfer-Encoding: gzip, chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            "unsupported Transfer-Encoding 'gzip, chunked'",
        ),
        (b"Transfer-Encoding: gzip\r\n\r\nhello", "unsupported Transfer-Encoding 'gzip'"),
        (
            b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "unsupported Transfer-Encoding",
        ),
        (b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n-2\r\nxx\r\n", "malformed chunk size"),
        (b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0x2\r\nxx\r\n", "malformed chunk size"),
        (b"Transfer-Encoding: chunked\r\n\r\nfffffffffffffffffff\r\n", "chunk size too large"),
        (b"Transfer-Encoding: chunked\r\n\r\n5\r\nhelloXX", "malformed response body"),
        (b"Content-Length : 5\r\n\r\nhello", "malformed response head"),
        (b"X-A: a\r\n folded\r\nContent-Length: 5\r\n\r\nhello", "malformed response head"),
        (b"X-A: a\x00b\r\nContent-Length: 5\r\n\r\nhello", "malformed response head"),
    ],
)
async def test_ambiguous_framing_is_refused_and_the_connection_closed(answer, reason):
    async def script(n, head, body, w):
        w.write(b"HTTP/1.1 200 OK\r\nEtag: x\r\n" + answer)
        await asyncio.sleep(0.5)

    async with Scripted(script) as srv:
        pool = srv.pool()
        with pytest.raises(ConnectionFailed, match=reason):
            await pool.request("GET", "/x")
        with pytest.raises(ConnectionFailed):
            await pool.request("GET", "/x")  # a new connection, refused again: none reused
        assert srv.connections == 2
        pool.close()


async def test_an_unrequested_upgrade_is_refused():
    async def script(n, head, body, w):
        w.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: evil\r\nConnection: upgrade\r\n\r\n")
        await asyncio.sleep(0.5)

    await fails_with(script, "unrequested protocol upgrade")


async def test_twenty_thousand_interim_heads_fail_fast_without_a_traceback(caplog):
    async def script(n, head, body, w):
        w.write(b"HTTP/1.1 100 Continue\r\n\r\n" * 20_000 + ok(b"late"))
        await asyncio.sleep(0.5)

    caplog.set_level(logging.DEBUG)
    t0 = time.monotonic()
    await fails_with(script, "more than 32 interim")
    assert time.monotonic() - t0 < 2
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_interim_heads_with_headers_and_split_reasons_then_the_answer():
    async def script(n, head, body, w):
        raw = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" * 5 + ok(b"fine")
        for i in range(0, len(raw), 3):
            w.write(raw[i : i + 3])
            await w.drain()

    async with Scripted(script) as srv:
        pool = srv.pool()
        r = await pool.request("GET", "/x")
        assert (r.status, r.reason, r.body) == (200, "OK", b"fine")
        pool.close()


async def test_a_head_that_never_ends_is_refused_at_its_bound():
    async def script(n, head, body, w):
        w.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(2000):  # 100 KB of headers, then it would go on
            w.write(b"X-Filler-%d: %s\r\n" % (i, b"y" * 40))
        await asyncio.sleep(0.5)

    await fails_with(script, "response head over 65536 bytes")


# -- 2. no desync -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("size", "delay"),
    [(10, 0.0), (1 << 20, 0.0), (10, 0.05)],
    ids=["glued-to-a-small-body", "glued-to-a-big-body", "arriving-while-idle"],
)
async def test_a_glued_second_response_is_never_taken_for_the_next_answer(size, delay):
    """A big body is read straight into its buffer, so the junk after it is still in the
    kernel when the next request would go out on that connection: it must not."""
    evil = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nEtag: e\r\n\r\nEVIL"

    def answer(n: int) -> bytes:
        return (b"answer %d " % n).ljust(size, b".")

    async def script(n, head, body, w):
        w.write(ok(answer(n)) + (b"" if delay else evil))
        if delay:
            await w.drain()
            await asyncio.sleep(delay)
            w.write(evil)  # unrequested, while the connection idles

    async with Scripted(script) as srv:
        pool = srv.pool()
        for i in range(3):
            r = await pool.request("GET", "/x")
            assert r.body == answer(i), r.body[:20]
            if delay:
                await asyncio.sleep(2 * delay)
        assert srv.connections == 3  # none was reused
        pool.close()


async def test_bytes_after_a_head_answer_or_a_204_are_not_reused():
    async def script(n, head, body, w):
        if n % 2 == 0:
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")  # HEAD: no body allowed
        else:
            w.write(b"HTTP/1.1 204 No Content\r\n\r\nxyz")

    async with Scripted(script) as srv:
        pool = srv.pool()
        assert (await pool.request("HEAD", "/x")).body == b""
        assert (await pool.request("DELETE", "/x")).status == 204
        assert (await pool.request("HEAD", "/x")).status == 200
        assert srv.connections == 3
        pool.close()


async def test_a_clean_connection_is_still_reused():
    async def script(n, head, body, w):
        w.write(ok(b"z" * 10))

    async with Scripted(script) as srv:
        pool = srv.pool()
        for _ in range(5):
            assert (await pool.request("GET", "/x")).body == b"z" * 10
            await asyncio.sleep(0.01)
        assert srv.connections == 1
        pool.close()


# -- 4. time bounded --------------------------------------------------------------------------
async def trickle(w, data: bytes, every: float, limit: float = 10.0) -> None:
    """Send ``data`` a byte at a time, stopping by itself after ``limit`` seconds."""
    t0 = time.monotonic()
    for i in range(len(data)):
        if time.monotonic() - t0 > limit:
            return
        w.write(data[i : i + 1])
        await w.drain()
        await asyncio.sleep(every)


async def test_a_trickling_head_fails_within_read_timeout_saying_it_was_too_slow():
    async def script(n, head, body, w):
        await trickle(w, ok(b"x" * 100), 0.25)

    async with Scripted(script) as srv:
        pool = srv.pool(read_timeout=1.0)
        t0 = time.monotonic()
        with pytest.raises(ConnectionFailed, match="too slow"):
            await pool.request("GET", "/x")
        assert time.monotonic() - t0 < 1.6
        pool.close()


async def test_a_trickling_head_through_the_session_fails_within_budget_plus_read_timeout():
    async def script(n, head, body, w):
        await trickle(w, ok(b"x" * 100), 0.25)

    async with Scripted(script) as srv:
        session = session_for(
            srv, read_timeout=1.0, retry=RetryPolicy(attempts=10, base_delay=0.05, budget=3)
        )
        t0 = time.monotonic()
        with pytest.raises(SwiftHTTPError) as info:
            await session.request("GET", "c/o")
        elapsed = time.monotonic() - t0
        assert elapsed < 3 + 1.0, elapsed
        message = str(info.value)
        assert "retry budget of 3 s spent" in message and "too slow" in message, message
        await session.aclose()


async def test_a_body_just_above_the_minimum_rate_is_cut_by_the_budget():
    """16+ KiB per read_timeout keeps each try alive; the budget still ends the request."""

    async def script(n, head, body, w):
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1073741824\r\n\r\n")
        t0 = time.monotonic()
        while time.monotonic() - t0 < 8:
            w.write(b"x" * 40_000)
            await w.drain()
            await asyncio.sleep(0.5)

    async with Scripted(script) as srv:
        session = session_for(srv, read_timeout=1.0, retry=RetryPolicy(attempts=5, budget=2.5))
        t0 = time.monotonic()
        with pytest.raises(SwiftHTTPError, match="retry budget of 2.5 s spent, the try in flight"):
            await session.request("GET", "c/o")
        assert time.monotonic() - t0 < 2.5 + 0.5
        await session.aclose()


async def test_a_slow_but_steady_download_is_not_too_slow():
    async def script(n, head, body, w):
        raw = ok(b"y" * 200_000)
        for i in range(0, len(raw), 20_000):  # 20 KB per 0.15 s, well above 16 KiB / 0.5 s
            w.write(raw[i : i + 20_000])
            await w.drain()
            await asyncio.sleep(0.15)

    async with Scripted(script) as srv:
        pool = srv.pool(read_timeout=0.5)
        assert (await pool.request("GET", "/x")).body == b"y" * 200_000
        pool.close()


# -- 3. memory bounded by what arrived (peak RSS of a child process) --------------------------
RSS = textwrap.dedent(
    """
    import os, resource

    def resident_kib():
        # now, not the high-water mark: imports leave a transient peak that would hide growth
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024

    def reset_peak():
        # Linux: the high-water mark restarts from now, so the imports' peak is not counted
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass

    def peak_kib():
        # VmHWM, this process's own high-water mark (reset by reset_peak). Not ru_maxrss: exec
        # carries the forking parent's peak into it, so under a big pytest process it would
        # report the parent's size, not this child's
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    """
)


CHILD = RSS + textwrap.dedent(
    """
    import asyncio, json, sys
    from swiftzarr_batch import RetryPolicy, SwiftHTTPError
    from swiftzarr_batch.swift.session import SwiftSession, TransportOptions
    from swiftzarr_batch.swift.tokens import Token

    ANNOUNCED, SENT, ATTEMPTS = (int(a) for a in sys.argv[1:4])

    async def handle(reader, writer):
        await reader.readuntil(b"\\r\\n\\r\\n")
        writer.write(b"HTTP/1.1 200 OK\\r\\nContent-Length: %d\\r\\n\\r\\n" % ANNOUNCED)
        for _ in range(SENT // 65536):
            writer.write(b"x" * 65536)
            await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        token = Token(f"http://127.0.0.1:{port}/v1/AUTH_t", "tok")
        retry = RetryPolicy(attempts=ATTEMPTS, base_delay=0.01, max_delay=0.02, budget=30)
        session = SwiftSession(token, None, TransportOptions(read_timeout=5, retry=retry))
        reset_peak()
        before = resident_kib()
        try:
            await session.request("GET", "c/o")
            error = None
        except SwiftHTTPError as exc:
            error = str(exc)
        peak = peak_kib()
        await session.aclose()
        server.close()
        print(json.dumps({"grew_kib": peak - before, "error": error}))

    asyncio.run(main())
    """
)


def run_child(script: str, *args: object, timeout: float = 120) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", script, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("announced", [1 << 30, 5 << 30])
def test_a_lying_content_length_costs_what_arrived_not_what_was_announced(announced):
    """1 GiB or 5 GiB announced, 10 MiB sent, 3 tries: memory grows by MiB, not GiB."""
    result = run_child(CHILD, announced, 10 * MiB, 3)
    assert "after 3 attempts" in result["error"] and "in the response body" in result["error"]
    # KiB. Old code: +3 GiB / +15 GiB. Now 16.5 MiB: the 16 MiB pre-size cap, one try at a time
    # (the "~77 MiB" once seen here was the forking pytest's peak, which ru_maxrss inherits
    # across exec; the child now reads its own VmHWM)
    assert result["grew_kib"] < 32 * 1024, result


TRUNCATED_CHILD = RSS + textwrap.dedent(
    """
    import asyncio, hashlib, json, sys
    from swiftzarr_batch import RetryPolicy, SwiftStore

    url, token, container, name = sys.argv[1:5]

    async def main():
        retry = RetryPolicy(attempts=8, base_delay=0.01, max_delay=0.05, budget=120)
        store = SwiftStore(
            container, preauthurl=url, preauthtoken=token, read_timeout=10, retry=retry
        )
        c = await store.swift_container()
        reset_peak()
        before = resident_kib()
        resp = await c.get(name)
        peak = peak_kib()
        print(json.dumps({
            "grew_kib": peak - before,
            "md5": hashlib.md5(resp.body).hexdigest(),
            "retries": store.counters["retries"],
        }))

    asyncio.run(main())
    """
)


def test_a_big_read_truncated_six_times_peaks_at_twice_its_size(swift_server, container_name):
    """64 MiB, cut half-way 6 times by FaultProxy, then whole: RSS grows by at most ~2x."""
    import hashlib

    from swiftclient.client import Connection

    from swiftzarr_batch.testing.faultproxy import FaultProxy

    payload = os.urandom(64 * MiB)
    conn = Connection(authurl=swift_server.auth_url, user=swift_server.user, key=swift_server.key)
    conn.put_container(container_name)
    conn.put_object(container_name, "big", payload)
    url, token = conn.get_auth()
    with FaultProxy(swift_server.proxy_url, seed=1) as fp:
        fp.inject("truncate", 6, method="GET", path_contains="/big")
        result = run_child(TRUNCATED_CHILD, fp.via(url), token, container_name, "big", timeout=300)
        assert fp.counts["truncate"] == 6
    assert result["md5"] == hashlib.md5(payload).hexdigest() and result["retries"] == 6
    assert result["grew_kib"] < 2 * 64 * 1024 + 16 * 1024, result  # KiB: 2 x 64 MiB + slack
