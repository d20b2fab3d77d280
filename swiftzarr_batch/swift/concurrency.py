"""How many requests a process sends at once, and how fast, when the cluster pushes back.

Why: a production Swift limits writes per container (its ``ratelimit`` filter answers 498 beyond
a short sleep), proxies answer 429/503 when overloaded or failing over. Retrying alone storms
the limit: every worker's refused requests come back at once. So every request of the process
goes through an ``AdaptiveLimit`` (AIMD, as TCP does): a refusal halves the requests allowed in
flight, answers that are good raise it by about one per round trip, back up to the ceiling
where it no longer matters. The limits are shared by every store and session of the process
(one per server, one per container), across event loops and threads, so a dask worker's many
tasks back off together.

* 498 and 429 on a request to a container cut that container's limit (Swift limits writes per
  container); 503, and any refusal of an account-level request, cut the server's limit.
* A burst of refusals from requests already in flight is one signal: after a cut, refusals
  within ``COOL_DOWN`` seconds do not cut again.
* An optional rate cap (``max_requests_per_second``, cluster-wide) is divided by the number of
  processes that share it (``set_rate_divisor``, set on every dask worker by the job runner) and
  enforced per process by spacing request starts evenly.

Counting what was refused is the session's (``Counters.refused`` / ``unavailable``).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

__all__ = [
    "CEILING",
    "COOL_DOWN",
    "INITIAL",
    "RATE_ENV",
    "SLOW_MARGIN",
    "AdaptiveLimit",
    "RateCap",
    "limits_snapshot",
    "request_slot",
    "set_rate_divisor",
]

#: Requests in flight per process (and per container) before any refusal: above what a pool
#: allows, so the limit costs nothing until the cluster pushes back.
CEILING = 1024
#: Requests in flight a new limit starts with (it grows from there while answers are good).
INITIAL = 32
#: Seconds after a cut during which further refusals (from requests sent before it) do not cut.
COOL_DOWN = 0.5
#: Seconds over twice the fastest answer that mean "queued by the server": no growth then.
SLOW_MARGIN = 0.25
#: The environment variable ``swiftzarr --rate`` sets: a cluster-wide requests/s cap used when the
#: store gives none (worker processes started from the command line inherit it).
RATE_ENV = "SWIFTZARR_MAX_REQUESTS_PER_SECOND"
_REFUSED = frozenset({429, 498})
_UNAVAILABLE = 503


class _Waiter:
    __slots__ = ("future", "granted", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.granted = False


def _grant(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class AdaptiveLimit:
    """An AIMD limit of requests in flight, usable from any thread and event loop."""

    def __init__(
        self, name: str, *, ceiling: int = CEILING, floor: int = 1, initial: int = INITIAL
    ) -> None:
        self.name = name
        self.ceiling, self.floor = ceiling, floor
        self.limit = float(min(initial, ceiling))
        self.in_flight = 0
        self.cuts = 0
        self.fastest = float("inf")  # the shortest answer seen: the latency of an idle path
        self._last_cut = -COOL_DOWN
        self._lock = threading.Lock()
        self._waiters: deque[_Waiter] = deque()

    def __repr__(self) -> str:
        return f"<AdaptiveLimit {self.name} limit={self.limit:.1f} in_flight={self.in_flight}>"

    async def acquire(self) -> None:
        """Wait for a place under the current limit (first come, first served), from any
        thread's event loop: one limit is shared by every session of the process."""
        with self._lock:
            if not self._waiters and self.in_flight < int(self.limit):
                self.in_flight += 1
                return
            waiter = _Waiter(asyncio.get_running_loop())
            self._waiters.append(waiter)
        try:
            await waiter.future
        except asyncio.CancelledError:
            with self._lock:
                if waiter.granted:  # granted meanwhile: hand the slot on
                    self.in_flight -= 1
                    self._wake()
                else:
                    self._waiters.remove(waiter)
            raise

    def release(self, *, refused: bool = False, seconds: float | None = None) -> None:
        """One request ended after ``seconds``; ``refused``: the cluster pushed back.

        A refusal halves the limit (once per ``COOL_DOWN``). A good answer raises it: by one
        per answer before the first refusal (slow start: doubling per round trip), by about one
        per round trip after. But not while answers are slow: a rate limiter that queues (Swift's
        sleeps up to ``max_sleep_time_seconds`` before it refuses) shows up as latency first,
        so answers over ``2 x fastest + SLOW_MARGIN`` hold the limit where it is.
        """
        with self._lock:
            flight = self.in_flight
            self.in_flight -= 1
            now = time.monotonic()
            if refused:
                if now - self._last_cut >= COOL_DOWN:
                    self.limit = max(float(self.floor), min(self.limit, float(flight)) / 2)
                    self._last_cut = now
                    self.cuts += 1
            elif seconds is not None:
                self.fastest = min(self.fastest, seconds)
                queued = seconds > 2 * self.fastest + SLOW_MARGIN
                if not queued and self.limit < self.ceiling and flight >= int(self.limit):
                    step = 1.0 if not self.cuts else 1 / self.limit
                    self.limit = min(float(self.ceiling), self.limit + step)
            self._wake()

    def _wake(self) -> None:
        """Grant waiting requests while the limit allows (lock held)."""
        while self._waiters and self.in_flight < int(self.limit):
            waiter = self._waiters.popleft()
            waiter.granted = True
            self.in_flight += 1
            try:
                waiter.loop.call_soon_threadsafe(_grant, waiter.future)
            except RuntimeError:  # its loop closed: nobody waits any more
                waiter.granted = False
                self.in_flight -= 1


