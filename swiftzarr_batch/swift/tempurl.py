"""Signed links (Swift temp URLs): signing one for a prefix, reading one back, and the key.

Why prefix-scoped: a zarr dataset is many objects under one prefix, and Swift's
``temp_url_prefix`` signs them all with one signature, so one URL is the whole dataset. The
HMAC is computed here from the ``Temp-URL-Key`` metadata of the account or the container; the
link carries only the signature, its expiry and the prefix, never the key. Which digest:
whatever the cluster's ``/info`` lists in ``tempurl.allowed_digests`` (SHA-256 preferred, then
SHA-512; SHA-1 is never used).

Nothing here logs or formats a key or a signature: errors name the container, the prefix and
the expiry time only.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlencode, urlsplit

from swiftzarr_batch.errors import (
    ChangeNotAppliedError,
    ConfigurationError,
    PermissionDeniedError,
    TokenExpiredError,
)
from swiftzarr_batch.swift.names import quote_path

if TYPE_CHECKING:
    from swiftzarr_batch.swift.session import SwiftSession

__all__ = [
    "LINK_PARAMS",
    "SIGNABLE_METHODS",
    "SignedLink",
    "choose_digest",
    "expiry_text",
    "link_refused",
    "parse_duration",
    "parse_link",
    "sign_object",
    "sign_prefix",
    "temp_url_key",
]

#: Query parameters of a signed link (the ones that must go with every request).
LINK_PARAMS = ("temp_url_sig", "temp_url_expires", "temp_url_prefix")
#: Methods a link may be signed for (Swift's tempurl default ``methods``, without DELETE/POST).
SIGNABLE_METHODS = ("GET", "HEAD", "PUT")
PREFERRED_DIGESTS = ("sha256", "sha512")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
#: Metadata holding Temp-URL keys, as HEAD returns them (Swift accepts a second key, "-2",
#: so a key can be rotated without breaking the links signed with the other).
ACCOUNT_KEYS = ("X-Account-Meta-Temp-Url-Key", "X-Account-Meta-Temp-Url-Key-2")
CONTAINER_KEYS = ("X-Container-Meta-Temp-Url-Key", "X-Container-Meta-Temp-Url-Key-2")


@dataclass(frozen=True)
class SignedLink:
    """A dataset link: where it points and, for a temp URL, the signature query.

    ``query`` is empty for a public (unsigned) link; ``expires_at`` is a UNIX time or None.
    """

    storage_url: str
    container: str
    prefix: str
    query: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    expires_at: float | None = None

    @property
    def signed(self) -> bool:
        """Whether the link carries a TempURL signature (otherwise: a public-read container)."""
        return bool(self.query)

    @property
    def url(self) -> str:
        """The URL to hand out (it holds the signature: it is the link's secret)."""
        path = f"{self.storage_url}/{quote_path(self.container)}"
        if self.prefix:
            path += f"/{quote(self.prefix, safe='/')}/"
        return f"{path}?{urlencode(self.query, safe='/')}" if self.query else path


def parse_duration(value: str | float | timedelta) -> float:
    """Seconds of ``"7d"``, ``"12h"``, ``"30m"``, ``"2s"``, ``"1w"``, a number or a timedelta."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.match(value)
        if not match:
            raise ConfigurationError(
                f"cannot read the duration {value!r}: give e.g. 7d, 12h, 30m, 90s or seconds"
            )
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    if seconds <= 0:
        raise ConfigurationError(f"a link must be valid for some time, got {value!r}")
    return seconds


def expiry_text(expires_at: float) -> str:
    """UNIX time ``expires_at`` as ISO 8601 UTC (``2026-01-31T12:00:00Z``), for messages
    that tell users when a link expires."""
    return datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def choose_digest(info: Mapping[str, Any], wanted: str | None = None) -> str:
    """The HMAC digest to sign with, from ``/info`` (``{}``: the cluster hides it, assume
    Swift's default, which allows SHA-256)."""
    if not info:
        allowed: list[str] = list(PREFERRED_DIGESTS)
    else:
        tempurl = info.get("tempurl")
        if not isinstance(tempurl, dict):
            raise ConfigurationError(
                "this Swift has no tempurl middleware (its /info lists none): it cannot "
                "serve signed links; make the container public instead"
            )
        allowed = [str(d) for d in tempurl.get("allowed_digests", PREFERRED_DIGESTS)]
    if wanted is not None:
        if wanted not in allowed or wanted not in PREFERRED_DIGESTS:
            raise ConfigurationError(
                f"digest {wanted!r} is not allowed here; the cluster allows {allowed}"
            )
        return wanted
    for digest in PREFERRED_DIGESTS:
        if digest in allowed:
            return digest
    raise ConfigurationError(
        f"the cluster allows only {allowed} for temp URLs; this client signs with SHA-256 or "
        "SHA-512 only (SHA-1 is deprecated)"
    )


def _account(storage_url: str) -> str:
    account = unquote(urlsplit(storage_url).path.rstrip("/").rsplit("/", 1)[-1])
    if not account:
        raise ConfigurationError("the storage URL names no account")
    return account


def sign_prefix(
    key: str,
    *,
    storage_url: str,
    container: str,
    prefix: str,
    method: str,
    expires_at: int,
    digest: str,
) -> SignedLink:
    """A link to every object under ``prefix`` (normalized, no slashes around) of ``container``.

    The signature covers ``prefix/`` (with the slash), so a neighbour ``prefix2/...`` is not
    readable with it; an empty prefix signs the whole container.
    """
    method = method.upper()
    if method not in SIGNABLE_METHODS:
        raise ConfigurationError(f"cannot sign a link for {method}; use one of {SIGNABLE_METHODS}")
    scope = f"{prefix}/" if prefix else ""
    body = f"{method}\n{expires_at}\nprefix:/v1/{_account(storage_url)}/{container}/{scope}"
    sig = hmac.new(key.encode("utf-8"), body.encode("utf-8"), getattr(hashlib, digest))
    query = (
        ("temp_url_sig", sig.hexdigest()),
        ("temp_url_expires", str(expires_at)),
        ("temp_url_prefix", scope),
    )
    return SignedLink(storage_url.rstrip("/"), container, prefix, query, float(expires_at))


def sign_object(
    key: str,
    *,
    storage_url: str,
    container: str,
    name: str,
    method: str,
    expires_at: int,
    digest: str,
) -> str:
    """A temp URL of the one object ``container/name`` (the file system's ``sign()``): the
    full URL with its signature and expiry, for ``method`` only."""
    method = method.upper()
    if method not in SIGNABLE_METHODS:
        raise ConfigurationError(f"cannot sign a link for {method}; use one of {SIGNABLE_METHODS}")
    path = f"/v1/{_account(storage_url)}/{container}/{name}"
    sig = hmac.new(key.encode("utf-8"), f"{method}\n{expires_at}\n{path}".encode(), digest)
    query = urlencode({"temp_url_sig": sig.hexdigest(), "temp_url_expires": str(expires_at)})
    return f"{storage_url.rstrip('/')}/{quote_path(container, name)}?{query}"


def parse_link(url: str) -> SignedLink:
    """``https://host/v1/AUTH_x/container/prefix/[?temp_url_sig=...]`` -> its parts.

    The account is the path segment after ``v1`` (a proxy may serve Swift under a longer path,
    e.g. ``/swift/v1/AUTH_x``). A signed link's prefix is the one it was signed for.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(f"not an http(s) link to a Swift dataset: {_safe(url)!r}")
    segments = parts.path.split("/")
    try:
        at = segments.index("v1")
    except ValueError:
        raise ConfigurationError(
            f"{_safe(url)!r} is not a Swift object URL (.../v1/ACCOUNT/CONTAINER/PREFIX)"
        ) from None
    if len(segments) < at + 3 or not segments[at + 1] or not segments[at + 2]:
        raise ConfigurationError(f"{_safe(url)!r} names no account and container")
    storage_url = f"{parts.scheme}://{parts.netloc}{'/'.join(segments[: at + 2])}"
    container = unquote(segments[at + 2])
    path_prefix = unquote("/".join(segments[at + 3 :])).strip("/")
    qs = parse_qs(parts.query, keep_blank_values=True)
    if not any(name in qs for name in LINK_PARAMS):
        return SignedLink(storage_url, container, path_prefix)
    if "temp_url_sig" not in qs or "temp_url_expires" not in qs:
        raise ConfigurationError("a signed link needs both temp_url_sig and temp_url_expires")
    signed_prefix = qs.get("temp_url_prefix", [None])[0]
    if signed_prefix is None:
        raise ConfigurationError(
            "this link signs one object, not a dataset (no temp_url_prefix): ask for a "
            "prefix link (`swiftzarr share swift://CONTAINER/PREFIX`)"
        )
    if path_prefix and not f"{path_prefix}/".startswith(signed_prefix):
        raise PermissionDeniedError(
            f"the link's path ({container}/{path_prefix}) is outside the prefix it is signed "
            f"for ({signed_prefix!r})"
        )
    try:
        expires_at = float(qs["temp_url_expires"][0])
    except ValueError:  # Swift also accepts ISO 8601
        stamp = qs["temp_url_expires"][0].replace("Z", "+00:00")
        try:
            expires_at = datetime.fromisoformat(stamp).timestamp()
        except ValueError:
            raise ConfigurationError("the link's temp_url_expires is not a time") from None
    query = tuple((name, qs[name][0]) for name in LINK_PARAMS if name in qs)
    return SignedLink(storage_url, container, path_prefix, query, expires_at)


def _safe(url: str) -> str:
    """``url`` without its query (which may hold a signature), for error messages."""
    return url.split("?", 1)[0]


def link_refused(
    expires_at: float | None, method: str, path: str, *, now: float | None = None
) -> TokenExpiredError | PermissionDeniedError:
    """The error for a 401 to a signed-link request: expired (with when), or not signed for it.

    A 401 is never "missing": an expired link must not read as fill values.
    """
    now = time.time() if now is None else now
    if expires_at is not None and now >= expires_at:
        return TokenExpiredError(
            f"{method} {path}: this signed link expired at {expiry_text(expires_at)}; ask for "
            "a new one (`swiftzarr share swift://CONTAINER/PREFIX --expires 7d`)"
        )
    return PermissionDeniedError(
        f"{method} {path} was refused (401) to this signed link: the object is outside the "
        "prefix it was signed for, the request needs another method, or the link's key was "
        "changed (revoked)"
    )


async def temp_url_key(session: SwiftSession, container: str, *, create: bool = False) -> str:
    """The account's Temp-URL key, else the container's; with ``create``, a new container key
    when there is neither (the narrower scope: changing it revokes only this container's
    links). Without ``create`` a missing key is a clear error, nothing is changed."""
    account = await session.request("HEAD", "")
    for name in ACCOUNT_KEYS:
        if account.headers.get(name):
            return account.headers[name]
    path = quote_path(container)
    head = await session.request("HEAD", path)
    if head.status == 404:
        raise ConfigurationError(f"container {container!r} does not exist")
    for name in CONTAINER_KEYS:
        if head.headers.get(name):
            return head.headers[name]
    if not create:
        raise ConfigurationError(
            f"neither the account nor container {container!r} has a Temp-URL-Key: pass "
            "create_key=True (`--create-key`) to set a new container key"
        )
    key = secrets.token_urlsafe(32)
    await session.request("POST", path, headers={CONTAINER_KEYS[0]: key})
    held = (await session.request("HEAD", path)).headers.get(CONTAINER_KEYS[0])
    if held != key:  # read back, as ACL changes are; the values are secrets: never shown
        raise ChangeNotAppliedError(
            f"the Temp-URL key of container {container!r}",
            wanted="a new key",
            held="another key" if held else "no key",
        )
    return key
