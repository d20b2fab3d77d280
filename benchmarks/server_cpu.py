"""Where the *server's* CPU goes, per object, for each way of writing, copying and deleting.

``python -m benchmarks.server_cpu [--n 1000] [--rounds 3]`` starts a fresh local Swift (as
``make bench`` does), then for each operation below moves ``n`` 64 KiB objects at 16 requests in
flight and reads, from ``/proc``, the CPU each Swift process (proxy, object, container, account,
memcached) and this client spent. It prints CPU milliseconds per object per process, the median
over ``rounds`` interleaved rounds, and writes ``benchmarks/results/server-cpu.json``.

Why: client and server share 2 cores here, so a workload's best possible speed is bounded by the
server CPU it needs per object. W4 asks a server-side copy to be 5x a download+upload and W5 a
bulk delete to be 10x one DELETE per object; this table shows what those ratios can be on this
server whatever the client does (the ratio of the server CPU per object of the two paths).

Operations (all on 64 KiB objects, the client is the project's own lean HTTP/1.1 pool, no MD5):
``PUT``, ``GET``, ``GET+PUT`` (download and upload to another container), ``COPY`` (one PUT with
``X-Copy-From``), ``DELETE`` (one per object), ``bulk DELETE`` (bulk middleware, requests of
1 000 names, 10 at once), ``extract-archive`` (objects created from one tar per 1 000).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import resource
import statistics
import tarfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import quote

from swiftzarr_batch.swift.http1 import Endpoint, Pool

RESULTS = Path(__file__).resolve().parent / "results"
CONCURRENCY = 16
BODY = bytes(range(256)) * 256  # 64 KiB
_TICK = os.sysconf("SC_CLK_TCK")
SERVERS = ("proxy", "object", "container", "account", "memcached")


def process_cpu(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) of each server's process group, and of this process."""
    groups = {pid: name for name, pid in pids.items()}
    out = dict.fromkeys(pids, 0.0)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pgrp = int(fields[2])  # field 5 of stat; after the ")" it is the 3rd
        if pgrp in groups:
            out[groups[pgrp]] += (int(fields[11]) + int(fields[12])) / _TICK
    ru = resource.getrusage(resource.RUSAGE_SELF)
    out["client"] = ru.ru_utime + ru.ru_stime
    return out


class Ops:
    """The operations, each over the names ``prefix/0 .. prefix/n-1``."""

    def __init__(self, pool: Pool, base: str, token: str, n: int) -> None:
        self.pool, self.base, self.n = pool, base, n
        self.auth = {"X-Auth-Token": token}

    def _obj(self, container: str, name: str) -> str:
        return f"{self.base}/{container}/{quote(name)}"

    async def _each(self, fn: Callable[[int], Awaitable[None]]) -> None:
        it = iter(range(self.n))

        async def worker() -> None:
            for i in it:
                await fn(i)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

    async def _ok(
        self,
        method: str,
        target: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        want: tuple[int, ...] = (201,),
    ) -> bytes:
        r = await self.pool.request(method, target, {**self.auth, **(headers or {})}, body)
        if r.status not in want:
            raise RuntimeError(f"{method} {target} answered {r.status}")
        return bytes(r.body)

    async def put(self, c: str, p: str) -> None:
        await self._each(lambda i: self._ok("PUT", self._obj(c, f"{p}/{i}"), BODY))

    async def get(self, c: str, p: str) -> None:
        await self._each(lambda i: self._ok("GET", self._obj(c, f"{p}/{i}"), want=(200,)))

    async def get_put(self, c: str, p: str, dc: str, dp: str) -> None:
        async def one(i: int) -> None:
            body = await self._ok("GET", self._obj(c, f"{p}/{i}"), want=(200,))
            await self._ok("PUT", self._obj(dc, f"{dp}/{i}"), body)

        await self._each(one)

    async def copy(self, c: str, p: str, dc: str, dp: str) -> None:
        await self._each(
            lambda i: self._ok(
                "PUT", self._obj(dc, f"{dp}/{i}"), headers={"X-Copy-From": f"/{c}/{p}/{i}"}
            )
        )

    async def delete(self, c: str, p: str) -> None:
        await self._each(lambda i: self._ok("DELETE", self._obj(c, f"{p}/{i}"), want=(204,)))

    async def bulk_delete(self, c: str, p: str) -> None:
        names = [f"/{c}/{p}/{i}" for i in range(self.n)]
        batches = [names[i : i + 1000] for i in range(0, len(names), 1000)]
        gate = asyncio.Semaphore(10)

        async def one(batch: list[str]) -> None:
            async with gate:
                out = await self._ok(
                    "POST",
                    f"{self.base}?bulk-delete=1",
                    "\n".join(batch).encode(),
                    {"Content-Type": "text/plain", "Accept": "application/json"},
                    want=(200,),
                )
                if json.loads(out).get("Number Deleted") != len(batch):
                    raise RuntimeError(f"bulk delete: {out[:200]!r}")

        await asyncio.gather(*(one(b) for b in batches))

    async def extract(self, c: str, p: str) -> None:
        async def one(start: int) -> None:
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
                for i in range(start, min(start + 1000, self.n)):
                    info = tarfile.TarInfo(f"{p}/{i}")
                    info.size = len(BODY)
                    tf.addfile(info, io.BytesIO(BODY))
            out = await self._ok(
                "PUT",
                f"{self.base}/{c}?extract-archive=tar",
                buf.getvalue(),
                {"Accept": "application/json"},
                want=(200,),
            )
            if json.loads(out).get("Number Files Created") != min(1000, self.n - start):
                raise RuntimeError(f"extract-archive: {out[:200]!r}")

        gate = asyncio.Semaphore(6)

        async def gated(start: int) -> None:
            async with gate:
                await one(start)

        await asyncio.gather(*(gated(s) for s in range(0, self.n, 1000)))


