"""What every credential provider shares: the retry policy and the one HTTP request function of
auth endpoints, and the base of providers that wrap another one.

Why one request function: v1 auth and Keystone must count their requests, tell a TLS failure
from an unreachable host, retry what the status map says is worth retrying and never put a
secret in an error. Written once here, both get it the same way.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import requests

from swiftzarr_batch.errors import AuthenticationError
from swiftzarr_batch.swift.retry import RetryableFailure, RetryPolicy
from swiftzarr_batch.swift.status import Outcome, classify
from swiftzarr_batch.swift.tokens import (
    CachingProvider,
    CredentialProvider,
    Token,
    count_auth_call,
)

__all__ = ["AUTH_RETRY", "WrappingProvider", "auth_request", "provider_cache_key"]

AUTH_RETRY = RetryPolicy(attempts=4, base_delay=0.2, max_delay=2.0, budget=30.0)
"""Auth requests: a few quick tries (an auth server restarting), then a clear error."""


def auth_request(
    method: str, url: str, *, what: str, verify_tls: bool, timeout: float, **kwargs: Any
) -> requests.Response:
    """Send one auth request; return a 2xx (or other final) response, raise for the rest.

    Connection and TLS trouble raise ``AuthenticationError`` naming ``what`` (the endpoint, as
    the user configured it); a status worth retrying raises ``RetryableFailure`` for the
    caller's ``AUTH_RETRY`` loop. Headers and bodies (which hold secrets) never reach a message.
    """
    count_auth_call()
    try:
        resp = requests.request(method, url, timeout=timeout, verify=verify_tls, **kwargs)
    except requests.exceptions.SSLError as exc:
        raise AuthenticationError(
            f"TLS verification failed for {what} ({type(exc).__name__})"
        ) from None
    except requests.exceptions.RequestException as exc:
        raise AuthenticationError(f"could not reach {what}: {type(exc).__name__}") from None
    if classify(resp.status_code) is Outcome.RETRY:
        raise RetryableFailure(
            f"{what} answered {resp.status_code}",
            status=resp.status_code,
            retry_after=resp.headers.get("Retry-After"),
        )
    return resp


def provider_cache_key(provider: CredentialProvider) -> tuple[Hashable, ...]:
    """``provider``'s cache key, or one unique to the object when it has none."""
    if isinstance(provider, CachingProvider):
        return provider.cache_key()
    return (id(provider),)


class WrappingProvider:
    """A provider that finds (or adapts) another provider and authenticates through it.

    Subclasses say which provider (``inner()``) and how its key is tagged (``kind``); the cache
    key and ``authenticate`` are the same for all of them.
    """

    kind = "wrapped"

    def inner(self) -> CredentialProvider:
        raise NotImplementedError

    def cache_key(self) -> tuple[Hashable, ...]:
        return (self.kind, *provider_cache_key(self.inner()))

    def authenticate(self) -> Token:
        return self.inner().authenticate()
