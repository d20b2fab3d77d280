"""Swift v1 auth (TempAuth, swauth, Keystone's v1 shim): user + key to a storage URL + token.

Why its own module: v1 is one GET with ``X-Auth-User``/``X-Auth-Key`` headers answered by
``X-Storage-Url``/``X-Auth-Token``, nothing like Keystone's catalog; what both share (the request
function, retries, the secret rules) is ``providers``'. ``acquire_token`` is the original
zarrswift helper. A ``V1Password`` never logs, formats or pickles its key unless built with
``travels=True`` (the user's explicit choice).
"""

from __future__ import annotations

import logging
import os
import time

from swiftzarr_batch.auth.providers import (
    SecretProvider,
    auth_request,
    secret_digest,
    warn_unverified,
)
from swiftzarr_batch.errors import AuthenticationError
from swiftzarr_batch.swift.proxy import ProxyOption, proxy_choice
from swiftzarr_batch.swift.status import Outcome, classify
from swiftzarr_batch.swift.tls import Trust, resolve_trust
from swiftzarr_batch.swift.tokens import Token

__all__ = ["DEFAULT_TOKEN_LIFE", "V1Password", "acquire_token"]

log = logging.getLogger(__name__)

DEFAULT_TOKEN_LIFE = 24 * 60 * 60


class V1Password(SecretProvider):
    """Swift v1 auth (TempAuth, swauth, or Keystone's v1 shim) with user and key."""

    def __init__(
        self,
        authurl: str,
        user: str,
        key: str,
        *,
        token_life: int | None = None,
        verify_tls: bool = True,
        cacert: str | os.PathLike[str] | None = None,
        trust: Trust | None = None,
        timeout: float = 30.0,
        travels: bool = False,
        proxy: ProxyOption = None,
    ) -> None:
        self.authurl = authurl
        self.proxy = proxy_choice(proxy)  # ``swift.proxy``: None, the environment's
        self.user = user
        self._key = key
        self.token_life = token_life
        #: whose certificates are trusted (``swift.tls``): ``trust`` as resolved elsewhere, or
        #: from ``cacert``/``verify_tls`` and the environment, now (a bad bundle fails here)
        self.trust = trust or resolve_trust(cacert, verify_tls=verify_tls)
        self.verify_tls = self.trust.verify
        self.timeout = timeout
        self.travels = travels  # True: the user allows the key to be pickled to dask workers
        warn_unverified(self.trust, "auth URL", authurl)

    def __repr__(self) -> str:
        return f"V1Password(authurl={self.authurl!r}, user={self.user!r}, key=***)"

    def cache_key(self) -> tuple[str, str, str]:
        """Auth URL, user and a digest of the key (never the key): stores with the same credentials
        share one token per process."""
        return (self.authurl, self.user, secret_digest(self._key))

    def authenticate_once(self) -> Token:
        """GET the auth URL with X-Auth-User/X-Auth-Key (``authenticate`` retries it)."""
        headers = {"X-Auth-User": self.user, "X-Auth-Key": self._key}
        if self.token_life:
            headers["X-Auth-Lifetime"] = str(int(self.token_life))
        resp = auth_request(
            "GET",
            self.authurl,
            what=f"auth URL {self.authurl}",
            trust=self.trust,
            timeout=self.timeout,
            proxy=self.proxy,
            headers=headers,
        )
        outcome = classify(resp.status)
        if outcome is not Outcome.OK:
            raise AuthenticationError(
                f"authentication of user {self.user!r} at {self.authurl} was refused "
                f"({resp.status} {resp.reason}); check the user and key"
            )
        url, token = resp.headers.get("X-Storage-Url"), resp.headers.get("X-Auth-Token")
        if not url or not token:
            raise AuthenticationError(
                f"auth URL {self.authurl} answered {resp.status} without a storage URL and "
                "token; is this a Swift v1 auth endpoint?"
            )
        expires = resp.headers.get("X-Auth-Token-Expires")  # seconds left, not a timestamp
        expires_at = time.time() + float(expires) if expires else None
        log.debug(
            "authenticated %s at %s (token expires in %s s)", self.user, self.authurl, expires
        )
        return Token(url, token, expires_at)


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
