"""The HTTP data path: one shared, thread-safe, bounded connection pool per process and token.

Why not python-swiftclient here: its ``Connection`` is not thread-safe, never retries a bytes PUT
body, and blocks in its own backoff. zarr calls the store concurrently from its event loop, dask
runs several such loops' worth of tasks per process, so the data path is the project's own small
HTTP/1.1 client (``http1``: its CPU per request is what limits a dask worker) on whatever loop
calls it (one connection pool per event loop, created on first use), with bounded connections,
the project's RetryPolicy, MD5 on every upload and download, and one re-authentication on 401.

A ``SwiftSession`` is shared by every store copy in a process that has the same storage URL and
token (``get_session``): unpickling a store on a dask worker costs no new auth and no new pool.
What the cluster can do (``/info``) is ``capabilities``'; what statuses mean is ``status``'.
"""

from __future__ import annotations

import asyncio
import atexit
import hashlib
import logging
import re
import threading
from dataclasses import asdict, dataclass, field
from urllib.parse import quote, urlencode

from swiftzarr_batch.errors import (
    AuthenticationError,
    IntegrityError,
    PermissionDeniedError,
    SwiftHTTPError,
)
from swiftzarr_batch.swift.http1 import (
    ConnectionFailed,
    Endpoint,
    Headers,
    HTTPResponse,
    Pool,
    TLSFailure,
)
from swiftzarr_batch.swift.retry import RetryableFailure, RetryPolicy, call_with_retries
from swiftzarr_batch.swift.status import UNAUTHORIZED, Outcome, classify, error_for
from swiftzarr_batch.swift.tokens import CredentialProvider, Token, auth_calls, cached_authenticate

log = logging.getLogger(__name__)

_MD5_HEX = re.compile(r"^[0-9a-f]{32}$")
#: Metadata of a large object holding its whole body's MD5 (its ETag is not that MD5).
BODY_MD5_HEADER = "X-Object-Meta-Swiftzarr-Body-Md5"


@dataclass(frozen=True)
class TransportOptions:
    """Tunables of the data path; travels with the store to workers.

    max_connections: concurrent requests per event loop (the store's limit).
    connect_timeout/read_timeout: seconds; a try fails when less than 16 KiB moved (either
    way) within read_timeout, so a stalled or trickling server costs about read_timeout per try.
    verify_tls: check HTTPS certificates (turning it off is logged as a warning).
    verify_reads: compare each full GET body's MD5 with the object's ETag.
    verify_writes: send each PUT body's MD5 as its ETag, so the server refuses (422) a body
    damaged on the way. Both cost one MD5 of the body (~10 ms of CPU per 8 MiB); turn them
    off only where something else guarantees integrity end to end.
    """

    max_connections: int = 64
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    verify_tls: bool = True
    verify_reads: bool = True
    verify_writes: bool = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {self.max_connections}")


@dataclass
class Counters:
    """What a session did: read after a job (``store.counters``); summed across workers by
    ``jobs.counters``."""

    requests: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    retries: int = 0
    reauths: int = 0
    errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class Response:
    status: int
    headers: Headers
    body: bytes | bytearray


