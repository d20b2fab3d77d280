"""The one retry policy: which failures are retried, how long we wait, when we give up.

Request-level retries live here (task-level retries are dask's, see ``jobs``). Waits are
jittered exponential backoff so that hundreds of dask threads hitting a busy proxy spread out
instead of retrying in lock-step; a server's ``Retry-After`` is honoured when given. The policy is
a small frozen dataclass so it pickles to workers with the store.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import tenacity

from swiftzarr_batch.swift.status import retry_after_seconds

T = TypeVar("T")


class RetryableFailure(Exception):
    """Internal: one attempt failed in a way worth retrying (never escapes the data path)."""

    def __init__(self, reason: str, *, status: int | None = None, retry_after: str | None = None):
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.retry_after = retry_after_seconds(retry_after)
        self.attempts = 1


@dataclass(frozen=True)
class RetryPolicy:
    """How persistently one request is retried.

    attempts: total tries per request (1 = no retries).
    base_delay/max_delay: the exponential backoff's first step and cap, in seconds; each wait
    is drawn uniformly from [0, min(max_delay, base_delay * 2**n)] ("full jitter").
    budget: give up once this many seconds were spent on one request, whatever ``attempts`` says.
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
) -> T:
    """Run ``await attempt()`` under ``policy``; return its result or raise its last failure.

    The first try runs outside tenacity, so the common case (success) costs nothing extra on a
    path that handles thousands of requests per second; after a RetryableFailure the remaining
    tries are driven by tenacity with this policy. Any other exception propagates at once.
    ``on_retry(failure)`` runs before each retry (counters, logging). The final
    RetryableFailure is re-raised with ``attempts`` set to the number of tries.
    """
    try:
        return await attempt()
    except RetryableFailure as failure:
        first = failure
    first.attempts = 1
    if policy.attempts <= 1:
        raise first
    tries = 1

    async def retry_once() -> T:
        nonlocal tries
        tries += 1
        try:
            return await attempt()
        except RetryableFailure as failure:
            failure.attempts = tries
            raise

    def before_sleep(state: tenacity.RetryCallState) -> None:
        failure = state.outcome.exception() if state.outcome is not None else None
        if on_retry is not None and isinstance(failure, RetryableFailure):
            on_retry(failure)

    if on_retry is not None:
        on_retry(first)
    await asyncio.sleep(policy.wait_seconds(1, first))
    retrying = tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(policy.attempts - 1)
        | tenacity.stop_after_delay(policy.budget),
        wait=lambda state: policy.wait_seconds(
            state.attempt_number + 1, state.outcome.exception() if state.outcome else None
        ),
        retry=tenacity.retry_if_exception_type(RetryableFailure),
        before_sleep=before_sleep,
        reraise=True,
    )
    return await retrying(retry_once)
