"""The credential chain: where credentials are looked for, in which order, and the providers
that may travel to dask workers; the token-lifetime check.

Why: a job that runs for hours outlives its token. The client authenticates once and ships the
storage URL + token to workers; when Swift rejects the token (401), a worker can only carry on
if it has a way to get a new one. A provider does that, and it reaches the workers only when it
says ``travels = True``. The providers here travel *without* carrying a secret:

* ``EnvironmentCredentials``: re-reads ``ST_*`` / Keystone ``OS_*`` variables (or
  ``OS_CLOUD``'s clouds.yaml) in the worker process, so the secret lives in the worker's
  environment, as put there by whoever started the cluster;
* ``CredentialsFile``: reads ``NAME=value`` lines (an RC file) on the worker, at every renewal,
  so a rotated password or application credential is picked up.

A provider holding the secret itself (``V1Password``, ``KeystonePassword``...) travels only when
built with ``travels=True``: the user's explicit choice to put the secret in pickles.
``check_token_lifetime`` tells before a job starts whether its token will last.
"""

from __future__ import annotations

import logging
import os
import shlex
import warnings
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from swiftzarr_batch.auth.keystone import from_env as keystone_from_env
from swiftzarr_batch.auth.providers import WrappingProvider, provider_cache_key
from swiftzarr_batch.auth.v1 import V1Password
from swiftzarr_batch.errors import ConfigurationError, TokenExpiredError, TokenLifetimeWarning
from swiftzarr_batch.swift.session import SwiftSession
from swiftzarr_batch.swift.tls import Trust, resolve_trust, trust_of
from swiftzarr_batch.swift.tokens import CredentialProvider, Token, travels

__all__ = [
    "CredentialsFile",
    "EnvironmentCredentials",
    "ResolvedAuth",
    "StorageURLOverride",
    "check_token_lifetime",
    "resolve_credentials",
]

log = logging.getLogger(__name__)


def _provider_from(
    env: Mapping[str, str], where: str, verify_tls: bool, cacert: str | None
) -> CredentialProvider:
    resolved = resolve_credentials(verify_tls=verify_tls, cacert=cacert, env=env)
    if resolved.provider is None:
        raise ConfigurationError(
            f"{where} holds only a token ({resolved.source}), which cannot be renewed; it "
            "needs ST_AUTH/ST_USER/ST_KEY or Keystone OS_* credentials"
        )
    return resolved.provider


class EnvironmentCredentials(WrappingProvider):
    """Authenticate from the environment of the process that calls ``authenticate()``.

    Pickles to nothing but its options: each dask worker uses its own environment (workers of
    a LocalCluster inherit the client's; on a batch cluster, export the variables in the job
    script). ``storage_url`` optionally replaces the storage URL from the auth answer.
    """

    travels = True
    kind = "env"

    def __init__(
        self,
        *,
        storage_url: str | None = None,
        verify_tls: bool = True,
        cacert: str | os.PathLike[str] | None = None,
    ) -> None:
        self.storage_url = storage_url
        self.verify_tls = verify_tls
        self.cacert = os.fspath(cacert) if cacert else None  # a path: workers share the file

    def __repr__(self) -> str:
        return "EnvironmentCredentials()"

    def inner(self) -> CredentialProvider:
        """The provider this process's environment names, looked up afresh at each call: on a dask
        worker it is the worker's environment, so no secret travels in the pickle."""
        provider = _provider_from(os.environ, "the environment", self.verify_tls, self.cacert)
        return StorageURLOverride(provider, self.storage_url) if self.storage_url else provider


