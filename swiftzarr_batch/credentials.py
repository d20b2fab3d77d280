"""Credential providers that may travel to dask workers, and the token-lifetime check.

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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from swiftzarr_batch.auth import CredentialProvider, Token, resolve_credentials
from swiftzarr_batch.errors import ConfigurationError, TokenExpiredError, TokenLifetimeWarning

__all__ = ["CredentialsFile", "EnvironmentCredentials", "StorageURLOverride",
           "check_token_lifetime"]

log = logging.getLogger(__name__)


def _provider_from(env: Mapping[str, str], where: str, verify_tls: bool) -> CredentialProvider:
    resolved = resolve_credentials(authurl=None, user=None, key=None, preauthurl=None,
                                   preauthtoken=None, verify_tls=verify_tls, env=env)
    if resolved.provider is None:
        raise ConfigurationError(
            f"{where} holds only a token ({resolved.source}), which cannot be renewed; it "
            "needs ST_AUTH/ST_USER/ST_KEY or Keystone OS_* credentials")
    return resolved.provider


class EnvironmentCredentials:
    """Authenticate from the environment of the process that calls ``authenticate()``.

    Pickles to nothing but its options: each dask worker uses its own environment (workers of
    a LocalCluster inherit the client's; on a batch cluster, export the variables in the job
    script). ``storage_url`` optionally replaces the storage URL from the auth answer.
    """

    travels = True

    def __init__(self, *, storage_url: str | None = None, verify_tls: bool = True) -> None:
        self.storage_url = storage_url
        self.verify_tls = verify_tls

    def __repr__(self) -> str:
        return "EnvironmentCredentials()"

    def _inner(self) -> CredentialProvider:
        provider = _provider_from(os.environ, "the environment", self.verify_tls)
        return StorageURLOverride(provider, self.storage_url) if self.storage_url else provider

    def cache_key(self) -> tuple[Any, ...]:
        inner = self._inner()
        return ("env", *(inner.cache_key() if hasattr(inner, "cache_key") else (id(inner),)))

    def authenticate(self) -> Token:
        return self._inner().authenticate()


class CredentialsFile:
    """Authenticate with ``NAME=value`` lines read from ``path`` when a token is needed.

    The file uses the environment variables' names (``ST_AUTH``, ``OS_AUTH_URL``,
    ``OS_APPLICATION_CREDENTIAL_SECRET``...); ``export`` prefixes, quotes and ``#`` comments are
    fine, so an OpenStack RC file works as is. Only the path travels; keep the file readable
    only by you (it warns when others can read it).
    """

    travels = True

    def __init__(self, path: str | os.PathLike[str], *, storage_url: str | None = None,
                 verify_tls: bool = True) -> None:
        self.path = Path(path).expanduser()
        self.storage_url = storage_url
        self.verify_tls = verify_tls

    def __repr__(self) -> str:
        return f"CredentialsFile({str(self.path)!r})"

    def read(self) -> dict[str, str]:
        try:
            text = self.path.read_text()
            mode = self.path.stat().st_mode
        except OSError as e:
            raise ConfigurationError(f"cannot read credentials file {self.path}: "
                                     f"{e.strerror or type(e).__name__}") from None
        if mode & 0o077:
            log.warning("credentials file %s is readable by other users (chmod 600 it)",
                        self.path)
        values: dict[str, str] = {}
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            line = line.removeprefix("export ").strip()
            name, sep, raw = line.partition("=")
            if not sep or not name.strip().isidentifier():
                raise ConfigurationError(
                    f"{self.path} line {number} is not NAME=value (the value is not shown)")
            try:
                parts = shlex.split(raw, comments=True)
            except ValueError:
                raise ConfigurationError(
                    f"{self.path} line {number}: unbalanced quotes in the value of "
                    f"{name.strip()}") from None
            values[name.strip()] = parts[0] if parts else ""
        return values

    def _inner(self) -> CredentialProvider:
        provider = _provider_from(self.read(), str(self.path), self.verify_tls)
        return StorageURLOverride(provider, self.storage_url) if self.storage_url else provider

    def cache_key(self) -> tuple[Any, ...]:
        inner = self._inner()
        return ("file", *(inner.cache_key() if hasattr(inner, "cache_key") else (id(inner),)))

    def authenticate(self) -> Token:
        return self._inner().authenticate()


class StorageURLOverride:
    """Authenticate with ``provider`` but use ``storage_url`` for data (another account the
    user was granted access to, a different endpoint or a proxy in front of Swift)."""

    def __init__(self, provider: CredentialProvider, storage_url: str) -> None:
        self.provider = provider
        self.storage_url = storage_url.rstrip("/")

    @property
    def travels(self) -> bool:
        return bool(getattr(self.provider, "travels", False))

    def __repr__(self) -> str:
        return f"StorageURLOverride({self.provider!r}, {self.storage_url!r})"

    def cache_key(self) -> tuple[Any, ...]:
        inner = self.provider.cache_key() if hasattr(self.provider, "cache_key") else None
        return ("override", self.storage_url, *(inner or (id(self.provider),)))

    def authenticate(self) -> Token:
        token = self.provider.authenticate()
        return Token(self.storage_url, token.token, token.expires_at)


def check_token_lifetime(store: Any, needed_seconds: float, *, strict: bool = False) -> float | None:
    """Before launching a job that needs ``needed_seconds``: will the store's token last?

    Returns the seconds left (None when the auth server did not say). When the token expires
    too early and the store has no provider that can renew it on the workers, warns
    (``TokenLifetimeWarning``) or, with ``strict=True``, raises ``TokenExpiredError``, naming
    the ways out. Stores with a travelling provider renew on 401 and only get a log line.
    """
    session = store._session()
    left = session.token.seconds_left()
    if left is None:
        log.debug("token expiry unknown for %s; cannot check its lifetime", session.storage_url)
        return None
    if left >= needed_seconds:
        return left
    if getattr(session.provider, "travels", False):
        log.info("token expires in %.0f s, before the job's %.0f s; workers will renew it",
                 left, needed_seconds)
        return left
    message = (
        f"the token for {session.storage_url} expires in {max(left, 0):.0f} s but the job needs "
        f"about {needed_seconds:.0f} s, and nothing can renew it on the workers: give the store "
        "credential_provider=EnvironmentCredentials() (or CredentialsFile, or a provider built "
        "with travels=True), or get a longer-lived token first")
    if strict:
        raise TokenExpiredError(message)
    warnings.warn(message, TokenLifetimeWarning, stacklevel=2)
    log.warning("%s", message)
    return left
