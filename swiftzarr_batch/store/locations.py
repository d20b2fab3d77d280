"""From a location string (what users type and put in config files) to a zarr store.

- ``swift://CONTAINER/PREFIX``: a SwiftStore; credentials from the environment like the store's
  (``ST_AUTH``/``ST_USER``/``ST_KEY``, else ``OS_STORAGE_URL``/``OS_AUTH_TOKEN``).
  ``?account=AUTH_other`` addresses another account of the same cluster with the same token.
  ``env_prefix="SRC_"`` reads ``SRC_ST_AUTH``, ... instead, for a second cluster.
- ``/a/path``, ``./rel``, ``file:///a/path``: a zarr LocalStore.
- any other ``scheme://...`` fsspec understands (``s3://``, ``memory://``, ...): an FsspecStore.

``open_session("swift://")`` gives the ``SwiftSession`` of the account a URL names (its
container may be empty), for account-level requests such as the container listing: the same
credentials, account and session a store of that URL would use, without opening a store.

Certificates (``swift.tls``): ``insecure=True`` (the CLI's ``--insecure``, a workflow's
``insecure = true``) or ``cacert=PATH`` are the explicit choice; else ``OS_CACERT`` is read with
the credentials (``SRC_OS_CACERT`` with ``env_prefix="SRC_"``), then clouds.yaml, then the
process-wide ``REQUESTS_CA_BUNDLE``/``SSL_CERT_FILE``, then the system's store.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import parse_qs, unquote, urlsplit

from zarr.abc.store import Store

from swiftzarr_batch.auth import (
    CredentialProvider,
    ResolvedAuth,
    Token,
    cached_authenticate,
    resolve_credentials,
)
from swiftzarr_batch.errors import ConfigurationError
from swiftzarr_batch.store.swift_store import SwiftStore
from swiftzarr_batch.swift.session import SwiftSession, TransportOptions, get_session
from swiftzarr_batch.swift.tls import Trust, resolve_trust, trust_of

__all__ = [
    "SwiftLocation",
    "for_account",
    "open_session",
    "open_store",
    "parse_swift_url",
    "prefixed_env",
    "swift_credentials",
]


@dataclass(frozen=True)
class SwiftLocation:
    container: str
    prefix: str
    account: str | None


def parse_swift_url(url: str) -> SwiftLocation:
    """``swift://container/prefix[?account=AUTH_x]`` -> its parts (container may be "")."""
    parts = urlsplit(url)
    if parts.scheme != "swift":
        raise ConfigurationError(f"not a swift:// URL: {url!r}")
    query = parse_qs(parts.query)
    unknown = set(query) - {"account"}
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) {sorted(unknown)} in {url!r}; only ?account=AUTH_name is understood"
        )
    account = query.get("account", [None])[0]
    return SwiftLocation(unquote(parts.netloc), unquote(parts.path).strip("/"), account)


