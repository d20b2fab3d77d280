"""What one HTTP/1.1 exchange of the data path is made of: where it goes (``Endpoint``), the
request head (``request_head``), the response (``HTTPResponse`` with case-insensitive
``Headers``) and the two ways it can fail (``ConnectionFailed``, ``TLSFailure``).

Why apart from ``http1``: these are plain values, usable (and testable) without a connection;
``http1`` is the machinery that moves them (the protocol parser, the pool, the stall watchdog)
and re-exports them, so callers import from one place. The request head is built here so that
header injection (a CR/LF in a name or value) is refused in exactly one place;
``Headers.__repr__`` shows names only, since values may be tokens.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, TypeVar, overload
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from swiftzarr_batch.swift.body_digest import BodyDigest
    from swiftzarr_batch.swift.proxy import Proxy

__all__ = [
    "USER_AGENT",
    "ConnectionFailed",
    "Endpoint",
    "HTTPResponse",
    "Headers",
    "TLSFailure",
    "request_head",
]

USER_AGENT = "swiftzarr_batch"

_T = TypeVar("_T")


class ConnectionFailed(Exception):
    """No complete, well-formed response (reset, closed early, stalled, malformed)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TLSFailure(Exception):
    """The TLS handshake failed (certificate not trusted, wrong protocol): retrying won't help."""


class Headers(Mapping[str, str]):
    """Response headers: case-insensitive lookups; the first value of a repeated name wins."""

    __slots__ = ("_items", "_lower")

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items
        # built once per response, on the data path: a comprehension, first value last so it wins
        self._lower = {name.lower(): value for name, value in reversed(items)}

    def __getitem__(self, name: str) -> str:
        return self._lower[name.lower()]

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: str | _T) -> str | _T: ...
    def get(self, name: str, default: object = None) -> object:
        """Case-insensitive lookup: the first value of ``name``, or ``default`` when absent."""
        return self._lower.get(name.lower(), default)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._lower

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items)

    def __len__(self) -> int:
        return len(self._items)

    # A list, not Mapping's ItemsView: it keeps repeated names and their order, which a view
    # over the case-insensitive lookup would fold into one.
    def items(self) -> list[tuple[str, str]]:  # type: ignore[override]
        """Every (name, value) pair as received: repeated names and their order kept."""
        return list(self._items)

    def __repr__(self) -> str:  # names only: values may be tokens
        return f"Headers({[name for name, _ in self._items]!r})"


class HTTPResponse:
    """One response. ``digest``: the body's MD5 being computed as it arrived
    (``body_digest.BodyDigest``), when the request asked for it and the body was large."""

    __slots__ = ("body", "digest", "headers", "reason", "status")

    def __init__(self, status: int, reason: str, headers: Headers, body: bytes | bytearray):
        self.status, self.reason, self.headers, self.body = status, reason, headers, body
        self.digest: BodyDigest | None = None


class Endpoint:
    """Where a pool connects: scheme, host, port and TLS context, from a base URL.

    ``ssl_context`` is the client context of an https URL (``swift.tls.Trust.ssl_context()``,
    the one every client of a store shares); without one, the system's defaults. ``proxy``: the
    forward proxy on the way (``swift.proxy.proxy_for``), None to connect directly.
    """

    def __init__(
        self,
        url: str,
        *,
        verify_tls: bool = True,
        ssl_context: ssl.SSLContext | None = None,
        proxy: Proxy | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.scheme, self.host = parts.scheme, parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        default = self.port == (443 if parts.scheme == "https" else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.host_header = host if default else f"{host}:{self.port}"
        self.base_path = parts.path.rstrip("/")
        self.proxy = proxy
        self.ssl: ssl.SSLContext | None = None
        if parts.scheme == "https" and ssl_context is not None:
            self.ssl = ssl_context  # shared: never changed here
        elif parts.scheme == "https":
            self.ssl = ssl.create_default_context()
            if not verify_tls:
                self.ssl.check_hostname = False
                self.ssl.verify_mode = ssl.CERT_NONE

    def same_server(self, other: Endpoint) -> bool:
        """Whether ``other`` is the same scheme, host and port (the same connection pool)."""
        return (self.scheme, self.host, self.port) == (other.scheme, other.host, other.port)


def request_head(
    method: str, target: str, host: str, headers: Mapping[str, str] | None, length: int | None
) -> bytes:
    """The request line and headers; refuses CR/LF in any part (header injection).

    Checked in C over all the header lines at once, not header by header (this runs for every
    request of the data path): a line break smuggled into a name or value shows as more line
    ends than lines; names are checked once each (``_checked_names``).
    """
    if " " in target or "\r" in target or "\n" in target:
        raise ValueError(f"request target must be percent-encoded: {target!r}")
    fields = ""
    if headers:
        lines = [f"{name}: {value}\r\n" for name, value in headers.items() if name.lower() != _CL]
        fields = "".join(lines)
        if (
            fields.count("\n") != len(lines)
            or fields.count("\r") != len(lines)
            or not _checked_names.issuperset(headers)
        ):
            _check_fields(headers)
    if length is not None:
        fields += f"Content-Length: {length}\r\n"
    return (
        f"{method} {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\n{fields}\r\n"
    ).encode()


_CL = "content-length"  # always computed by request_head, whatever the caller gave
_checked_names: set[str] = set()  # header names known to hold no line break and no colon
_MAX_CHECKED_NAMES = 4096  # metadata names are the caller's: remember a bounded number


def _check_fields(headers: Mapping[str, str]) -> None:
    """Name the header that smuggles a line break (or a colon into its name); remember the
    names that are fine."""
    for name, value in headers.items():
        value = str(value)
        if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
            raise ValueError(f"header {name!r} has a line break or colon where none may be")
        if len(_checked_names) < _MAX_CHECKED_NAMES:
            _checked_names.add(name)