class CredentialsFile(WrappingProvider):
    """Authenticate with ``NAME=value`` lines read from ``path`` when a token is needed.

    The file uses the environment variables' names (``ST_AUTH``, ``OS_AUTH_URL``,
    ``OS_APPLICATION_CREDENTIAL_SECRET``...); ``export`` prefixes, quotes and ``#`` comments are
    fine, so an OpenStack RC file works as is. Only the path travels; keep the file readable
    only by you (it warns when others can read it).
    """

    travels = True
    kind = "file"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        storage_url: str | None = None,
        verify_tls: bool = True,
        cacert: str | os.PathLike[str] | None = None,
    ) -> None:
        self.path = Path(path).expanduser()
        self.storage_url = storage_url
        self.verify_tls = verify_tls
        self.cacert = os.fspath(cacert) if cacert else None

    def __repr__(self) -> str:
        return f"CredentialsFile({str(self.path)!r})"

    def read(self) -> dict[str, str]:
        """The file's ``NAME=value`` entries, read now (so a rotated secret is picked up); warns
        when others can read the file. A malformed line raises ``ConfigurationError`` naming the
        line, never the value."""
        try:
            text = self.path.read_text()
            mode = self.path.stat().st_mode
        except OSError as e:
            raise ConfigurationError(
                f"cannot read credentials file {self.path}: {e.strerror or type(e).__name__}"
            ) from None
        if mode & 0o077:
            log.warning("credentials file %s is readable by other users (chmod 600 it)", self.path)
        values: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            line = line.removeprefix("export ").strip()
            name, sep, raw = line.partition("=")
            if not sep or not name.strip().isidentifier():
                raise ConfigurationError(
                    f"{self.path} line {number} is not NAME=value (the value is not shown)"
                )
            try:
                parts = shlex.split(raw, comments=True)
            except ValueError:
                raise ConfigurationError(
                    f"{self.path} line {number}: unbalanced quotes in the value of {name.strip()}"
                ) from None
            values[name.strip()] = parts[0] if parts else ""
        return values

    def inner(self) -> CredentialProvider:
        """The provider the file's entries name, read at each call (see ``read``)."""
        provider = _provider_from(self.read(), str(self.path), self.verify_tls, self.cacert)
        return StorageURLOverride(provider, self.storage_url) if self.storage_url else provider


class StorageURLOverride:
    """Authenticate with ``provider`` but use ``storage_url`` for data (another account the
    user was granted access to, a different endpoint or a proxy in front of Swift)."""

    def __init__(self, provider: CredentialProvider, storage_url: str) -> None:
        self.provider = provider
        self.storage_url = storage_url.rstrip("/")

    @property
    def travels(self) -> bool:
        """The wrapped provider's choice: the override adds no secret of its own."""
        return travels(self.provider)

    @property
    def trust(self) -> Trust | None:
        """The wrapped provider's (``swift.tls``): the storage URL is trusted like the auth."""
        return trust_of(self.provider)

    def __repr__(self) -> str:
        return f"StorageURLOverride({self.provider!r}, {self.storage_url!r})"

    def cache_key(self) -> tuple[Hashable, ...]:
        """The wrapped provider's key, tagged with the storage URL: the same credentials used for
        two accounts cache two tokens."""
        return ("override", self.storage_url, *provider_cache_key(self.provider))

    def authenticate(self) -> Token:
        """Authenticate with the wrapped provider and keep its token, with the override's storage
        URL."""
        token = self.provider.authenticate()
        return Token(self.storage_url, token.token, token.expires_at)


@dataclass(frozen=True)
class ResolvedAuth:
    """Where the credentials came from: a provider to authenticate with, or a ready token."""

    provider: CredentialProvider | None
    token: Token | None
    source: str


