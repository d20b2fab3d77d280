"""Which forward proxy a request goes through, and how the data path talks through one.

Why here, once: at a site with a proxy, ``requests`` (auth, ``store.conn``) honoured
``HTTPS_PROXY``/``HTTP_PROXY`` while the data path (``http1``) connected directly, so auth
worked and every chunk failed (or went around the proxy the site requires). Now both ask this
module, which reads the environment the way ``requests``/``urllib`` do:

* ``HTTP_PROXY`` for http:// URLs, ``HTTPS_PROXY`` for https://, ``ALL_PROXY`` for either when
  the scheme's own is unset; lower-case names win over upper-case ones, an empty value unsets
  (``urllib.request.getproxies_environment``, used as is);
* ``NO_PROXY``: comma-separated hosts, domains (``example.org`` and ``.example.org`` both match
  ``a.example.org``), ``host:port``, IP networks (``10.0.0.0/8``, as ``requests``) or ``*``;
* an explicit choice (``SwiftStore(proxy=...)``, ``TransportOptions.proxy``) wins over all of
  them, for every host: a URL, or ``False``/``""`` for no proxy at all.

A proxy is ``http://[user:password@]host[:port]`` (port 80 when none is given, as in
``requests``). Through it, an http://
endpoint's requests use the absolute form (``GET http://host:port/path``) with
``Proxy-Authorization`` on each; an https:// endpoint gets a ``CONNECT host:port`` tunnel per
connection, with TLS to Swift inside it (checked against Swift's name, with ``swift.tls``'s
trust): the proxy sees only the host name. Keep-alive and the stall watchdog work unchanged on
the resulting connection. The proxy's credentials are never shown: a ``Proxy`` prints as
``http://host:port``, which is how every error names it.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import ssl
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar
from urllib.parse import quote, unquote, urlsplit

# urllib's NO_PROXY matching (host, domain suffix, host:port, ``*``); typeshed omits it
from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]

from swiftzarr_batch.errors import ConfigurationError, ProxyError
from swiftzarr_batch.swift.http_messages import USER_AGENT, ConnectionFailed, TLSFailure

if TYPE_CHECKING:
    from swiftzarr_batch.swift.http_messages import Endpoint

__all__ = [
    "Proxy",
    "ProxyOption",
    "absolute_form",
    "connect",
    "parse_proxy",
    "proxy_choice",
    "proxy_for",
    "refused",
    "requests_proxies",
    "route_swiftclient",
]

_P = TypeVar("_P", bound=asyncio.BaseProtocol)
_MAX_CONNECT_HEAD = 16 * 1024  # a proxy's answer to CONNECT larger than this is refused


@dataclass(frozen=True, repr=False)
class Proxy:
    """An http:// forward proxy. ``str()``/``repr()`` show ``http://host:port`` only."""

    host: str
    port: int
    username: str = field(default="", compare=True)
    password: str = field(default="", compare=True)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def __repr__(self) -> str:
        return f"Proxy({str(self)!r}{', with credentials' if self.username else ''})"

    def authorization(self) -> str | None:
        """The ``Proxy-Authorization`` value (basic), None without credentials."""
        if not self.username:
            return None
        pair = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(pair).decode("ascii")

    def url(self) -> str:
        """The URL with its credentials, for ``requests`` only (never for a message)."""
        if not self.username:
            return str(self)
        who = f"{quote(self.username, safe='')}:{quote(self.password, safe='')}"
        return str(self).replace("http://", f"http://{who}@", 1)


ProxyOption = Proxy | str | bool | None
"""What ``proxy=`` takes: a ``Proxy`` or its URL; ``False``/``""`` for none; None for the
environment's (``HTTP_PROXY``...)."""


def parse_proxy(url: str, source: str = "proxy=") -> Proxy:
    """``url`` (``http://[user:password@]host:port``; ``host:port`` means http) as a ``Proxy``,
    or a ConfigurationError naming ``source`` and never the credentials."""
    text = url.strip()
    if "://" not in text:
        text = "http://" + text  # requests' reading of a bare host:port
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ConfigurationError(f"proxy from {source} is not a valid URL") from None
    if not parts.hostname:
        raise ConfigurationError(f"proxy from {source} has no host")
    shown = f"{parts.scheme}://{parts.hostname}" + (f":{port}" if port else "")
    if parts.scheme != "http":
        raise ConfigurationError(
            f"proxy {shown} (from {source}): only http:// proxies are supported (https:// "
            "URLs go through one with CONNECT)"
        )
    return Proxy(
        parts.hostname,
        port or 80,
        unquote(parts.username or ""),
        unquote(parts.password or ""),
    )


