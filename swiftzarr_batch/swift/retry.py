"""The one retry policy: which failures are retried, how long we wait, when we give up.

Request-level retries live here (task-level retries are dask's, see ``jobs``). Waits are
jittered exponential backoff so that hundreds of dask threads hitting a busy proxy spread out
instead of retrying in lock-step; a server's ``Retry-After`` is honoured when given. The policy is
a small frozen dataclass so it pickles to workers with the store.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from swiftzarr_batch.swift.status import retry_after_seconds

T = TypeVar("T")
RATE_LIMITED = frozenset({429, 498})
_EARLY = time.get_clock_info("monotonic").resolution  # how early asyncio may run a timer


class RetryableFailure(Exception):
    """Internal: one attempt failed in a way worth retrying (never escapes the data path)."""

    def __init__(self, reason: str, *, status: int | None = None, retry_after: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after_seconds(retry_after)
        self.attempts = 1
        self.budget_spent = False  # the retry budget, not the attempts, ended the request


@dataclass(frozen=True)
class RetryPolicy:
    """How persistently one request is retried.

    attempts: total tries per request (1 = no retries).
    base_delay/max_delay: the exponential backoff's first step and cap, in seconds; each wait
    is drawn uniformly from [0, min(max_delay, base_delay * 2**n)] ("full jitter").
    budget: seconds one request may take in all, tries and waits together, whatever
    ``attempts`` says: a deadline, which cuts a try still in flight (``call_with_retries``).
    """

    attempts: int = 10
    base_delay: float = 0.1
    max_delay: float = 10.0
    budget: float = 300.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"RetryPolicy.attempts must be >= 1, got {self.attempts}")
        if self.base_delay < 0 or self.max_delay < 0 or self.budget <= 0:
            raise ValueError("RetryPolicy delays must be >= 0 and budget > 0")

    def wait_seconds(self, attempt_number: int, failure: BaseException | None) -> float:
        """Seconds to sleep after the given (1-based) failed attempt."""
        hinted = failure.retry_after if isinstance(failure, RetryableFailure) else None
        if hinted is not None:
            return hinted + random.uniform(0, self.base_delay)
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt_number - 1)))
        return random.uniform(0, ceiling)

    def retrying(self) -> tenacity.Retrying:
        """This policy for blocking calls (authentication)."""

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return self.wait_seconds(state.attempt_number, exc)

        return tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.attempts)
            | tenacity.stop_after_delay(self.budget),
            wait=wait,
            retry=tenacity.retry_if_exception_type(RetryableFailure),
            reraise=True,
        )


NO_RETRY = RetryPolicy(attempts=1)


async def call_with_retries(
    policy: RetryPolicy,
    attempt: Callable[[], Awaitable[T]],
    on_retry: Callable[[RetryableFailure], None] | None = None,
    *,
    deadline_to: Callable[[float], Awaitable[T]] | None = None,
) -> T:
    """Run ``await attempt()`` under ``policy``; return its result or raise its last failure.

    ``policy.budget`` is a deadline for the whole call, tries and waits together: a try still
    in flight when it passes is cut (its connection closed) and the call fails with a reason
    saying so; no wait is started that would end past it. So a server that trickles bytes
    fails within ``budget`` (plus at most one stall check), however many tries are left.

    The first try runs outside tenacity, so the common case (success) costs one timer, not a
    retry machinery, on a path that handles thousands of requests per second; after a
    RetryableFailure the remaining tries are driven by tenacity with this policy. Any other
    exception propagates at once. Tries refused by a rate limit (429/498) do not count against
    ``policy.attempts``, only against the budget: the cluster said "not yet", not "broken",
    and the adaptive limit (``concurrency``) slows the process meanwhile.
    ``on_retry(failure)`` runs before each retry (counters, logging). The final
    RetryableFailure is raised with ``attempts`` set to the number of tries and
    ``budget_spent`` set when the budget, not ``attempts``, ended the call. A failed try's
    traceback is dropped before the next one starts: it would keep that try's frames, and so
    its body buffers, alive through the retries.

    ``deadline_to(deadline)``, given instead of ``attempt``'s own use: a try that enforces the
    budget itself (it raises ``TimeoutError`` once ``loop.time()`` reaches ``deadline``, e.g.
    ``http1.Pool.request(deadline=...)``, whose watchdog checks it). Then no timer is set per
    try; the rest is the same.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + policy.budget
    tries = 0
    refused = 0  # tries answered 429/498: "not yet", bounded by the budget, not by attempts
    last: list[RetryableFailure] = []  # the latest failure only

    async def bounded() -> T:
        nonlocal tries, refused
        tries += 1
        timeout = None if deadline_to is not None else asyncio.timeout_at(deadline)
        try:
            if timeout is None:
                assert deadline_to is not None
                return await deadline_to(deadline)
            async with timeout:
                return await attempt()
        except RetryableFailure as exc:
            failure = exc
        except TimeoutError:
            ours = timeout.expired() if timeout is not None else loop.time() + _EARLY >= deadline
            if not ours:
                raise  # not ours: the attempt's own timeout
            before = f"; the try before: {last[0].reason}" if last else ""
            failure = RetryableFailure(
                f"retry budget of {policy.budget:g} s spent, the try in flight was cut{before}",
                status=None,
            )
            failure.budget_spent = True
        failure.attempts = tries
        if failure.status in RATE_LIMITED:
            refused += 1
        failure.__traceback__ = failure.__context__ = failure.__cause__ = None
        last[:] = [failure]
        raise failure

    def give_up(sleep: float) -> bool:
        failure = last[0]
        if failure.budget_spent or tries - refused >= policy.attempts:
            return True
        if loop.time() + sleep >= deadline:
            failure.budget_spent = True
            return True
        return False

    try:
        return await bounded()
    except RetryableFailure as failure:
        first = failure
    wait = policy.wait_seconds(1, first)
    if give_up(wait):
        raise first
    del first

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry is not None:
            on_retry(last[0])

    if on_retry is not None:
        on_retry(last[0])
    await asyncio.sleep(wait)
    retrying = tenacity.AsyncRetrying(
        stop=lambda state: give_up(state.upcoming_sleep),
        wait=lambda state: policy.wait_seconds(state.attempt_number + 1, last[0]),
        retry=tenacity.retry_if_exception_type(RetryableFailure),
        before_sleep=before_sleep,
        reraise=True,
    )
    return await retrying(bounded)
