"""From a ``SwiftStore``'s arguments to its credentials and trust, in one decision.

Why apart from the store: which provider, which starting token and whose certificates to trust
follow from a handful of arguments (anonymous, a provider, or the credential chain) whatever
the store then does with them; the store keeps its data path.
"""

from __future__ import annotations

import os

from swiftzarr_batch.auth import CredentialProvider, Token, resolve_credentials
from swiftzarr_batch.auth.providers import route_through
from swiftzarr_batch.errors import ConfigurationError
from swiftzarr_batch.swift.proxy import ProxyOption, proxy_choice
from swiftzarr_batch.swift.tls import Trust, resolve_trust, trust_of

__all__ = ["store_auth"]


def store_auth(
    *,
    authurl: str | None,
    user: str | None,
    key: str | None,
    preauthurl: str | None,
    preauthtoken: str | None,
    credential_provider: CredentialProvider | None,
    anonymous: bool,
    verify_tls: bool,
    cacert: str | os.PathLike[str] | None,
    proxy: ProxyOption,
) -> tuple[CredentialProvider | None, Token | None, Trust]:
    """(provider, token to start with, trust) of a store: anonymous (a public container, no
    credentials at all), the caller's provider, or the credential chain (arguments, then the
    environment); auth requests follow the data's proxy, and the data trusts what auth trusts
    unless ``cacert``/``verify_tls`` say otherwise."""
    provider: CredentialProvider | None
    token: Token | None
    if anonymous:
        if any((authurl, user, key, preauthtoken, credential_provider)) or not preauthurl:
            raise ConfigurationError(
                "anonymous=True reads a public container with no credentials at all: give "
                "only preauthurl (the account's storage URL), no token, user or key"
            )
        provider, token = None, Token(preauthurl.rstrip("/"), "")
    elif credential_provider is not None:
        provider, token = credential_provider, None
    else:
        resolved = resolve_credentials(
            authurl=authurl,
            user=user,
            key=key,
            preauthurl=preauthurl,
            preauthtoken=preauthtoken,
            verify_tls=verify_tls,
            cacert=cacert,
        )
        provider, token = resolved.provider, resolved.token
        route_through(provider, proxy_choice(proxy))  # auth goes where data goes
    # the auth's trust, when no explicit choice overrides it: data goes where auth said
    trust = trust_of(provider) if verify_tls and not cacert else None
    trust = trust or resolve_trust(cacert, verify_tls=verify_tls)
    return provider, token, trust