def proxy_choice(option: ProxyOption) -> Proxy | Literal[False] | None:
    """``option`` normalized: a ``Proxy``, ``False`` (none) or None (the environment's)."""
    if option is None or isinstance(option, Proxy):
        return option
    if option is False or option == "":
        return False
    if isinstance(option, str) and option:
        return parse_proxy(option)
    raise ConfigurationError(
        "proxy= takes a proxy URL, False (no proxy) or None (HTTP_PROXY/HTTPS_PROXY/NO_PROXY)"
    )


def _bypassed(host: str, port: int, no_proxy: str) -> bool:
    """Whether ``NO_PROXY`` exempts ``host:port`` (urllib's rules, plus requests' networks)."""
    if proxy_bypass_environment(f"{host}:{port}", {"no": no_proxy}):
        return True
    if proxy_bypass_environment(host, {"no": no_proxy}):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    for entry in no_proxy.split(","):
        entry = entry.strip()
        if "/" in entry:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


def proxy_for(url: str, option: ProxyOption = None) -> Proxy | None:
    """The proxy a request to ``url`` goes through: the explicit ``option``, else the
    environment's (module docstring), None for a direct connection."""
    choice = proxy_choice(option)
    if choice is not None:
        return choice or None
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    proxies = urllib.request.getproxies_environment()
    chosen = proxies.get(scheme) or proxies.get("all")
    if not chosen or not parts.hostname:
        return None
    port = parts.port or (443 if scheme == "https" else 80)
    if _bypassed(parts.hostname, port, proxies.get("no", "")):
        return None
    return parse_proxy(chosen, f"{scheme.upper()}_PROXY")


def requests_proxies(url: str, option: ProxyOption = None) -> dict[str, str | None]:
    """``requests``' ``proxies=`` for ``url``: the proxy ``proxy_for`` picks, or a mapping that
    turns off the environment's (``None`` values), so auth goes exactly where data goes."""
    proxy = proxy_for(url, option)
    if proxy is None:
        return {"http": None, "https": None, "all": None}
    return {"http": proxy.url(), "https": proxy.url()}


def absolute_form(
    endpoint: Endpoint, target: str, headers: Mapping[str, str] | None
) -> tuple[str, Mapping[str, str] | None]:
    """An http:// request through ``endpoint.proxy``: the absolute-form target and the
    headers with ``Proxy-Authorization`` (when the proxy has credentials)."""
    assert endpoint.proxy is not None
    target = f"http://{endpoint.host_header}{target}"
    auth = endpoint.proxy.authorization()
    if auth is not None:
        headers = {**(headers or {}), "Proxy-Authorization": auth}
    return target, headers


