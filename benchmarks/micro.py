"""Client CPU per request of the bare data path, without zarr or dask.

``python -m benchmarks.micro [--n 1000]``: on a fresh local Swift, PUT and GET ``n`` 64 KiB
objects at 16 in flight with (a) plain aiohttp, (b) plain aiohttp + the MD5 the project sends
and checks, (c) the project's bare ``http1`` pool, (d) ``SwiftContainer.put/get`` (the store's
path: ``http1``, retries, counters, MD5). Shows how much of a W6 number is the HTTP client, how
much MD5 and how much this project's own code.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import resource
import time
from typing import Any

import aiohttp

C = 16
BODY = bytes(range(256)) * 256  # 64 KiB


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _pool(n: int, fn: Any) -> None:
    it = iter(range(n))

    async def worker() -> None:
        for i in it:
            await fn(i)

    await asyncio.gather(*(worker() for _ in range(C)))


async def _aiohttp(url: str, token: str, n: int, tag: str, md5: bool) -> dict[str, float]:
    out = {}
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=C), headers={"X-Auth-Token": token}
    ) as s:

        async def put(i: int) -> None:
            h = {"ETag": hashlib.md5(BODY).hexdigest()} if md5 else None
            async with s.put(f"{url}/micro/{tag}/{i}", data=BODY, headers=h) as r:
                await r.read()

        async def get(i: int) -> None:
            async with s.get(f"{url}/micro/{tag}/{i}") as r:
                data = await r.read()
                if md5 and hashlib.md5(data).hexdigest() != r.headers["Etag"]:
                    raise RuntimeError("md5")

        for name, fn in (("PUT", put), ("GET", get)):
            c0, t0 = _cpu(), time.perf_counter()
            await _pool(n, fn)
            out[name] = (1000 * (_cpu() - c0) / n, n / (time.perf_counter() - t0))
    return out


async def _http1(url: str, token: str, n: int, tag: str) -> dict[str, float]:
    from swiftzarr_batch.swift.http1 import Endpoint, Pool

    ep = Endpoint(url)
    pool = Pool(ep, limit=C, connect_timeout=10, read_timeout=60)
    auth = {"X-Auth-Token": token}
    out = {}
    for name, method, body in (("PUT", "PUT", BODY), ("GET", "GET", None)):
        c0, t0 = _cpu(), time.perf_counter()
        await _pool(
            n,
            lambda i, m=method, b=body: pool.request(m, f"{ep.base_path}/micro/{tag}/{i}", auth, b),
        )
        out[name] = (1000 * (_cpu() - c0) / n, n / (time.perf_counter() - t0))
    pool.close()
    return out


async def _ours(store: Any, n: int, tag: str) -> dict[str, float]:
    c = await store.swift_container()
    mv = memoryview(BODY)
    out = {}
    for name, fn in (
        ("PUT", lambda i: c.put(f"{tag}/{i}", mv)),
        ("GET", lambda i: c.get(f"{tag}/{i}")),
    ):
        c0, t0 = _cpu(), time.perf_counter()
        await _pool(n, fn)
        out[name] = (1000 * (_cpu() - c0) / n, n / (time.perf_counter() - t0))
    return out


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.micro")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=2)
    args = p.parse_args()
    from swiftclient.client import Connection

    from swiftzarr_batch import SwiftStore
    from swiftzarr_batch.testing.swift_server import LocalSwift

    with LocalSwift() as server:
        conn = Connection(authurl=server.auth_url, user=server.user, key=server.key)
        conn.put_container("micro")
        url, token = conn.get_auth()
        store = SwiftStore(
            "micro", authurl=server.auth_url, user=server.user, key=server.key, max_connections=C
        )
        store.session
        print(
            f"{'round':<6}{'client':<22}{'PUT ms cpu/req':>15}{'PUT/s':>8}"
            f"{'GET ms cpu/req':>16}{'GET/s':>8}"
        )
        for rnd in range(args.rounds):  # interleaved
            for label, coro in (
                ("aiohttp", _aiohttp(url, token, args.n, f"a{rnd}", False)),
                ("aiohttp + MD5", _aiohttp(url, token, args.n, f"m{rnd}", True)),
                ("http1 (bare)", _http1(url, token, args.n, f"h{rnd}")),
                ("SwiftContainer", _ours(store, args.n, f"o{rnd}")),
            ):
                r = asyncio.run(coro)
                print(
                    f"{rnd:<6}{label:<22}{r['PUT'][0]:>15.3f}{r['PUT'][1]:>8.0f}"
                    f"{r['GET'][0]:>16.3f}{r['GET'][1]:>8.0f}",
                    flush=True,
                )


if __name__ == "__main__":
    main()