def resolve_credentials(
    *,
    authurl: str | None = None,
    user: str | None = None,
    key: str | None = None,
    preauthurl: str | None = None,
    preauthtoken: str | None = None,
    verify_tls: bool = True,
    cacert: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> ResolvedAuth:
    """Pick credentials: arguments, ST_AUTH/ST_USER/ST_KEY, Keystone (OS_CLOUD, OS_AUTH_URL...),
    then OS_STORAGE_URL/OS_AUTH_TOKEN.

    Keystone credentials come before a bare token because they can renew it. With
    authurl/user/key, a ``preauthurl`` is the storage URL to use (python-swiftclient's meaning)
    and a ``preauthtoken`` is used until it is rejected. ``env`` defaults to ``os.environ``.
    ``verify_tls``/``cacert`` (and ``env``'s ``OS_CACERT``, a cloud's ``cacert``...) say whose
    certificates the providers trust (``swift.tls.resolve_trust``); a bad CA bundle fails here.
    """
    env = os.environ if env is None else env
    given = [n for n, v in (("authurl", authurl), ("user", user), ("key", key)) if v]
    if given and len(given) < 3:
        missing = sorted({"authurl", "user", "key"} - set(given))
        raise ConfigurationError(
            f"authurl, user and key go together; missing: {', '.join(missing)}"
        )
    if authurl and user and key:
        provider: CredentialProvider = V1Password(
            authurl, user, key, trust=resolve_trust(cacert, verify_tls=verify_tls, env=env)
        )
        if preauthurl:  # python-swiftclient's meaning: auth with these, use that storage URL
            provider = StorageURLOverride(provider, preauthurl)
        token = Token(preauthurl, preauthtoken) if preauthurl and preauthtoken else None
        return ResolvedAuth(provider, token, "arguments")
    if preauthurl or preauthtoken:
        if not (preauthurl and preauthtoken):
            raise ConfigurationError("preauthurl and preauthtoken go together; one is missing")
        return ResolvedAuth(None, Token(preauthurl, preauthtoken), "arguments")
    st_auth, st_user, st_key = env.get("ST_AUTH"), env.get("ST_USER"), env.get("ST_KEY")
    if st_auth and st_user and st_key:
        return ResolvedAuth(
            V1Password(
                st_auth,
                st_user,
                st_key,
                trust=resolve_trust(cacert, verify_tls=verify_tls, env=env),
            ),
            None,
            "ST_AUTH/ST_USER/ST_KEY",
        )
    # renewable: before a token
    keystone = keystone_from_env(env, verify_tls=verify_tls, cacert=cacert)
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
        + (" (ST_AUTH/ST_USER/ST_KEY are only partly set)" if st_auth or st_user or st_key else "")
    )


class HasSession(Protocol):
    """A store on Swift (``SwiftStore``): what the lifetime check needs of it."""

    @property
    def session(self) -> SwiftSession:
        """The store's ``SwiftSession``, holding the token and the provider that may renew it."""


def check_token_lifetime(
    store: HasSession, needed_seconds: float, *, strict: bool = False
) -> float | None:
    """Before launching a job that needs ``needed_seconds``: will the store's token last?

    Returns the seconds left (None when the auth server did not say). When the token expires
    too early and the store has no provider that can renew it on the workers, warns
    (``TokenLifetimeWarning``) or, with ``strict=True``, raises ``TokenExpiredError``, naming
    the ways out. Stores with a travelling provider renew on 401 and only get a log line.
    """
    session = store.session
    left = session.token.seconds_left()
    if left is None:
        log.debug("token expiry unknown for %s; cannot check its lifetime", session.storage_url)
        return None
    if left >= needed_seconds:
        return left
    if travels(session.provider):
        log.info(
            "token expires in %.0f s, before the job's %.0f s; workers will renew it",
            left,
            needed_seconds,
        )
        return left
    message = (
        f"the token for {session.storage_url} expires in {max(left, 0):.0f} s but the job needs "
        f"about {needed_seconds:.0f} s, and nothing can renew it on the workers: give the store "
        "credential_provider=EnvironmentCredentials() (or CredentialsFile, or a provider built "
        "with travels=True), or get a longer-lived token first"
    )
    if strict:
        raise TokenExpiredError(message)
    warnings.warn(message, TokenLifetimeWarning, stacklevel=2)
    log.warning("%s", message)
    return left
