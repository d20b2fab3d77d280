"""The physical limit: a minimal keep-alive HTTP client, plain PUT/GET/DELETE, no checks.

No MD5, no retries, no zarr, no dask: ``concurrency`` workers on one pooled connector pull
object names from a shared iterator. What this reaches is what the server can do here.

Two clients: ``raw`` is aiohttp (an independent, widely used client); ``raw-lean`` is the
project's own ``http1`` pool with nothing on top (it costs less CPU per request than aiohttp,
so on this CPU-bound box it leaves the server more). The W1/W2 targets are computed against the
faster of the two in each case.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp

from benchmarks.contenders.base import Contender


class RawHTTP(Contender):
    name = "raw"

    def setup(self) -> dict[str, Any]:
        from swiftclient.client import get_auth

        self.url, self.token = get_auth(self.server.auth_url, self.server.user, self.server.key)
        self.loop = asyncio.new_event_loop()
        self.session = self.loop.run_until_complete(self._session())
        return {}

    async def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            # the limit only caps: ``concurrency`` workers (W12 asks for up to 64) set how many
            # requests are in flight
            connector=aiohttp.TCPConnector(
                limit=max(64, self.server.concurrency), keepalive_timeout=30
            ),
            headers={"X-Auth-Token": self.token},
            auto_decompress=False,
        )

    def _obj(self, container: str, name: str) -> str:
        return f"{self.url}/{quote(container)}/{quote(name)}"

    def _run(
        self,
        items: Iterable[Any],
        fn: Callable[[Any], Awaitable[None]],
        concurrency: int | None = None,
    ) -> None:
        async def main() -> None:
            it = iter(items)

            async def worker() -> None:
                for item in it:
                    await fn(item)

            workers = concurrency or self.server.concurrency
            await asyncio.gather(*(worker() for _ in range(workers)))

        self.loop.run_until_complete(main())

    async def _request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        async with self.session.request(method, url, data=body, headers=headers) as r:
            return r.status, await r.read()

    async def _put(self, url: str, body: bytes) -> None:
        status, _ = await self._request("PUT", url, body)
        if status != 201:
            raise RuntimeError(f"PUT answered {status}")

    async def _get(self, url: str) -> bytes:
        status, data = await self._request("GET", url)
        if status != 200:
            raise RuntimeError(f"GET answered {status}")
        return data

    async def _list(self, container: str, prefix: str) -> list[str]:
        names: list[str] = []
        marker = ""
        while True:
            query = urlencode({"format": "json", "prefix": prefix, "marker": marker})
            _, body = await self._request("GET", f"{self.url}/{quote(container)}?{query}")
            page = json.loads(body or b"[]")
            if not page:
                return names
            names.extend(e["name"] for e in page)
            marker = page[-1]["name"]

    # -- workloads ---------------------------------------------------------------------------
    def w1_write(
        self, case: dict[str, Any], container: str, path: str, concurrency: int | None = None
    ) -> dict[str, Any]:
        n = case["grid"][0] * case["grid"][1]
        body = bytes(case["chunk"][0] * case["chunk"][1] * 4)
        self._run(
            (self._obj(container, f"{path}/a/c/{i}") for i in range(n)),
            lambda url: self._put(url, body),
            concurrency,
        )
        return {"objects": n, "bytes": n * len(body)}

    def w2_read(
        self,
        case: dict[str, Any],
        container: str,
        path: str,
        concurrency: int | None = None,
        reuse: bool = True,
    ) -> dict[str, Any]:
        """GET every chunk object; ``concurrency``: requests in flight (default the run's);
        ``reuse=False`` (W12, raw-lean only): a new connection for every request."""
        n = case["grid"][0] * case["grid"][1]
        want = case["chunk"][0] * case["chunk"][1] * 4
        bad = 0
        self.reuse = reuse

        async def get(url: str) -> None:
            nonlocal bad
            bad += len(await self._get(url)) != want

        try:
            self._run((self._obj(container, f"{path}/a/c/{i}") for i in range(n)), get, concurrency)
        finally:
            self.reuse = True
        return {
            "objects": n,
            "bytes": n * want,
            "check": "ok" if not bad else f"FAIL: {bad} bodies of the wrong size",
        }

    # -- W9: a whole file, and ranges of it --------------------------------------------------
    def w9_read(self, container: str, name: str, size: int, rep: int) -> dict[str, Any]:
        from benchmarks.plan_w9 import result

        body = self.loop.run_until_complete(self._get(self._obj(container, name)))
        return result(len(body), size)

    def w9_ranges(
        self, container: str, name: str, size: int, offsets: list[int], rep: int
    ) -> dict[str, Any]:
        from benchmarks.plan_w9 import result

        async def ranges() -> int:
            done = 0
            for offset in offsets:
                headers = {"Range": f"bytes={offset}-{offset + 2**20 - 1}"}
                status, body = await self._request(
                    "GET", self._obj(container, name), headers=headers
                )
                if status != 206:
                    raise RuntimeError(f"ranged GET answered {status}")
                done += len(body)
            return done

        return result(self.loop.run_until_complete(ranges()), len(offsets) * 2**20, len(offsets))

    def w9_write(self, container: str, name: str, size: int, rep: int) -> dict[str, Any]:
        from benchmarks.plan_w9 import payload, result

        self.loop.run_until_complete(self._put(self._obj(container, name), payload(size)))
        return result(size, size)

    def w4_swift2swift(
        self, src_container: str, src_prefix: str, dst_container: str, dst_prefix: str, expect: int
    ) -> dict[str, Any]:
        """Download + upload through the client: list, then GET each and PUT it again."""
        names = self.loop.run_until_complete(self._list(src_container, src_prefix))
        moved = 0

        async def copy(name: str) -> None:
            nonlocal moved
            body = await self._get(self._obj(src_container, name))
            await self._put(self._obj(dst_container, dst_prefix + name[len(src_prefix) :]), body)
            moved += len(body)

        self._run(names, copy)
        return {
            "objects": len(names),
            "bytes": moved,
            "check": "ok" if len(names) == expect else f"FAIL: copied {len(names)} of {expect}",
        }

    def w4_server_copy(
        self, src_container: str, src_prefix: str, dst_container: str, dst_prefix: str, expect: int
    ) -> dict[str, Any]:
        """The server-side copy ceiling: list, then one PUT with X-Copy-From per object."""
        names = self.loop.run_until_complete(self._list(src_container, src_prefix))

        async def copy(name: str) -> None:
            dst = self._obj(dst_container, dst_prefix + name[len(src_prefix) :])
            headers = {"X-Copy-From": f"/{quote(src_container)}/{quote(name)}"}
            status, _ = await self._request("PUT", dst, b"", headers)
            if status != 201:
                raise RuntimeError(f"COPY answered {status}")

        self._run(names, copy)
        return {"objects": len(names), "bytes": 0}

    def w5_delete(self, container: str, prefix: str, expect: int) -> dict[str, Any]:
        """One DELETE per object (after listing them), at the same concurrency."""
        names = self.loop.run_until_complete(self._list(container, prefix))

        async def delete(name: str) -> None:
            status, _ = await self._request("DELETE", self._obj(container, name))
            if status not in (204, 404):
                raise RuntimeError(f"DELETE answered {status}")

        self._run(names, delete)
        return {
            "objects": len(names),
            "bytes": 0,
            "check": "ok" if len(names) == expect else f"FAIL: deleted {len(names)} of {expect}",
        }


class RawLean(RawHTTP):
    """The same plain requests through the project's ``http1`` pool (no MD5, retries, zarr)."""

    name = "raw-lean"

    async def _session(self) -> Any:
        from swiftzarr_batch.swift.http1 import Endpoint, Pool

        self.endpoint = Endpoint(self.url)
        limit = max(64, self.server.concurrency)  # caps only, as for raw
        # keepalive < 0: no connection is ever reused (W12's "what reuse is worth" row)
        self.fresh = Pool(
            self.endpoint, limit=limit, connect_timeout=10, read_timeout=600, keepalive=-1.0
        )
        return Pool(self.endpoint, limit=limit, connect_timeout=10, read_timeout=600)

    async def _request(
        self,
        method: str,
        url: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        target = url[len(self.url) - len(self.endpoint.base_path) :]  # path + query
        pool = self.session if getattr(self, "reuse", True) else self.fresh
        r = await pool.request(
            method, target, {"X-Auth-Token": self.token, **(headers or {})}, body
        )
        return r.status, r.body
