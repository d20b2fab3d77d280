"""Client CPU per 64 KiB GET of the store's data path, alone: the number behind W6's GET.

``python -m benchmarks.get_cpu [--n 1000] [--rounds 5] [--profile] [--code DIR]`` starts a
fresh local Swift, PUTs ``n`` 64 KiB objects, then GETs them all ``rounds`` times at 16 in
flight through three layers, interleaved: the bare ``http1`` pool, ``SwiftContainer.get``
(retries, counters, MD5 check) and ``SwiftStore.get`` (what zarr calls in W2/W6). It prints
the median CPU per GET in µs of the event loop's thread (``time.thread_time``: the server's
processes and the session's sweeper thread do not count) and of the whole process.

``--size BYTES`` (e.g. ``--size 8388608``) measures GETs of that size instead of 64 KiB, with
``--no-md5`` the store's layers without the MD5 check (``verify_reads=False``).

``--code DIR`` measures the package of another checkout (e.g. a ``git worktree`` of an older
commit) the same way: DIR goes first on ``sys.path``, and the script finds either layout
(``swiftzarr_batch.swift.http1`` now, ``swiftzarr_batch.http1`` before the rooms).
``--profile`` runs one more round of each layer under cProfile: the function calls per GET
(exact, so comparable on a busy machine, unlike times) and the top functions by own time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib
import pstats
import resource
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

C = 16
BODY = bytes(range(256)) * 256  # 64 KiB (``--size`` changes it)


def _first(*names: str) -> Any:
    for name in names:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError(f"none of {names}")


def _process_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def _gather(n: int, fn: Callable[[int], Awaitable[Any]]) -> None:
    it = iter(range(n))

    async def worker() -> None:
        for i in it:
            await fn(i)

    await asyncio.gather(*(worker() for _ in range(C)))


async def _measure(n: int, fn: Callable[[int], Awaitable[Any]]) -> tuple[float, float]:
    """µs of loop-thread CPU and of process CPU per call, over ``n`` calls."""
    t0, p0 = time.thread_time(), _process_cpu()
    await _gather(n, fn)
    return 1e6 * (time.thread_time() - t0) / n, 1e6 * (_process_cpu() - p0) / n


async def _run(
    store: Any, http1: Any, n: int, rounds: int, profile: bool, top: int, dump: str | None
) -> None:
    from zarr.core.buffer import default_buffer_prototype

    getter = getattr(store, "swift_container", None) or store._container
    container = await getter()
    mv = memoryview(BODY)
    await _gather(n, lambda i: container.put(f"g/{i}", mv))
    session = container.session
    pool = session._pool()
    ep = pool.endpoint
    auth = {"X-Auth-Token": session.token.token}
    proto = default_buffer_prototype()

    async def bare(i: int) -> None:
        r = await pool.request("GET", f"{ep.base_path}/getcpu/g/{i}", auth)
        assert len(r.body) == len(BODY)

    async def cont(i: int) -> None:
        r = await container.get(f"g/{i}")
        assert len(r.body) == len(BODY)

    async def zstore(i: int) -> None:
        b = await store.get(f"g/{i}", proto)
        assert len(b) == len(BODY)

    layers = (
        ("http1 Pool.request", bare),
        ("SwiftContainer.get", cont),
        ("SwiftStore.get", zstore),
    )
    got: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in layers}
    for _ in range(rounds):
        for name, fn in layers:
            got[name].append(await _measure(n, fn))
    print(f"{'layer':<22}{'loop µs/GET':>12}{'process µs/GET':>16}   (median of {rounds}, n={n})")
    for name, _ in layers:
        loop_us = statistics.median(v[0] for v in got[name])
        proc_us = statistics.median(v[1] for v in got[name])
        spread = " ".join(f"{v[0]:.0f}" for v in got[name])
        print(f"{name:<22}{loop_us:>12.1f}{proc_us:>16.1f}   loop per round: {spread}")
    if profile:  # function calls per GET are exact, whatever else runs on the machine
        for name, fn in layers:
            prof = cProfile.Profile()
            prof.enable()
            await _gather(n, fn)
            prof.disable()
            stats = pstats.Stats(prof)
            calls = sum(v[1] for v in stats.stats.values())  # type: ignore[attr-defined]
            print(f"\n== {name}: {calls / n:.1f} Python/C function calls per GET ==")
            stats.stream = sys.stdout  # type: ignore[attr-defined]
            stats.sort_stats("tottime").print_stats(top)
            if dump:
                stats.dump_stats(f"{dump}-{name.split()[0]}.pstats")


def main() -> None:
    global BODY
    p = argparse.ArgumentParser(prog="python -m benchmarks.get_cpu")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--top", type=int, default=30, help="functions shown per profile")
    p.add_argument("--dump", help="with --profile: write PREFIX-<layer>.pstats files")
    p.add_argument("--size", type=int, default=len(BODY), help="object size in bytes")
    p.add_argument("--no-md5", action="store_true", help="verify_reads=False in the store")
    p.add_argument("--code", help="checkout whose swiftzarr_batch to measure (default: this one)")
    args = p.parse_args()
    BODY = (bytes(range(256)) * (args.size // 256 + 1))[: args.size]
    if args.code:
        sys.path.insert(0, args.code)
    import swiftzarr_batch

    server_mod = _first("swiftzarr_batch.testing.swift_server", "swiftzarr_batch.server")
    http1 = _first("swiftzarr_batch.swift.http1", "swiftzarr_batch.http1")
    print(f"package: {swiftzarr_batch.__file__}")
    with server_mod.LocalSwift() as server:
        store = swiftzarr_batch.SwiftStore(
            "getcpu",
            authurl=server.auth_url,
            user=server.user,
            key=server.key,
            max_connections=C,
            verify_reads=not args.no_md5,
        )
        asyncio.run(_run(store, http1, args.n, args.rounds, args.profile, args.top, args.dump))


if __name__ == "__main__":
    main()
