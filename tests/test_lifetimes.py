"""Nothing left behind: sessions of dropped stores close, large-object MD5s leave the event loop
free, and a LocalSwift dies with (and cleans up after) the process that owns it."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from swiftzarr_batch import SwiftStore
from swiftzarr_batch.auth import V1Password
from swiftzarr_batch.swift import session as session_module
from swiftzarr_batch.swift.checksums import BODY_MD5_HEADER
from swiftzarr_batch.swift.large_objects import limits, put_large
from swiftzarr_batch.swift.session import open_sessions, process_counters

PROTO = default_buffer_prototype()


def _sockets_to(port: int) -> int:
    """This process's established TCP connections to ``port`` on 127.0.0.1."""
    return sum(
        1
        for c in psutil.Process().net_connections(kind="tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    )


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not after {timeout} s: {what}")
        time.sleep(0.1)


def test_stores_of_200_tokens_dropped_close_their_sessions(
    swift_server, creds, container_name, monkeypatch
):
    port = int(swift_server.proxy_url.rsplit(":", 1)[1])
    keeper = SwiftStore(container_name, **creds)
    sync(keeper.set("k", PROTO.buffer.from_bytes(b"v")))
    kept_session = keeper.session
    baseline, others = _sockets_to(port), open_sessions()
    provider = V1Password(swift_server.auth_url, swift_server.user, swift_server.key)
    tokens = [provider.authenticate_once() for _ in range(200)]
    assert len({t.token for t in tokens}) == 200
    stores = [
        SwiftStore(container_name, preauthurl=t.storage_url, preauthtoken=t.token) for t in tokens
    ]

    async def use_all(some: list[SwiftStore]) -> list[bool]:
        return await asyncio.gather(*(s.exists("k") for s in some))

    assert all(sync(use_all(stores)))
    # at least a socket and a session per token; not "baseline + 200" or "others + 200": the
    # sweeper may close earlier tests' idle pools and free their sessions meanwhile (CI saw 209
    # sessions against 10 + 200)
    assert _sockets_to(port) >= 200
    assert len({id(s.session) for s in stores}) == 200
    assert open_sessions() >= 200 + 1  # and the keeper's
    requests_seen = process_counters()["requests"]

    monkeypatch.setattr(session_module, "IDLE_CLOSE_SECONDS", 0.5)
    del stores
    gc.collect()
    # the sweeper thread (every SWEEP_EVERY s) closes idle pools and lets the dropped go
    _wait_for(lambda: _sockets_to(port) <= baseline, 3 * session_module.SWEEP_EVERY, "sockets")
    assert open_sessions() <= others  # the 200 dropped sessions are gone
    assert process_counters()["requests"] >= requests_seen  # what they did is still counted
    # the store still alive keeps its session (its pool was closed while idle) and works
    assert keeper.session is kept_session
    assert sync(keeper.get("k", PROTO)).to_bytes() == b"v"


def test_large_object_md5s_do_not_stall_the_event_loop(swift_server, creds, container_name):
    body = os.urandom(96 * 1024 * 1024)
    store = SwiftStore(container_name, **creds)

    async def write() -> float:
        container = await store.swift_container()
        limit = await limits(container.session)
        loop = asyncio.get_running_loop()
        gaps: list[float] = []

        async def ticker() -> None:
            last = loop.time()
            while True:
                await asyncio.sleep(0.01)
                now = loop.time()
                gaps.append(now - last)
                last = now

        tick = asyncio.create_task(ticker())
        await asyncio.sleep(0.05)
        try:
            assert await put_large(container, "big", body, limit, segment_size=16 * 1024 * 1024)
        finally:
            tick.cancel()
        head = await container.head("big")
        assert head is not None and head.headers[BODY_MD5_HEADER] == hashlib.md5(body).hexdigest()
        return max(gaps)

    stall = sync(write())
    # on the loop, the six 16 MiB segments' MD5s and the whole body's took 0.33 s here;
    # in threads, what is left is sharing 2 cores with them (20-60 ms)
    assert stall < 0.15, f"the event loop stalled {stall * 1000:.0f} ms"


_OWNER = textwrap.dedent(
    """
    import json, sys, time
    from swiftzarr_batch.testing.swift_server import LocalSwift
    server = LocalSwift().start()
    print(json.dumps({"pids": list(server.pids.values()), "dir": str(server.data_dir)}))
    sys.stdout.flush()
    time.sleep(600)
    """
)


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # reaped by init soon
    except psutil.NoSuchProcess:
        return True


def _reapers() -> set[int]:
    found = set()
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any(arg.endswith("testing/reaper.py") for arg in cmdline):
            found.add(proc.pid)
    return found


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["TERM", "KILL"])
def test_local_swift_dies_with_its_owner(sig):
    reapers_before = _reapers()
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    try:
        assert owner.stdout is not None
        started = json.loads(owner.stdout.readline())
    except BaseException:
        owner.kill()
        raise
    pids, data_dir = started["pids"], Path(started["dir"])
    assert len(pids) >= 4 and data_dir.is_dir()
    assert not any(_gone(p) for p in pids)
    ours = _reapers() - reapers_before
    assert len(ours) == 1
    owner.send_signal(sig)
    owner.wait(timeout=30)
    _wait_for(lambda: all(_gone(p) for p in pids), 20, f"servers {pids} stopped")
    _wait_for(lambda: not data_dir.exists(), 10, f"{data_dir} removed")
    _wait_for(lambda: all(_gone(p) for p in ours), 10, "the reaper exited")
