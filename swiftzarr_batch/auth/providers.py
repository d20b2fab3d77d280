"""What every credential provider shares: the retry policy and the one HTTP request function of
auth endpoints, the base of providers that hold a secret, and the base of providers that wrap
another one.

Why here, once: v1 auth and Keystone must count their requests, tell a TLS failure from an
unreachable host, retry what the status map says is worth retrying, never put a secret in an
error, a log line or a pickle, and key the token cache by a hash of the secret. Written once
here, both get it the same way and neither can drift from the other.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Hashable
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import requests

from swiftzarr_batch.errors import AuthenticationError
from swiftzarr_batch.swift.proxy import ProxyOption, proxy_for, requests_proxies
from swiftzarr_batch.swift.retry import RetryableFailure, RetryPolicy
from swiftzarr_batch.swift.status import Outcome, classify
from swiftzarr_batch.swift.tls import Trust, warn_insecure
from swiftzarr_batch.swift.tokens import (
    CachingProvider,
    CredentialProvider,
    Token,
    count_auth_call,
)

__all__ = [
    "AUTH_RETRY",
    "SecretProvider",
    "WrappingProvider",
    "auth_request",
    "provider_cache_key",
    "route_through",
    "secret_digest",
    "warn_unverified",
]

log = logging.getLogger(__name__)

AUTH_RETRY = RetryPolicy(attempts=4, base_delay=0.2, max_delay=2.0, budget=30.0)
"""Auth requests: a few quick tries (an auth server restarting), then a clear error."""

_P = TypeVar("_P", bound="SecretProvider")


def auth_request(
    method: str,
    url: str,
    *,
    what: str,
    trust: Trust,
    timeout: float,
    proxy: ProxyOption = None,
    **kwargs: Any,
) -> requests.Response:
    """Send one auth request; return a 2xx (or other final) response, raise for the rest.

    Connection and TLS trouble raise ``AuthenticationError`` naming ``what`` (the endpoint, as
    the user configured it); a status worth retrying raises ``RetryableFailure`` for the
    caller's ``AUTH_RETRY`` loop. A TLS failure is not retried (a certificate does not get
    better) and says what was trusted and how to fix it. ``trust`` is ``swift.tls``'s, the
    data path's. Headers and bodies (which hold secrets) never reach a message. ``proxy`` is
    the explicit ``proxy=`` choice (None: the environment's), picked by ``swift.proxy`` for
    both, so auth goes through the proxy the data goes through, or neither does.
    """
    count_auth_call()
    via = proxy_for(url, proxy)
    try:
        resp = requests.request(
            method,
            url,
            timeout=timeout,
            verify=trust.requests_verify(),
            # None values turn the environment's proxy off (requests' stub omits them)
            proxies=cast(dict[str, str], requests_proxies(url, proxy)),
            **kwargs,
        )
    except requests.exceptions.ProxyError as exc:
        refusal = " (407: it wants credentials)" if "407" in str(exc) else ""
        raise AuthenticationError(
            f"could not reach {what} through proxy {via}{refusal}: {type(exc).__name__}"
        ) from None
    except requests.exceptions.SSLError:
        raise AuthenticationError(
            f"TLS verification failed for {what} ({urlsplit(url).hostname}): {trust.hint()}"
        ) from None
    except requests.exceptions.RequestException as exc:
        through = f" through proxy {via}" if via else ""
        raise AuthenticationError(
            f"could not reach {what}{through}: {type(exc).__name__}"
        ) from None
    if resp.status_code == 407 and via is not None:  # the proxy's answer, not the server's
        raise AuthenticationError(
            f"proxy {via} refused {what} with 407: give its credentials in its URL "
            "(http://user:password@host:port)"
        )
    if classify(resp.status_code) is Outcome.RETRY:
        raise RetryableFailure(
            f"{what} answered {resp.status_code}",
            status=resp.status_code,
            retry_after=resp.headers.get("Retry-After"),
        )
    return resp


def secret_digest(secret: str) -> str:
    """What a cache key holds of a secret: its SHA-256, never the secret itself."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def provider_cache_key(provider: CredentialProvider) -> tuple[Hashable, ...]:
    """``provider``'s cache key, or one unique to the object when it has none."""
    if isinstance(provider, CachingProvider):
        return provider.cache_key()
    return (id(provider),)


def _rebuild(cls: type[_P], state: dict[str, Any]) -> _P:
    """Unpickle a travelling provider: its attributes back, without re-running checks."""
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    return obj


class SecretProvider:
    """The base of providers that hold their secret (``V1Password``, the Keystone ones).

    A subclass sends one auth request in ``authenticate_once()``; ``authenticate()`` runs it
    under ``AUTH_RETRY``. Pickling refuses unless the provider was built with
    ``travels=True`` (the user's explicit choice to put the secret into pickles for dask
    workers). Subclasses write a ``__repr__`` that shows ``***`` for the secret and a
    ``cache_key()`` with ``secret_digest`` of it.
    """

    travels: bool = False
    #: the explicit ``proxy=`` of its auth requests (``swift.proxy``; None: the environment's)
    proxy: ProxyOption = None

    def authenticate_once(self) -> Token:
        """One auth request (no retries); raises ``RetryableFailure`` when worth another try."""
        raise NotImplementedError

    def authenticate(self) -> Token:
        """Authenticate, retried under ``AUTH_RETRY`` on connection trouble and 5xx."""
        return AUTH_RETRY.retrying()(self.authenticate_once)

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        if not self.travels:
            raise TypeError(
                f"{type(self).__name__} holds a secret and is not picklable; stores ship a "
                "storage URL + token instead (build it with travels=True, or use "
                "EnvironmentCredentials, to let workers re-authenticate)"
            )
        return (_rebuild, (type(self), self.__dict__.copy()))


def route_through(provider: object, proxy: ProxyOption) -> None:
    """Send the auth requests of ``provider`` (or of the provider it wraps) through ``proxy``:
    how ``SwiftStore(proxy=...)`` makes auth follow the same choice as its data."""
    seen = 0
    while provider is not None and seen < 8:  # wrappers hold theirs as ``provider``
        if isinstance(provider, SecretProvider):
            provider.proxy = proxy
            return
        provider, seen = getattr(provider, "provider", None), seen + 1


def warn_unverified(trust: Trust, what: str, url: str) -> None:
    """Log (once per host and process) that TLS certificates of ``what`` at ``url`` will not
    be checked (``swift.tls.warn_insecure``)."""
    warn_insecure(trust, what, url)


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