class RateCap:
    """At most ``rate`` request starts per second in this process, evenly spaced."""

    def __init__(self, rate: float) -> None:
        if not rate > 0:
            raise ValueError(f"a rate cap must be > 0 requests/s, got {rate!r}")
        self.rate = rate
        self._next = 0.0
        self._lock = threading.Lock()

    async def wait(self) -> None:
        """Sleep until this request's turn under the cap: requests are spaced ``1/rate``
        apart, so a burst never goes out faster than the site allows."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + 1 / self.rate
        if start > now:
            await asyncio.sleep(start - now)


_limits: dict[tuple[str, str], AdaptiveLimit] = {}
_caps: dict[tuple[str, float], RateCap] = {}
_registry_lock = threading.Lock()
_divisor = 1


def set_rate_divisor(processes: int) -> None:
    """How many processes share a cluster-wide rate cap (the job runner sets it per worker)."""
    global _divisor
    _divisor = max(1, int(processes))


def _limit(server: str, container: str) -> AdaptiveLimit:
    key = (server, container)
    found = _limits.get(key)
    if found is None:
        with _registry_lock:
            found = _limits.setdefault(
                key, AdaptiveLimit(f"{server}/{container}" if container else server)
            )
    return found


def _cap(server: str, cluster_rate: float | None) -> RateCap | None:
    if cluster_rate is None:
        env = os.environ.get(RATE_ENV)
        cluster_rate = float(env) if env else None
    if not cluster_rate:
        return None
    per_process = cluster_rate / _divisor
    key = (server, per_process)
    found = _caps.get(key)
    if found is None:
        with _registry_lock:
            found = _caps.setdefault(key, RateCap(per_process))
    return found


class Slot:
    """One request's place: ``done(status)`` says how it went (None: no answer)."""

    __slots__ = ("_limits", "_started", "_status")

    def __init__(self, limits: tuple[AdaptiveLimit, ...]) -> None:
        self._limits = limits
        self._status: int | None = None
        self._started = time.monotonic()

    def done(self, status: int | None) -> None:
        """Record the answer's status (None: no answer), which decides on release whether the
        limits grow, hold or are cut."""
        self._status = status

    def _release(self) -> None:
        status = self._status
        seconds = time.monotonic() - self._started if status is not None and status < 300 else None
        container_refused = status in _REFUSED and len(self._limits) > 1
        for index, limit in enumerate(self._limits):
            is_container = index == 0 and len(self._limits) > 1
            if is_container:
                refused = container_refused
            else:
                refused = status == _UNAVAILABLE or (status in _REFUSED and not container_refused)
            limit.release(refused=refused, seconds=seconds)


@asynccontextmanager
async def request_slot(
    server: str, container: str | None, cluster_rate: float | None = None
) -> AsyncIterator[Slot]:
    """Wait for room under the container's and the server's limits (and the rate cap)."""
    limits = (*([_limit(server, container)] if container else []), _limit(server, ""))
    acquired: list[AdaptiveLimit] = []
    try:
        for limit in limits:
            await limit.acquire()
            acquired.append(limit)
        cap = _cap(server, cluster_rate)
        if cap is not None:
            await cap.wait()
    except BaseException:
        for limit in acquired:
            limit.release()
        raise
    slot = Slot(limits)
    try:
        yield slot
    finally:
        slot._release()


def limits_snapshot() -> dict[str, tuple[float, int, int]]:
    """Each limit's (current limit, in flight, cuts so far): diagnostics, tests, benchmarks."""
    with _registry_lock:
        return {lim.name: (lim.limit, lim.in_flight, lim.cuts) for lim in _limits.values()}


def _after_fork_in_child() -> None:
    global _registry_lock
    _limits.clear()  # the parent's in-flight counts mean nothing here
    _caps.clear()
    _registry_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