def prefixed_env(prefix: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment with ``prefix`` stripped from the variables that carry it."""
    env = os.environ if env is None else env
    if not prefix:
        return dict(env)
    return {k[len(prefix) :]: v for k, v in env.items() if k.startswith(prefix)}


class _OtherAccount:
    """A credential provider whose tokens open another account of the same cluster.

    It hands out the token the same credentials already have in this process, so stores of
    both accounts share one token, which is what makes server-side copies between them possible.
    (No ``cache_key`` of its own: the inner provider's cache is the one cache.)
    """

    def __init__(self, inner: CredentialProvider, account: str) -> None:
        self.inner, self.account = inner, account
        self._last: str | None = None

    def __repr__(self) -> str:
        return f"_OtherAccount({self.inner!r}, {self.account!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("credential providers holding keys are not picklable")

    @property
    def trust(self) -> Trust | None:
        """The inner provider's: the other account is on the same servers."""
        return trust_of(self.inner)

    def authenticate(self) -> Token:
        token = cached_authenticate(self.inner)
        if token.token == self._last:  # asked again: the token we gave was rejected
            token = cached_authenticate(self.inner, stale=token)
        self._last = token.token
        return Token(_with_account(token.storage_url, self.account), token.token, token.expires_at)


def _with_account(storage_url: str, account: str) -> str:
    return f"{storage_url.rstrip('/').rsplit('/', 1)[0]}/{account}"


def open_store(
    url: str,
    *,
    read_only: bool = False,
    env_prefix: str = "",
    env: Mapping[str, str] | None = None,
    insecure: bool = False,
    cacert: str | None = None,
) -> Store:
    """The zarr store a location string names (see the module docstring); ``insecure`` and
    ``cacert`` apply to swift:// locations (others ignore them)."""
    if not url:
        raise ConfigurationError("empty location; give swift://CONTAINER/PREFIX or a path")
    scheme = urlsplit(url).scheme
    if scheme == "swift":
        trust = _Trust(insecure, cacert)
        return _swift_store(
            url, read_only=read_only, env=prefixed_env(env_prefix, env), trust=trust
        )
    if scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt"):
        path = Path(unquote(urlsplit(url).path) if scheme == "file" else url).expanduser()
        if read_only and not path.is_dir():
            raise ConfigurationError(f"no such directory: {path}")
        from zarr.storage import LocalStore

        return LocalStore(path, read_only=read_only)
    from zarr.storage import FsspecStore

    try:
        return FsspecStore.from_url(url, read_only=read_only)
    except (ImportError, ValueError) as exc:
        raise ConfigurationError(f"cannot open {url!r} with fsspec: {exc}") from None


@dataclass(frozen=True)
class _Trust:
    """The explicit certificate choice of a location (``--insecure``, a config's cacert)."""

    insecure: bool = False
    cacert: str | None = None

    def resolve(self, env: Mapping[str, str], provider: CredentialProvider | None) -> Trust:
        """The explicit choice, else the provider's (OS_CACERT, clouds.yaml...), else the
        environment's: what every client of the location uses."""
        found = None if self.insecure or self.cacert else trust_of(provider)
        return found or resolve_trust(self.cacert, verify_tls=not self.insecure, env=env)


def _swift_store(url: str, *, read_only: bool, env: Mapping[str, str], trust: _Trust) -> SwiftStore:
    loc = parse_swift_url(url)
    if not loc.container:
        raise ConfigurationError(f"{url!r} names no container; use swift://CONTAINER/PREFIX")
    token, provider = _account_credentials(loc, env, trust)
    options = _store_trust(trust.resolve(env, provider), provider)
    if token is not None:
        return SwiftStore(
            loc.container,
            loc.prefix,
            preauthurl=token.storage_url,
            preauthtoken=token.token,
            read_only=read_only,
            **options,
        )
    return SwiftStore(
        loc.container, loc.prefix, credential_provider=provider, read_only=read_only, **options
    )


def _store_trust(trust: Trust, provider: CredentialProvider | None) -> dict[str, Any]:
    """SwiftStore's arguments for ``trust``: none when the store finds it itself (its
    provider's, or the process-wide variables'), else the choice made here (explicit, or the
    prefixed environment's OS_CACERT, which the store would not read)."""
    if provider is not None and trust_of(provider) == trust:
        return {}
    if not trust.verify:
        return {"verify_tls": False}
    return {"cacert": trust.cacert} if trust.source in ("cacert=", "OS_CACERT") else {}


def _account_credentials(
    loc: SwiftLocation, env: Mapping[str, str], trust: _Trust
) -> tuple[Token | None, CredentialProvider | None]:
    """A token for ``loc``'s account (from the environment), or else (None, a provider)."""
    resolved = swift_credentials(env=env, insecure=trust.insecure, cacert=trust.cacert)
    return for_account(resolved, loc.account)


def for_account(
    resolved: ResolvedAuth, account: str | None
) -> tuple[Token | None, CredentialProvider | None]:
    """A token for ``account`` (None: the credentials' own) of the cluster ``resolved``
    opens, or else (None, a provider whose tokens open it): how ``?account=AUTH_x`` is
    honoured by stores and by the ``swift://`` file system alike."""
    if resolved.token is not None:
        token = resolved.token
        url = _with_account(token.storage_url, account) if account else token.storage_url
        return Token(url, token.token, token.expires_at), None
    provider = resolved.provider
    assert provider is not None  # resolve_credentials gives a token or a provider
    return None, _OtherAccount(provider, account) if account else provider


def open_session(
    url: str,
    *,
    env_prefix: str = "",
    env: Mapping[str, str] | None = None,
    insecure: bool = False,
    cacert: str | None = None,
) -> SwiftSession:
    """The process's ``SwiftSession`` for the account of ``swift://[CONTAINER/...][?account=]``
    (authenticating once per process, blocking), with a store's default transport options:
    for account-level requests (``swift.account.list_containers``)."""
    env = prefixed_env(env_prefix, env)
    choice = _Trust(insecure, cacert)
    token, provider = _account_credentials(parse_swift_url(url), env, choice)
    trust = choice.resolve(env, provider)
    if token is None:
        assert provider is not None
        token = cached_authenticate(provider)
    return get_session(token, provider, TransportOptions(verify_tls=trust.verify, trust=trust))


def swift_credentials(
    env_prefix: str = "",
    env: Mapping[str, str] | None = None,
    *,
    insecure: bool = False,
    cacert: str | None = None,
) -> ResolvedAuth:
    """The ResolvedAuth the environment (with ``env_prefix``) gives (for ``swiftzarr token``);
    ``insecure``/``cacert``: the explicit certificate choice of its providers."""
    return resolve_credentials(
        authurl=None,
        user=None,
        key=None,
        preauthurl=None,
        preauthtoken=None,
        verify_tls=not insecure,
        cacert=cacert,
        env=prefixed_env(env_prefix, env),
    )