async def one_round(server, token: str, storage_url: str, n: int, rnd: int) -> dict:
    pool = Pool(Endpoint(storage_url), limit=CONCURRENCY, connect_timeout=10, read_timeout=600)
    ops = Ops(pool, Endpoint(storage_url).base_path, token, n)
    for c in ("cpu-a", "cpu-b", "cpu-c"):
        await ops._ok("PUT", f"{ops.base}/{c}", want=(201, 202))
    a, b = f"r{rnd}a", f"r{rnd}b"
    steps = [  # each leaves what the next one needs
        ("PUT", ops.put("cpu-a", a)),
        ("GET", ops.get("cpu-a", a)),
        ("GET+PUT", ops.get_put("cpu-a", a, "cpu-b", a)),
        ("COPY", ops.copy("cpu-a", a, "cpu-c", a)),
        ("DELETE", ops.delete("cpu-b", a)),
        ("bulk DELETE", ops.bulk_delete("cpu-c", a)),
        ("extract-archive", ops.extract("cpu-b", b)),
    ]
    out = {}
    for name, coro in steps:
        before, t0 = process_cpu(server.pids), time.perf_counter()
        await coro
        wall = time.perf_counter() - t0
        after = process_cpu(server.pids)
        out[name] = {"wall": wall, **{k: after[k] - before[k] for k in after}}
    await ops.bulk_delete("cpu-a", a)
    ops_b = Ops(pool, ops.base, token, n)
    await ops_b.bulk_delete("cpu-b", b)
    pool.close()
    return out


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.server_cpu")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    from swiftclient.client import get_auth

    from swiftzarr_batch.testing.swift_server import LocalSwift

    rounds = []
    with LocalSwift(s3api=True) as server:
        storage_url, token = get_auth(server.auth_url, server.user, server.key)
        for rnd in range(args.rounds):
            rounds.append(asyncio.run(one_round(server, token, storage_url, args.n, rnd)))
            print(f"round {rnd} done", flush=True)
    names = list(rounds[0])
    cols = ["client", *[s for s in SERVERS if s in rounds[0][names[0]]]]
    table = {}
    for name in names:
        med = {k: statistics.median(r[name][k] for r in rounds) for k in ["wall", *cols]}
        row = {k: 1000 * med[k] / args.n for k in cols}
        row["server"] = sum(v for k, v in row.items() if k != "client")
        row["obj/s"] = args.n / med["wall"]
        table[name] = row
    head = f"{'operation':<16}{'obj/s':>8}" + "".join(f"{c:>11}" for c in cols) + f"{'server':>9}"
    print(f"\nCPU ms per 64 KiB object (medians of {args.rounds} rounds, {args.n} objects)")
    print(head)
    for name, row in table.items():
        print(
            f"{name:<16}{row['obj/s']:>8.0f}"
            + "".join(f"{row[c]:>11.3f}" for c in cols)
            + f"{row['server']:>9.3f}"
        )
    bounds = {
        "W4 server-side copy vs download+upload (server CPU ratio)": table["GET+PUT"]["server"]
        / table["COPY"]["server"],
        "W5 bulk delete vs one DELETE per object (server CPU ratio)": table["DELETE"]["server"]
        / table["bulk DELETE"]["server"],
    }
    print("\nBest case on this server (server CPU of the slow path / of the fast path):")
    for k, v in bounds.items():
        print(f"  {k}: {v:.2f}x")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "server-cpu.json"
    out.write_text(
        json.dumps(
            {
                "n": args.n,
                "rounds": args.rounds,
                "ms_per_object": table,
                "raw_rounds": rounds,
                "bounds": bounds,
            },
            indent=1,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
