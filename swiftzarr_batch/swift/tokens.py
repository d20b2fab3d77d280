"""What the data path needs of credentials: the token it carries, the protocol of whatever can
renew it, and the process-wide token cache.

They live in the Swift client, not in ``auth``, because every request carries a ``Token`` and a
session renews it on a 401 (``session``): the client must not depend on the room that builds
providers. ``auth`` builds on this module (v1, Keystone, the credential chain).

The cache makes "one auth per process": stores built with the same credentials (or unpickled on
a worker with a travelling provider) share one token, keyed by the provider's ``cache_key()``,
which holds a hash of the secret, never the secret. Nothing here logs or formats a token.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

__all__ = [
    "CachingProvider",
    "CredentialProvider",
    "Token",
    "auth_calls",
    "cached_authenticate",
    "count_auth_call",
    "travels",
]

#: A cached token this close to its expiry (seconds) is renewed before use.
RENEW_BEFORE_EXPIRY = 30.0


@dataclass(frozen=True)
class Token:
    """A storage URL with the token that opens it; ``expires_at`` is a UNIX time or None.

    ``query`` is a signed link's (temp URL's) signature parameters, added to every request
    instead of a token (``token`` is then ""): carried here so that a store opened from a link
    pickles it to dask workers like any token. Like ``token``, it is never shown in a repr.
    """

    storage_url: str
    token: str = field(repr=False)
    expires_at: float | None = None
    query: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def seconds_left(self, now: float | None = None) -> float | None:
        """Seconds until the token expires (negative once it has), or None when the auth server did
        not say; ``now`` is a UNIX time, the current one by default."""
        if self.expires_at is None:
            return None
        return self.expires_at - (time.time() if now is None else now)


@runtime_checkable
class CredentialProvider(Protocol):
    """Anything that can produce a fresh Token (picklable ones may travel to dask workers)."""

    def authenticate(self) -> Token:
        """A new token, from the auth server: a request each call (``cached_authenticate`` shares
        tokens)."""


@runtime_checkable
class CachingProvider(CredentialProvider, Protocol):
    """A provider whose tokens may be shared in a process: same ``cache_key()``, same token."""

    def cache_key(self) -> tuple[Hashable, ...]:
        """What identifies the credentials (with a hash of the secret, never the secret): equal keys
        share one cached token in a process."""


def travels(provider: object) -> bool:
    """Whether ``provider`` may be pickled to dask workers (its own, explicit choice)."""
    return bool(getattr(provider, "travels", False))


_auth_calls = 0
_auth_calls_lock = threading.Lock()


def count_auth_call() -> None:
    """Called by every provider once per auth request it sends (``auth_calls`` reports it)."""
    global _auth_calls
    with _auth_calls_lock:
        _auth_calls += 1


def auth_calls() -> int:
    """How many auth requests this process has sent (all stores together)."""
    return _auth_calls


_token_cache: dict[tuple[Hashable, ...], Token] = {}
_token_cache_lock = threading.Lock()


def cached_authenticate(provider: CredentialProvider, *, stale: Token | None = None) -> Token:
    """Authenticate through ``provider`` once per process, unless the cached token is ``stale``."""
    if not isinstance(provider, CachingProvider):
        return provider.authenticate()
    key = provider.cache_key()
    with _token_cache_lock:
        cached = _token_cache.get(key)
        if cached is not None and (stale is None or cached.token != stale.token):
            left = cached.seconds_left()
            if left is None or left > RENEW_BEFORE_EXPIRY:
                return cached
        token = provider.authenticate()
        _token_cache[key] = token
        return token
