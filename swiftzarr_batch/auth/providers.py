"""What every credential provider shares: the retry policy and the one HTTP request function of
auth endpoints, the base of providers that hold a secret, and the base of providers that wrap
another one.

Why here, once: v1 auth and Keystone must count their requests, tell a TLS failure from an
unreachable host, retry what the status map says is worth retrying, never put a secret in an
error, a log line or a pickle, and key the token cache by a hash of the secret. Written once
here, both get it the same way and neither can drift from the other.

Auth requests go over the data path's own HTTP/1.1 client (``swift.http1``), not a second
stack: the same strict framing and bounded reads, the same ``Trust`` (one ``ssl.SSLContext``)
and the same forward-proxy decision (``swift.proxy.proxy_for``) as every data request, so
"authenticates but cannot read" (or the reverse) from two clients disagreeing on CAs or
proxies cannot happen. Redirects are not followed: credentials go only to the URL configured.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Callable, Coroutine, Hashable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urlsplit

from swiftzarr_batch.errors import AuthenticationError, ProxyError
from swiftzarr_batch.swift.http1 import (
    ConnectionFailed,
    Endpoint,
    HTTPResponse,
    Pool,
    TLSFailure,
)
from swiftzarr_batch.swift.proxy import ProxyOption, proxy_for
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


_T = TypeVar("_T")


def _run_blocking(make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run the coroutine ``make()`` to completion from synchronous code: on a private event
    loop in this thread, or, when this thread already runs a loop (a provider called from
    async code), in a short-lived thread of its own, so that loop is never blocked into a
    deadlock."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    with ThreadPoolExecutor(1, thread_name_prefix="swiftzarr-auth") as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


async def _one_request(
    method: str,
    url: str,
    endpoint: Endpoint,
    headers: Mapping[str, str],
    body: bytes | None,
    timeout: float,
) -> HTTPResponse:
    pool = Pool(endpoint, limit=1, connect_timeout=timeout, read_timeout=timeout)
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        async with asyncio.timeout(4 * timeout):  # a bound on the whole exchange too
            return await pool.request(method, target, headers, body)
    finally:
        pool.close()


def auth_request(
    method: str,
    url: str,
    *,
    what: str,
    trust: Trust,
    timeout: float,
    proxy: ProxyOption = None,
    headers: Mapping[str, str] | None = None,
    json_body: Any = None,
) -> HTTPResponse:
    """Send one auth request; return a 2xx (or other final) response, raise for the rest.

    Connection and TLS trouble raise ``AuthenticationError`` naming ``what`` (the endpoint, as
    the user configured it); a status worth retrying raises ``RetryableFailure`` for the
    caller's ``AUTH_RETRY`` loop. A TLS failure is not retried (a certificate does not get
    better) and says what was trusted and how to fix it. ``trust`` is ``swift.tls``'s, the
    data path's. Headers and bodies (which hold secrets) never reach a message. ``proxy`` is
    the explicit ``proxy=`` choice (None: the environment's), picked by ``swift.proxy`` for
    both, so auth goes through the proxy the data goes through, or neither does.
    ``json_body`` is sent as ``application/json``.
    """
    count_auth_call()
    via = proxy_for(url, proxy)
    sent = dict(headers or {})
    body = None
    if json_body is not None:
        body = json.dumps(json_body).encode("utf-8")
        sent["Content-Type"] = "application/json"
    try:
        endpoint = Endpoint(url, ssl_context=trust.ssl_context(), proxy=via)
        resp = _run_blocking(lambda: _one_request(method, url, endpoint, sent, body, timeout))
    except ValueError:
        raise AuthenticationError(f"{what}: not an http(s) URL") from None
    except ProxyError as exc:
        refusal = " (407: it wants credentials)" if exc.status == 407 else ""
        raise AuthenticationError(
            f"could not reach {what} through proxy {via}{refusal}: {exc}"
        ) from None
    except TLSFailure:
        raise AuthenticationError(
            f"TLS verification failed for {what} ({urlsplit(url).hostname}): {trust.hint()}"
        ) from None
    except (ConnectionFailed, TimeoutError, OSError) as exc:
        through = f" through proxy {via}" if via else ""
        raise AuthenticationError(
            f"could not reach {what}{through}: {type(exc).__name__}"
        ) from None
    if classify(resp.status) is Outcome.RETRY:
        raise RetryableFailure(
            f"{what} answered {resp.status}",
            status=resp.status,
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
        """The provider to authenticate through, found anew at each call (subclasses say where)."""
        raise NotImplementedError

    def cache_key(self) -> tuple[Hashable, ...]:
        """The inner provider's key tagged with ``kind``, so a wrapper never shares a token with a
        different kind of wrapper around the same credentials."""
        return (self.kind, *provider_cache_key(self.inner()))

    def authenticate(self) -> Token:
        """A fresh token from the inner provider."""
        return self.inner().authenticate()