class _Tunnel(asyncio.Protocol):
    """Reads the proxy's answer to CONNECT (a head and nothing after it)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.transport: asyncio.Transport | None = None
        self.head: asyncio.Future[bytes] = loop.create_future()
        self._buf = bytearray()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.head.done():  # never: TLS takes the transport over before the loop runs again
            return
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if end >= 0:
            if end + 4 != len(self._buf):
                self.head.set_exception(ConnectionFailed("proxy sent data after its answer"))
            else:
                self.head.set_result(bytes(self._buf[:end]))
        elif len(self._buf) > _MAX_CONNECT_HEAD:
            self.head.set_exception(ConnectionFailed("proxy answer to CONNECT too large"))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.head.done():
            self.head.set_exception(ConnectionFailed("proxy closed the connection"))


async def connect(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], _P],
    endpoint: Endpoint,
    timeout: float,
) -> _P:
    """A connection to ``endpoint`` through ``endpoint.proxy``, with protocol ``factory()``:
    to the proxy itself for http://, a ``CONNECT`` tunnel with TLS inside for https://.

    ``timeout`` bounds all of it (connect, CONNECT, TLS handshake). Fails with
    ``ConnectionFailed`` (retried by the caller: the proxy is unreachable or went away),
    ``ProxyError`` (the proxy refused: 407, 403, 502..., not worth retrying) or ``TLSFailure``
    (Swift's certificate), each naming the proxy as ``http://host:port``.
    """
    proxy = endpoint.proxy
    assert proxy is not None
    origin = f"{endpoint.host}:{endpoint.port}"
    via = f"{origin} through proxy {proxy}"
    try:
        async with asyncio.timeout(timeout):
            if endpoint.ssl is None:
                _, protocol = await loop.create_connection(factory, proxy.host, proxy.port)
                return protocol
            transport, tunnel = await loop.create_connection(
                lambda: _Tunnel(loop), proxy.host, proxy.port
            )
            try:
                protocol = factory()
                tls = await _through(loop, transport, tunnel, protocol, endpoint, proxy)
            except BaseException:
                transport.abort()
                raise
            protocol.connection_made(tls)
            return protocol
    except ProxyError:  # an OSError too (SwiftHTTPError): it names the proxy already
        raise
    except ssl.SSLCertVerificationError as exc:
        raise TLSFailure(
            f"TLS verification of {endpoint.host} (through proxy {proxy}) failed "
            f"({exc.verify_message or exc.reason})"
        ) from None
    except ssl.SSLError as exc:
        raise TLSFailure(
            f"TLS handshake with {via} failed ({exc.reason or type(exc).__name__})"
        ) from None
    except TimeoutError:
        raise ConnectionFailed(f"connect to {via} timed out") from None
    except ConnectionFailed as exc:
        raise ConnectionFailed(f"connect to {via}: {exc.reason}") from None
    except OSError as exc:
        raise ConnectionFailed(f"connect to {via}: {type(exc).__name__}") from None


async def _through(
    loop: asyncio.AbstractEventLoop,
    transport: asyncio.Transport,
    tunnel: _Tunnel,
    protocol: asyncio.BaseProtocol,
    endpoint: Endpoint,
    proxy: Proxy,
) -> asyncio.Transport:
    """Ask for the tunnel; on 200, TLS with Swift inside it (its name checked)."""
    host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
    lines = [f"CONNECT {host}:{endpoint.port} HTTP/1.1", f"Host: {host}:{endpoint.port}"]
    lines.append(f"User-Agent: {USER_AGENT}")
    if (auth := proxy.authorization()) is not None:
        lines.append(f"Proxy-Authorization: {auth}")
    transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    head = (await tunnel.head).decode("latin-1")
    status_line = head.split("\r\n", 1)[0].split(" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith("HTTP/1.") or len(status_line[1]) != 3:
        raise ConnectionFailed("malformed answer to CONNECT")
    status = int(status_line[1]) if status_line[1].isdigit() else 0
    if not 200 <= status < 300:
        raise refused(endpoint, status, status_line[2] if len(status_line) > 2 else "")
    assert endpoint.ssl is not None
    tls = await loop.start_tls(
        transport, protocol, endpoint.ssl, server_hostname=endpoint.host, ssl_handshake_timeout=None
    )
    assert tls is not None
    return tls


def refused(endpoint: Endpoint, status: int, reason: str, what: str = "CONNECT") -> ProxyError:
    """The typed error of ``endpoint.proxy`` answering ``status`` to ``what`` (CONNECT, or an
    http:// request's 407): names the proxy, says what to do, never shows credentials."""
    proxy = endpoint.proxy
    assert proxy is not None
    what = f"proxy {proxy} refused {what} to {endpoint.host}:{endpoint.port}: {status} {reason}"
    if status == 407:
        hint = (
            "the proxy wants credentials: give them in its URL (http://user:password@host:port)"
            if not proxy.username
            else "the proxy did not accept the credentials in its URL"
        )
    elif status in (502, 503, 504):
        hint = "it could not reach the server; is that port allowed (tinyproxy: ConnectPort)?"
    elif status == 403:
        hint = "the proxy does not allow this destination"
    else:
        hint = "the proxy would not open a tunnel"
    return ProxyError(f"{what.rstrip()} ({hint})", status=status)


def route_swiftclient(conn: Any, option: ProxyOption) -> None:
    """Make python-swiftclient's ``Connection`` ``conn`` use the proxy ``proxy_for`` picks.

    Why patched in: its ``Connection`` has no proxy option (its ``HTTPConnection`` has one, but
    only for URLs of the proxy's own scheme and dropping credentials); left alone, ``requests``
    under it reads the environment itself and ignores an explicit ``proxy=``.
    """
    make = conn.http_connection

    def http_connection(url: str | None = None) -> Any:
        parsed, http = make(url)
        http.requests_args["proxies"] = requests_proxies(parsed.geturl(), option)
        return parsed, http

    conn.http_connection = http_connection
