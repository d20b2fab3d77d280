"""Authentication: from credentials (arguments or environment) to a storage URL and a token.

A job authenticates once, on the client; workers receive only the storage URL and the token
(see ``TokenSource.__getstate__``). Password-based results are cached per process, keyed by a
hash of the credentials, so a script that builds many stores with the same credentials also
authenticates once. Nothing in this module ever logs or formats a key, password or token.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import requests

from swiftzarr_batch.errors import AuthenticationError, ConfigurationError
from swiftzarr_batch.retry import RetryableFailure, RetryPolicy
from swiftzarr_batch.status import Outcome, classify

log = logging.getLogger(__name__)

DEFAULT_TOKEN_LIFE = 24 * 60 * 60
_AUTH_RETRY = RetryPolicy(attempts=4, base_delay=0.2, max_delay=2.0, budget=30.0)


@dataclass(frozen=True)
class Token:
    """A storage URL with the token that opens it; ``expires_at`` is a UNIX time or None."""

    storage_url: str
    token: str = field(repr=False)
    expires_at: float | None = None

    def seconds_left(self, now: float | None = None) -> float | None:
        if self.expires_at is None:
            return None
        return self.expires_at - (time.time() if now is None else now)


@runtime_checkable
class CredentialProvider(Protocol):
    """Anything that can produce a fresh Token (picklable ones may travel to dask workers)."""

    def authenticate(self) -> Token: ...


class V1Password:
    """Swift v1 auth (TempAuth, swauth, or Keystone's v1 shim) with user and key."""

    def __init__(
        self, authurl: str, user: str, key: str, *, token_life: int | None = None,
        verify_tls: bool = True, timeout: float = 30.0, travels: bool = False,
    ) -> None:
        self.authurl = authurl
        self.user = user
        self._key = key
        self.token_life = token_life
        self.verify_tls = verify_tls
        self.timeout = timeout
        self.travels = travels  # True: the user allows the key to be pickled to dask workers
        if not verify_tls:
            log.warning("TLS certificate verification is OFF for auth URL %s", authurl)

    def __repr__(self) -> str:
        return f"V1Password(authurl={self.authurl!r}, user={self.user!r}, key=***)"

    def __reduce__(self):  # noqa: D105 - refuse silently shipping the key
        if self.travels:
            return (_travelling_v1, (self.authurl, self.user, self._key, self.token_life,
                                     self.verify_tls, self.timeout))
        raise TypeError(
            "V1Password holds a key and is not picklable; stores ship a storage URL + token "
            "instead (build it with travels=True, or use EnvironmentCredentials, to let "
            "workers re-authenticate)"
        )

    def cache_key(self) -> tuple[str, str, str]:
        digest = hashlib.sha256(self._key.encode("utf-8")).hexdigest()
        return (self.authurl, self.user, digest)

    def authenticate(self) -> Token:
        """GET the auth URL with X-Auth-User/X-Auth-Key; retried on connection trouble/5xx."""
        headers = {"X-Auth-User": self.user, "X-Auth-Key": self._key}
        if self.token_life:
            headers["X-Auth-Lifetime"] = str(int(self.token_life))
        for attempt in _AUTH_RETRY.retrying():
            with attempt:
                return self._authenticate_once(headers)
        raise AssertionError("unreachable")  # pragma: no cover

    def _authenticate_once(self, headers: dict[str, str]) -> Token:
        count_auth_call()
        try:
            resp = requests.get(
                self.authurl, headers=headers, timeout=self.timeout, verify=self.verify_tls
            )
        except requests.exceptions.SSLError as exc:
            raise AuthenticationError(
                f"TLS verification failed for auth URL {self.authurl} ({type(exc).__name__})"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise AuthenticationError(
                f"could not reach auth URL {self.authurl}: {type(exc).__name__}"
            ) from None
        outcome = classify(resp.status_code)
        if outcome is Outcome.RETRY:
            raise RetryableFailure(f"auth answered {resp.status_code}", status=resp.status_code,
                                   retry_after=resp.headers.get("Retry-After"))
        if outcome is not Outcome.OK:
            raise AuthenticationError(
                f"authentication of user {self.user!r} at {self.authurl} was refused "
                f"({resp.status_code} {resp.reason}); check the user and key"
            )
        url, token = resp.headers.get("X-Storage-Url"), resp.headers.get("X-Auth-Token")
        if not url or not token:
            raise AuthenticationError(
                f"auth URL {self.authurl} answered {resp.status_code} without a storage URL and "
                "token; is this a Swift v1 auth endpoint?"
            )
        expires = resp.headers.get("X-Auth-Token-Expires")  # seconds left, not a timestamp
        expires_at = time.time() + float(expires) if expires else None
        log.debug("authenticated %s at %s (token expires in %s s)", self.user, self.authurl, expires)
        return Token(url, token, expires_at)


def _travelling_v1(authurl: str, user: str, key: str, token_life: int | None,
                   verify_tls: bool, timeout: float) -> V1Password:
    return V1Password(authurl, user, key, token_life=token_life, verify_tls=verify_tls,
                      timeout=timeout, travels=True)


_auth_calls = 0
_auth_calls_lock = threading.Lock()


def count_auth_call() -> None:
    global _auth_calls
    with _auth_calls_lock:
        _auth_calls += 1


def auth_calls() -> int:
    """How many auth requests this process has sent (all stores together)."""
    return _auth_calls


_token_cache: dict[tuple, Token] = {}
_token_cache_lock = threading.Lock()


def cached_authenticate(provider: CredentialProvider, *, stale: Token | None = None) -> Token:
    """Authenticate through ``provider`` once per process, unless the cached token is ``stale``."""
    key = provider.cache_key() if hasattr(provider, "cache_key") else None
    if key is None:
        return provider.authenticate()
    with _token_cache_lock:
        cached = _token_cache.get(key)
        if cached is not None and (stale is None or cached.token != stale.token):
            left = cached.seconds_left()
            if left is None or left > 30:
                return cached
        token = provider.authenticate()
        _token_cache[key] = token
        return token


def acquire_token(
    authurl: str, user: str, key: str, token_life_in_seconds: int = DEFAULT_TOKEN_LIFE
) -> tuple[str, str]:
    """Authenticate and return ``(storage_url, token)``, as the original zarrswift helper did.

    The token can be handed to ``SwiftStore(preauthurl=..., preauthtoken=...)`` or exported as
    ``OS_STORAGE_URL``/``OS_AUTH_TOKEN``. ``token_life_in_seconds`` is sent as
    ``X-Auth-Lifetime``; servers may cap it (TempAuth uses its configured ``token_life``).
    """
    token = V1Password(authurl, user, key, token_life=token_life_in_seconds).authenticate()
    return token.storage_url, token.token


@dataclass(frozen=True)
class ResolvedAuth:
    """Where the credentials came from: a provider to authenticate with, or a ready token."""

    provider: CredentialProvider | None
    token: Token | None
    source: str


def resolve_credentials(
    *, authurl: str | None, user: str | None, key: str | None, preauthurl: str | None,
    preauthtoken: str | None, verify_tls: bool = True, env: dict[str, str] | None = None,
) -> ResolvedAuth:
    """Pick credentials: arguments, ST_AUTH/ST_USER/ST_KEY, Keystone (OS_CLOUD, OS_AUTH_URL...),
    then OS_STORAGE_URL/OS_AUTH_TOKEN.

    Keystone credentials come before a bare token because they can renew it. With
    authurl/user/key, a ``preauthurl`` is the storage URL to use (python-swiftclient's meaning)
    and a ``preauthtoken`` is used until it is rejected.
    """
    env = os.environ if env is None else env
    given = [n for n, v in (("authurl", authurl), ("user", user), ("key", key)) if v]
    if given and len(given) < 3:
        missing = sorted({"authurl", "user", "key"} - set(given))
        raise ConfigurationError(f"authurl, user and key go together; missing: {', '.join(missing)}")
    if given:
        provider: CredentialProvider = V1Password(authurl, user, key, verify_tls=verify_tls)
        if preauthurl:  # python-swiftclient's meaning: auth with these, use that storage URL
            from swiftzarr_batch.credentials import StorageURLOverride

            provider = StorageURLOverride(provider, preauthurl)
        token = Token(preauthurl, preauthtoken) if preauthurl and preauthtoken else None
        return ResolvedAuth(provider, token, "arguments")
    if preauthurl or preauthtoken:
        if not (preauthurl and preauthtoken):
            raise ConfigurationError("preauthurl and preauthtoken go together; one is missing")
        return ResolvedAuth(None, Token(preauthurl, preauthtoken), "arguments")
    st = (env.get("ST_AUTH"), env.get("ST_USER"), env.get("ST_KEY"))
    if all(st):
        return ResolvedAuth(V1Password(*st, verify_tls=verify_tls), None, "ST_AUTH/ST_USER/ST_KEY")
    from swiftzarr_batch.keystone import from_env  # Keystone v3: renewable, so before a token

    keystone = from_env(env, verify_tls=verify_tls)
    if keystone is not None:
        return ResolvedAuth(keystone, None, "OS_CLOUD" if env.get("OS_CLOUD") else "OS_AUTH_URL")
    os_url, os_token = env.get("OS_STORAGE_URL"), env.get("OS_AUTH_TOKEN")
    if os_url and os_token:
        return ResolvedAuth(None, Token(os_url, os_token), "OS_STORAGE_URL/OS_AUTH_TOKEN")
    raise ConfigurationError(
        "no Swift credentials found. Give one of: authurl+user+key, preauthurl+preauthtoken, "
        "env ST_AUTH+ST_USER+ST_KEY, env OS_CLOUD (clouds.yaml), env OS_AUTH_URL with "
        "OS_USERNAME+OS_PASSWORD+OS_PROJECT_NAME or OS_APPLICATION_CREDENTIAL_ID+_SECRET "
        "(Keystone v3), or env OS_STORAGE_URL+OS_AUTH_TOKEN"
        + (" (ST_AUTH/ST_USER/ST_KEY are only partly set)" if any(st) else "")
    )
