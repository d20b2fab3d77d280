"""Swift v1 auth (TempAuth, swauth, Keystone's v1 shim): user + key to a storage URL + token.

``acquire_token`` is the original zarrswift helper. A ``V1Password`` never logs, formats or
pickles its key unless built with ``travels=True`` (the user's explicit choice).
"""

from __future__ import annotations

import hashlib
import logging
import time

from swiftzarr_batch.auth.providers import AUTH_RETRY, auth_request
from swiftzarr_batch.errors import AuthenticationError
from swiftzarr_batch.swift.status import Outcome, classify
from swiftzarr_batch.swift.tokens import Token

__all__ = ["DEFAULT_TOKEN_LIFE", "V1Password", "acquire_token"]

log = logging.getLogger(__name__)

DEFAULT_TOKEN_LIFE = 24 * 60 * 60


class V1Password:
    """Swift v1 auth (TempAuth, swauth, or Keystone's v1 shim) with user and key."""

    def __init__(
        self,
        authurl: str,
        user: str,
        key: str,
        *,
        token_life: int | None = None,
        verify_tls: bool = True,
        timeout: float = 30.0,
        travels: bool = False,
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

    def __reduce__(self):
        if self.travels:
            return (
                _travelling_v1,
                (
                    self.authurl,
                    self.user,
                    self._key,
                    self.token_life,
                    self.verify_tls,
                    self.timeout,
                ),
            )
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
        for attempt in AUTH_RETRY.retrying():
            with attempt:
                return self._authenticate_once(headers)
        raise AssertionError("unreachable")  # pragma: no cover

    def _authenticate_once(self, headers: dict[str, str]) -> Token:
        resp = auth_request(
            "GET",
            self.authurl,
            what=f"auth URL {self.authurl}",
            verify_tls=self.verify_tls,
            timeout=self.timeout,
            headers=headers,
        )
        outcome = classify(resp.status_code)
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
        log.debug(
            "authenticated %s at %s (token expires in %s s)", self.user, self.authurl, expires
        )
        return Token(url, token, expires_at)


def _travelling_v1(
    authurl: str, user: str, key: str, token_life: int | None, verify_tls: bool, timeout: float
) -> V1Password:
    return V1Password(
        authurl,
        user,
        key,
        token_life=token_life,
        verify_tls=verify_tls,
        timeout=timeout,
        travels=True,
    )


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
