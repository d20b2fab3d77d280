"""Authentication: from credentials (arguments, environment, files, Keystone) to a ``Token``.

Why a room of its own: how a token is obtained (which endpoint, which secret, where the secret
comes from) changes per site, while the Swift client only needs "a provider that can give me a
new token". ``v1`` holds Swift v1 auth (TempAuth), ``keystone`` Keystone v3, ``providers`` what
they share (the one auth request function, its retries, the rules for secrets) and the base of
wrapping providers, and ``chain`` the order in which credentials are looked for. The
``Token`` itself and the process-wide token cache are the Swift client's (``swift.tokens``): the
data path carries them and renews them on a 401.
"""

from swiftzarr_batch.auth.chain import (
    CredentialsFile,
    EnvironmentCredentials,
    ResolvedAuth,
    StorageURLOverride,
    check_token_lifetime,
    resolve_credentials,
)
from swiftzarr_batch.auth.keystone import KeystoneApplicationCredential, KeystonePassword
from swiftzarr_batch.auth.v1 import DEFAULT_TOKEN_LIFE, V1Password, acquire_token
from swiftzarr_batch.swift.tokens import (
    CredentialProvider,
    Token,
    auth_calls,
    cached_authenticate,
    count_auth_call,
)

__all__ = [
    "DEFAULT_TOKEN_LIFE",
    "CredentialProvider",
    "CredentialsFile",
    "EnvironmentCredentials",
    "KeystoneApplicationCredential",
    "KeystonePassword",
    "ResolvedAuth",
    "StorageURLOverride",
    "Token",
    "V1Password",
    "acquire_token",
    "auth_calls",
    "cached_authenticate",
    "check_token_lifetime",
    "count_auth_call",
    "resolve_credentials",
]
