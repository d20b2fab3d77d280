"""Which certificates every client trusts: the one place that decides it and builds the context.

Why one place: the data path (``http1``, on ``ssl``), the auth requests (v1 and Keystone, on
``requests``) and ``store.conn`` (python-swiftclient, on ``requests``) each had their own
defaults: ``requests`` reads ``REQUESTS_CA_BUNDLE`` and ships certifi's bundle, ``ssl`` reads
``SSL_CERT_FILE`` and the system store, and none read ``OS_CACERT``. At a site with its own CA,
auth worked and data failed (or the reverse). Here a ``Trust`` is resolved once, in this order,
the first that is set winning, and handed to every client:

1. explicit: ``cacert=`` (a PEM bundle) or ``verify_tls=False`` (``--insecure``,
   ``insecure = true`` in a workflow config);
2. ``OS_CACERT`` (read with the credentials, so ``SRC_OS_CACERT`` for ``env_prefix="SRC_"``),
   then the cloud's ``cacert`` / ``verify: false`` in ``clouds.yaml``;
3. ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``, ``SSL_CERT_FILE`` (process-wide);
4. the system's store (what OpenSSL finds, ``SSL_CERT_DIR`` included), else certifi's bundle.

A CA bundle that is missing or holds no certificate is a ``ConfigurationError`` naming the path
and where it came from, raised when the trust is resolved, before any request. A ``Trust`` holds
a path, never certificates, so it pickles small: dask workers of one site share the file system
and load the same file. Turning verification off logs one WARNING per host and process.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import ssl
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from urllib3.exceptions import InsecureRequestWarning

from swiftzarr_batch.errors import ConfigurationError

__all__ = [
    "BUNDLE_ENV",
    "Trust",
    "resolve_trust",
    "system_trust",
    "trust_for",
    "trust_of",
    "warn_insecure",
]

log = logging.getLogger(__name__)

BUNDLE_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")
"""The standard variables naming a CA bundle, in the order they are honoured (requests' own
order, then OpenSSL's)."""

HOW_TO_TRUST = (
    "give the site's CA bundle (cacert=, OS_CACERT, clouds.yaml cacert or REQUESTS_CA_BUNDLE), "
    "or turn verification off (verify_tls=False, --insecure, insecure = true) only for a "
    "server you trust"
)


@dataclass(frozen=True)
class Trust:
    """What to trust: the CA bundle ``cacert`` (a PEM file or an OpenSSL hashed directory;
    None with ``verify=False``) and where that choice came from (``source``, for messages)."""

    cacert: str | None
    verify: bool = True
    source: str = "the system's CA store"

    def ssl_context(self) -> ssl.SSLContext:
        """The client context of the data path (one per bundle and process, shared: building
        one loads the whole bundle)."""
        return _context(self.cacert, self.verify, self.source)

    def swiftclient_options(self) -> dict[str, object]:
        """python-swiftclient ``Connection``'s ``cacert=``/``insecure=``."""
        return {"cacert": self.cacert if self.verify else None, "insecure": not self.verify}

    def describe(self) -> str:
        """What is trusted and where that choice came from, for messages (never a secret)."""
        if not self.verify:
            return f"certificates are not checked ({self.source})"
        return f"trusting {self.cacert or "OpenSSL's default CAs"} ({self.source})"

    def hint(self) -> str:
        """What to say after a verification failure: what was trusted and how to fix it."""
        return f"{self.describe()}; {HOW_TO_TRUST}"


def _check(path: str | os.PathLike[str], source: str) -> str:
    """``path`` as a usable bundle (absolute), or a ConfigurationError naming it."""
    p = Path(path).expanduser()
    _context(str(p.absolute()), True, source)
    return str(p.absolute())


@functools.lru_cache(maxsize=32)
def _context(cacert: str | None, verify: bool, source: str) -> ssl.SSLContext:
    if not verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        return ctx
    if cacert is None:
        return ssl.create_default_context()
    try:
        if os.path.isdir(cacert):
            ctx = ssl.create_default_context(capath=cacert)
        else:
            ctx = ssl.create_default_context(cafile=cacert)
    except FileNotFoundError:
        raise ConfigurationError(f"CA bundle {cacert} (from {source}) does not exist") from None
    except OSError as exc:
        raise ConfigurationError(
            f"cannot read CA bundle {cacert} (from {source}): {exc.strerror or exc}"
        ) from None
    except ssl.SSLError as exc:
        raise ConfigurationError(
            f"CA bundle {cacert} (from {source}) holds no usable PEM certificate "
            f"({exc.reason or type(exc).__name__})"
        ) from None
    if not os.path.isdir(cacert) and not ctx.cert_store_stats().get("x509_ca"):
        raise ConfigurationError(f"CA bundle {cacert} (from {source}) holds no CA certificate")
    return ctx


def system_trust() -> Trust:
    """Step 4: the system's store as this Python's OpenSSL finds it, else certifi's bundle (so
    that ``requests``, which would use certifi, and ``ssl``, which would use the system's,
    trust the same CAs)."""
    paths = ssl.get_default_verify_paths()
    for path in (paths.cafile, paths.capath):
        if path and os.path.exists(path):
            return Trust(path, True, "the system's CA store")
    try:
        import certifi
    except ImportError:  # pragma: no cover - requests depends on certifi
        return Trust(None, True, "OpenSSL's defaults")
    return Trust(certifi.where(), True, "certifi's CA bundle")


def resolve_trust(
    cacert: str | os.PathLike[str] | None = None,
    *,
    verify_tls: bool = True,
    site: Trust | None = None,
    env: Mapping[str, str] | None = None,
) -> Trust:
    """The ``Trust`` the order in the module docstring gives.

    ``cacert``/``verify_tls``: the explicit choice (both at once is a ConfigurationError).
    ``site``: what a ``clouds.yaml`` cloud says (``Trust(None, False, ...)`` for
    ``verify: false``). ``env``: where ``OS_CACERT`` is read (the credentials' environment,
    ``os.environ`` by default); the standard ``BUNDLE_ENV`` are always ``os.environ``'s.
    """
    env = os.environ if env is None else env
    if not verify_tls:
        if cacert:
            raise ConfigurationError(
                "cacert= and verify_tls=False (--insecure) contradict each other; give one"
            )
        return Trust(None, False, "verify_tls=False")
    if cacert:
        return Trust(_check(cacert, "cacert="), True, "cacert=")
    if env.get("OS_CACERT"):
        return Trust(_check(env["OS_CACERT"], "OS_CACERT"), True, "OS_CACERT")
    if site is not None:
        if not site.verify or site.cacert is None:
            return site
        return Trust(_check(site.cacert, site.source), True, site.source)
    for name in BUNDLE_ENV:
        if os.environ.get(name):
            return Trust(_check(os.environ[name], name), True, name)
    return system_trust()


def trust_of(provider: object) -> Trust | None:
    """The ``Trust`` a credential provider resolved (v1, Keystone and the providers wrapping
    them have a ``trust``), so that data goes to the storage URL with the auth's trust."""
    trust = getattr(provider, "trust", None)
    return trust if isinstance(trust, Trust) else None


_warned: set[tuple[str, str]] = set()
_warned_lock = threading.Lock()


def warn_insecure(trust: Trust, what: str, url: str) -> None:
    """Log one WARNING per process for ``what`` at ``url``'s host when ``trust`` checks no
    certificates (not one per store, session or request: a job opens many)."""
    if trust.verify:
        return
    parts = urlsplit(url)
    key = (what, f"{parts.hostname}:{parts.port}")
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning(
        "TLS certificate verification is OFF for %s %s (%s): anyone on the way can read and "
        "change what is sent",
        what,
        url,
        trust.source,
    )
    # ... and not one per request from urllib3 (auth, ``store.conn``) for this host either
    warnings.filterwarnings(
        "ignore",
        message=f".*to host '{re.escape(parts.hostname or '')}'",
        category=InsecureRequestWarning,
    )


def trust_for(trust: Trust | None, verify_tls: bool, what: str, url: str) -> Trust:
    """The ``Trust`` a client of ``what`` at ``url`` uses: ``trust`` as resolved already, else
    resolved now from ``verify_tls`` and the environment; warned about (once) if it is off."""
    trust = trust or resolve_trust(verify_tls=verify_tls)
    warn_insecure(trust, what, url)
    return trust