class SwiftSession:
    """Authenticated access to one storage URL, shared by all stores of a process."""

    def __init__(
        self, token: Token, provider: CredentialProvider | None, options: TransportOptions
    ) -> None:
        self.token = token
        self.provider = provider
        self.options = options
        self.counters = Counters()
        self._lock = threading.Lock()
        self._endpoint = Endpoint(token.storage_url, verify_tls=options.verify_tls)
        self._pools: dict[int, Pool] = {}
        self._refresh_lock = threading.Lock()
        self.known_containers: set[str] = set()
        if not options.verify_tls:
            log.warning("TLS certificate verification is OFF for %s", token.storage_url)

    def __repr__(self) -> str:
        return f"SwiftSession(storage_url={self.token.storage_url!r})"

    @property
    def storage_url(self) -> str:
        return self.token.storage_url

    # -- connection pools ------------------------------------------------------------------
    def _pool(self) -> Pool:
        loop = asyncio.get_running_loop()
        pool = self._pools.get(id(loop))
        if pool is not None and pool.loop is loop:
            return pool
        with self._lock:
            for key, old in list(self._pools.items()):
                if old.loop.is_closed():  # its loop is gone: drop its sockets
                    old.close()
                    del self._pools[key]
            pool = self._pools[id(loop)] = Pool(
                self._endpoint,
                limit=self.options.max_connections,
                connect_timeout=self.options.connect_timeout,
                read_timeout=self.options.read_timeout,
            )
            return pool

    def close_all(self) -> None:
        """Close every loop's pool (at interpreter exit), so nothing warns about open sockets."""
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            if pool.loop.is_running() and not pool.loop.is_closed():
                try:
                    pool.loop.call_soon_threadsafe(pool.close)
                    continue
                except RuntimeError:  # closed meanwhile
                    pass
            pool.close()

    @property
    def endpoint(self) -> Endpoint:
        """The server of the storage URL (scheme, host, port, base path, TLS context)."""
        return self._endpoint

    async def get_unauthenticated(self, target: str) -> HTTPResponse:
        """One GET of ``target`` (an absolute, percent-encoded path on the storage URL's
        server) without a token, retries or counters: for documents outside the account that
        anyone may read, i.e. the cluster's ``/info`` (``capabilities``). Connection trouble
        raises ``http1.ConnectionFailed``/``TLSFailure`` for the caller to judge."""
        return await self._pool().request("GET", target)

    async def aclose(self) -> None:
        """Close the pool of the running loop (others close when their loop does)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            pool = self._pools.pop(id(loop), None)
        if pool is not None:
            pool.close()

    # -- authentication ---------------------------------------------------------------------
    def _refresh_token(self, stale: Token) -> None:
        """Get a new token after a 401 (blocking; one refresh for many concurrent 401s)."""
        if self.provider is None:
            raise error_for(UNAUTHORIZED, "request", self.storage_url)
        with self._refresh_lock:
            if self.token.token != stale.token:
                return  # another thread already refreshed
            log.info("token rejected for %s; re-authenticating", self.storage_url)
            new = cached_authenticate(self.provider, stale=stale)
            if new.storage_url != self.token.storage_url:
                raise AuthenticationError(
                    "re-authentication returned a different storage URL "
                    f"({new.storage_url} instead of {self.storage_url})"
                )
            self.token = new
            self.counters.reauths += 1

    # -- requests ---------------------------------------------------------------------------
    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        body: bytes | memoryview | None = None,
        check_md5: bool = False,
        allow: tuple[int, ...] = (),
        expect: int | None = None,
    ) -> Response:
        """Send one request (with retries) to ``storage_url/path``; ``path`` is already quoted.

        Returns the response for 2xx, 404 and any status in ``allow``; raises the typed error
        of ``status.error_for`` otherwise. ``check_md5``: verify a full GET body against its
        ETag. A PUT body is sent with its MD5 as ETag so the server rejects corruption (422)
        (unless ``verify_writes`` is off). ``expect``: the most body bytes expected (a listed
        size, a range's length), so a lying Content-Length cannot make the client allocate
        more than that up front (``http1.Pool.request``).

        The retry budget is a deadline across tries: a try in flight when it passes is cut,
        and the error says the budget was spent.
        """
        target = f"{self._endpoint.base_path}/{path}" if path else self._endpoint.base_path
        if params:
            target = f"{target}?{urlencode(params, quote_via=quote)}"
        send_headers = dict(headers) if headers else {}
        if (
            body is not None
            and method == "PUT"
            and self.options.verify_writes
            and "ETag" not in send_headers
        ):
            send_headers["ETag"] = await md5_hex(body)
        reauthed = False

        async def attempt() -> Response:
            nonlocal reauthed
            token = self.token
            if token.token:  # an anonymous store (public container) sends no token
                send_headers["X-Auth-Token"] = token.token
            self.counters.requests += 1
            try:
                resp = await self._pool().request(method, target, send_headers, body, expect=expect)
            except TLSFailure as exc:
                self.counters.errors += 1  # a certificate does not get better by retrying
                raise SwiftHTTPError(
                    f"{method} {path}: {exc}; fix the certificate or its CA bundle (verify_tls="
                    "False only for a server you trust)",
                    method=method,
                    path=path,
                ) from None
            except ConnectionFailed as exc:
                raise RetryableFailure(exc.reason) from None
            status, resp_headers, data = resp.status, resp.headers, resp.body
            if body is not None:
                self.counters.bytes_sent += len(body)
            self.counters.bytes_received += len(data)
            outcome = classify(status)
            if outcome is Outcome.REAUTH:
                if not token.token and self.provider is None:
                    raise PermissionDeniedError(
                        f"{method} {path} answered 401 to an anonymous request: the container "
                        "is not public for this (give credentials)"
                    )
                if reauthed or self.provider is None:
                    raise error_for(UNAUTHORIZED, method, path)
                await asyncio.to_thread(self._refresh_token, token)
                reauthed = True
                raise RetryableFailure("token refreshed", status=UNAUTHORIZED, retry_after="0")
            if outcome is Outcome.RETRY:
                raise RetryableFailure(
                    resp.reason or "", status=status, retry_after=resp_headers.get("Retry-After")
                )
            if check_md5 and self.options.verify_reads and outcome is Outcome.OK:
                await _check_body_md5(resp_headers, data)
            return Response(status, resp_headers, data)

        def on_retry(failure: RetryableFailure) -> None:
            if failure.status != UNAUTHORIZED:  # a refreshed token is not a retry
                self.counters.retries += 1
                log.debug(
                    "retrying %s %s after %s %s", method, path, failure.status, failure.reason
                )

        try:
            response = await call_with_retries(self.options.retry, attempt, on_retry)
        except RetryableFailure as failure:
            self.counters.errors += 1
            if failure.reason == "MD5 mismatch":
                raise IntegrityError(
                    f"{method} {path}: body did not match its ETag in {failure.attempts} tries",
                    status=failure.status,
                    attempts=failure.attempts,
                    method=method,
                    path=path,
                ) from None
            reason, spent = failure.reason, ""
            if failure.budget_spent and "budget" not in reason:
                spent = f"retry budget of {self.options.retry.budget:g} s spent"
                if failure.status is None:
                    reason, spent = f"{reason}; {spent}", ""
            raise error_for(
                failure.status,
                method,
                path,
                reason=reason,
                attempts=failure.attempts,
                detail=spent,
            ) from None
        outcome = classify(response.status)
        if outcome in (Outcome.OK, Outcome.MISSING) or response.status in allow:
            return response
        self.counters.errors += 1
        raise error_for(response.status, method, path, reason=_reason(response))


def _reason(response: Response) -> str:
    text = response.body[:200].decode("utf-8", "replace").strip()
    return " ".join(text.split())


#: Bodies this big or bigger are hashed in a worker thread (hashlib releases the GIL): the MD5
#: of an 8 MiB chunk takes ~11 ms, which on the event loop would stall every other request.
MD5_OFF_LOOP_BYTES = 1 << 20


async def md5_hex(data: bytes | bytearray | memoryview) -> str:
    """Hex MD5 of ``data``; off the event loop for big bodies."""
    if memoryview(data).nbytes >= MD5_OFF_LOOP_BYTES:
        return await asyncio.to_thread(lambda: hashlib.md5(data).hexdigest())
    return hashlib.md5(data).hexdigest()


async def _check_body_md5(headers: Headers, data: bytes | bytearray) -> None:
    """Raise RetryableFailure if a plain object's body does not hash to its ETag.

    Large-object manifests (SLO/DLO) carry a different ETag: they are checked against the
    whole body's MD5 that ``large_objects`` stores as metadata, or skipped without it, as are
    range reads.
    """
    if "Content-Range" in headers:
        return
    etag = headers.get("Etag", "").strip('"')
    if "X-Static-Large-Object" in headers or "X-Object-Manifest" in headers:
        etag = headers.get(BODY_MD5_HEADER, "")
    if not _MD5_HEX.match(etag):
        return
    if await md5_hex(data) != etag:
        raise RetryableFailure("MD5 mismatch")


_sessions: dict[tuple[str, str, TransportOptions], SwiftSession] = {}
_sessions_lock = threading.Lock()


def get_session(
    token: Token, provider: CredentialProvider | None, options: TransportOptions
) -> SwiftSession:
    """The process-wide session for this storage URL + token + options (made on first use)."""
    key = (token.storage_url, token.token, options)
    session = _sessions.get(key)
    if session is None:
        with _sessions_lock:
            session = _sessions.get(key)
            if session is None:
                session = _sessions[key] = SwiftSession(token, provider, options)
    if provider is not None and session.provider is None:
        session.provider = provider
    return session


@atexit.register
def _close_sessions_at_exit() -> None:
    with _sessions_lock:
        sessions = list(_sessions.values())
    for session in sessions:
        session.close_all()


def process_counters() -> dict[str, int]:
    """All sessions' counters of this process, plus auth requests sent by this process."""
    total = Counters()
    with _sessions_lock:
        sessions = list(_sessions.values())
    for s in sessions:
        for name, value in s.counters.as_dict().items():
            setattr(total, name, getattr(total, name) + value)
    result = total.as_dict()
    result["auth_calls"] = auth_calls()
    return result
