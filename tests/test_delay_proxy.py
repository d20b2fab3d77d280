"""``DelayProxy`` (the fault proxy's delay mode, W12's distance): every round trip through it
takes at least the delay, a new connection one more, and bytes pass unchanged both ways."""

from __future__ import annotations

import asyncio
import time

from swiftclient.client import Connection

from swiftzarr_batch.swift.http1 import Endpoint, Pool
from swiftzarr_batch.testing.delayproxy import DelayProxy

DELAY = 0.05


def test_each_round_trip_takes_the_delay_and_bytes_pass_unchanged(swift_server):
    body = bytes(range(256)) * 4096 * 3  # 3 MiB: several reads each way
    with DelayProxy(swift_server.proxy_url, delay=DELAY) as relay:
        auth_url = relay.url + swift_server.auth_url[len(swift_server.proxy_url) :]
        conn = Connection(authurl=auth_url, user=swift_server.user, key=swift_server.key)
        url, token = conn.get_auth()
        assert url.startswith(relay.url)  # TempAuth names the server the client reached
        conn.put_container("delay-proxy")
        conn.put_object("delay-proxy", "o", body)
        # read back by an independent client straight from the server
        direct = Connection(
            authurl=swift_server.auth_url, user=swift_server.user, key=swift_server.key
        )
        assert direct.get_object("delay-proxy", "o")[1] == body

        async def timed_gets() -> list[float]:
            ep = Endpoint(url)
            pool = Pool(ep, limit=1, connect_timeout=5, read_timeout=30)
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                r = await pool.request(
                    "GET", f"{ep.base_path}/delay-proxy/o", {"X-Auth-Token": token}
                )
                times.append(time.perf_counter() - t0)
                assert r.status == 200 and r.body == body
            pool.close()
            return times

        before = relay.connections
        first, *reused = asyncio.run(timed_gets())
        assert relay.connections == before + 1  # kept alive through the relay
        assert first >= 2 * DELAY  # connect + request
        assert all(t >= DELAY for t in reused)
        direct.delete_object("delay-proxy", "o")
