"""The HTTP data path: one shared, thread-safe, bounded connection pool per process and token.

Why not python-swiftclient here: its ``Connection`` is not thread-safe, never retries a bytes PUT
body, and blocks in its own backoff. zarr calls the store concurrently from its event loop, dask
runs several such loops' worth of tasks per process, so the data path is the project's own small
HTTP/1.1 client (``http1``: its CPU per request is what limits a dask worker) on whatever loop
calls it (one connection pool per event loop, created on first use), with bounded connections,
the project's RetryPolicy, MD5 on every upload and download, and one re-authentication on 401.

A ``SwiftSession`` is shared by every store copy in a process that has the same storage URL and
token (``get_session``): unpickling a store on a dask worker costs no new auth and no new pool.
The registry does not keep sessions forever: see ``get_session`` for when they are closed.
What the cluster can do (``/info``) is ``capabilities``'; what statuses mean is ``status``'.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import threading
import time
import weakref
from dataclasses import asdict, dataclass, field, replace
from urllib.parse import quote, urlencode

from swiftzarr_batch.errors import (
    AuthenticationError,
    IntegrityError,
    PermissionDeniedError,
    SwiftHTTPError,
)
from swiftzarr_batch.swift.checksums import check_body_md5, md5_hex
from swiftzarr_batch.swift.concurrency import request_slot
from swiftzarr_batch.swift.http1 import (
    ConnectionFailed,
    Endpoint,
    Headers,
    HTTPResponse,
    Pool,
    TLSFailure,
)
from swiftzarr_batch.swift.proxy import ProxyOption, proxy_choice, proxy_for
from swiftzarr_batch.swift.retry import RetryableFailure, RetryPolicy, call_with_retries
from swiftzarr_batch.swift.status import UNAUTHORIZED, Outcome, classify, error_for
from swiftzarr_batch.swift.tempurl import link_refused
from swiftzarr_batch.swift.tls import Trust, trust_for
from swiftzarr_batch.swift.tokens import CredentialProvider, Token, auth_calls, cached_authenticate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TransportOptions:
    """Tunables of the data path; travels with the store to workers.

    max_connections: concurrent requests per event loop (the store's limit).
    connect_timeout/read_timeout: seconds; a try fails when less than 16 KiB moved (either
    way) within read_timeout, so a stalled or trickling server costs about read_timeout per try.
    verify_tls, trust: check HTTPS certificates with ``trust`` (``swift.tls``; None: the env's).
    proxy: a forward proxy URL, False for none, None: HTTP(S)_PROXY/NO_PROXY (``swift.proxy``).
    verify_reads: compare each full GET body's MD5 with the object's ETag.
    verify_writes: send each PUT body's MD5 as its ETag, so the server refuses (422) a body
    damaged on the way. Both cost one MD5 of the body (~10 ms of CPU per 8 MiB); turn them
    off only where something else guarantees integrity end to end.
    """

    max_connections: int = 64
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    verify_tls: bool = True
    trust: Trust | None = None
    proxy: ProxyOption = None
    verify_reads: bool = True
    verify_writes: bool = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_requests_per_second: float | None = None  # cluster-wide cap (``swift.concurrency``)

    def __post_init__(self) -> None:
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {self.max_connections}")
        rate = self.max_requests_per_second
        if rate is not None and not rate > 0:
            raise ValueError(f"max_requests_per_second must be > 0, got {rate!r}")
        object.__setattr__(self, "proxy", proxy_choice(self.proxy))  # a URL's password: hidden


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
    refused: int = 0  # 498/429 answers: rate limited (each also a retry or an error)
    unavailable: int = 0  # 503 answers: overloaded or failing over

    def as_dict(self) -> dict[str, int]:
        """The counters by name (for ``store.counters``, job summaries and JSON reports)."""
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
        self.trust = trust_for(options.trust, options.verify_tls, "storage URL", token.storage_url)
        ctx, proxy = self.trust.ssl_context(), proxy_for(token.storage_url, options.proxy)
        self._endpoint = Endpoint(token.storage_url, ssl_context=ctx, proxy=proxy)
        self._pools: dict[int, Pool] = {}
        self._refresh_lock = threading.Lock()
        self.known_containers: set[str] = set()
        #: ``time.monotonic()`` of the last request (or ``get_session``): idle sessions close.
        self.last_used = time.monotonic()

    def __repr__(self) -> str:
        return f"SwiftSession(storage_url={self.token.storage_url!r})"

    @property
    def storage_url(self) -> str:
        """The account's storage URL, as the current token gives it (no request)."""
        return self.token.storage_url

    # -- connection pools ------------------------------------------------------------------
    def _pool(self) -> Pool:
        loop = asyncio.get_running_loop()
        self.last_used = time.monotonic()
        pool = self._pools.get(id(loop))
        if pool is not None and pool.loop is loop and not pool.closed:
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
        """Close every loop's pool (idle, dropped, or at interpreter exit), so no socket stays
        open and nothing warns about one; the session stays usable (a next request opens a new
        pool)."""
        _close_pools(self._pools, self._lock, now=True)

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
        and the error says the budget was spent."""
        target = f"{self._endpoint.base_path}/{path}" if path else self._endpoint.base_path
        if self.token.query:  # a signed link: its signature goes with every request
            params = {**dict(self.token.query), **(params or {})}
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
        container = path.split("/", 1)[0] if path else None  # its own limit (``concurrency``)
        check = check_md5 and self.options.verify_reads  # a large body is hashed as it arrives

        async def attempt(deadline: float | None = None) -> Response:
            nonlocal reauthed
            token = self.token
            if token.token:  # an anonymous store (public container) sends no token
                send_headers["X-Auth-Token"] = token.token
            self.counters.requests += 1
            try:
                # a wait for a slot ends when requests in flight end, each within its deadline
                async with request_slot(
                    self.token.storage_url, container, self.options.max_requests_per_second
                ) as slot:
                    resp = await self._pool().request(
                        method,
                        target,
                        send_headers,
                        body,
                        expect=expect,
                        digest=check,
                        deadline=deadline,
                    )
                    slot.done(resp.status)
            except TLSFailure as exc:
                self.counters.errors += 1  # a certificate does not get better by retrying
                raise SwiftHTTPError(
                    f"{method} {path}: {exc}; {self.trust.hint()}",
                    method=method,
                    path=path,
                ) from None
            except ConnectionFailed as exc:
                raise RetryableFailure(exc.reason) from None
            status, resp_headers, data = resp.status, resp.headers, resp.body
            if status in (429, 498):
                self.counters.refused += 1
            elif status == 503:
                self.counters.unavailable += 1
            if body is not None:
                self.counters.bytes_sent += len(body)
            self.counters.bytes_received += len(data)
            outcome = classify(status)
            if outcome is Outcome.REAUTH:
                if token.query:  # never "missing", never a retry: expired or not signed for it
                    raise link_refused(token.expires_at, method, path)
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
            if check and outcome is Outcome.OK:
                await check_body_md5(resp_headers, data, resp.digest)
            return Response(status, resp_headers, data)

        def on_retry(failure: RetryableFailure) -> None:
            if failure.status != UNAUTHORIZED:  # a refreshed token is not a retry
                self.counters.retries += 1
                log.debug(
                    "retrying %s %s after %s %s", method, path, failure.status, failure.reason
                )

        try:
            # the pool cuts a try at the budget's deadline: no timer per try
            response = await call_with_retries(
                self.options.retry, attempt, on_retry, deadline_to=attempt
            )
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


def _close_pools(pools: dict[int, Pool], lock: threading.Lock, *, now: bool = False) -> None:
    """Empty a session's ``pools``, closing each at once if its loop is closed (or stopped and
    ``now``: at exit), else on its loop's thread; without the session, for its finalizer."""
    with lock:
        closing = list(pools.values())
        pools.clear()
    for pool in closing:
        if not pool.loop.is_closed() and (pool.loop.is_running() or not now):
            try:
                pool.loop.call_soon_threadsafe(pool.close)
                continue
            except RuntimeError:  # closed meanwhile
                pass
        pool.close()


#: A session unused this long closes its pools (``http1.Pool`` would not reuse connections
#: idle past its 30 s keep-alive anyway) and is forgotten once no store holds it.
IDLE_CLOSE_SECONDS = 30.0
SWEEP_EVERY = 5.0  # seconds between the sweeper thread's looks for idle sessions


class _Entry:
    """A registered session: held weakly by the registry (its stores hold it), strongly only
    while ``recent``; its counters are kept here so they outlive it (``process_counters``)."""

    __slots__ = ("counters", "recent", "ref")

    def __init__(self, session: SwiftSession) -> None:
        self.ref = weakref.ref(session)
        self.counters = session.counters
        self.recent: SwiftSession | None = session


_sessions: dict[tuple[str, str, tuple[tuple[str, str], ...], TransportOptions], _Entry] = {}
_sessions_lock = threading.Lock()
_retired = Counters()  # what sessions that are gone did, for process_counters
_sweeper: threading.Thread | None = None


def get_session(
    token: Token, provider: CredentialProvider | None, options: TransportOptions
) -> SwiftSession:
    """The process-wide session for this storage URL + token + options (made on first use).

    Why weak references plus an idle time, rather than either alone: the registry holds a
    session only weakly, so a session no store uses any more (e.g. 200 stores of 200 tokens,
    dropped) is freed and its pools closed, instead of keeping a socket per token until the
    process ends. But a dask worker unpickles a new store copy for each task and drops it after,
    so a session is also held strongly for ``IDLE_CLOSE_SECONDS`` after its last use: the next
    task finds it, with its open connections and known containers. A sweeper thread (every
    ``SWEEP_EVERY`` s while sessions exist) closes the pools of sessions idle that long, held or
    not; a store that still holds one simply opens a new pool on its next request.
    """
    route = replace(options, proxy=proxy_for(token.storage_url, options.proxy) or False)
    key = (token.storage_url, token.token, token.query, route)  # the env's proxy of now
    with _sessions_lock:
        _prune()
        entry = _sessions.get(key)
        session = entry.ref() if entry is not None else None
        if entry is None or session is None:
            session = SwiftSession(token, provider, options)
            _sessions[key] = _Entry(session)
            finalizer = weakref.finalize(session, _close_pools, session._pools, session._lock)
            finalizer.atexit = False  # _close_sessions_at_exit closes the live ones
            _start_sweeper()
        else:
            entry.recent = session
        session.last_used = time.monotonic()
    if provider is not None and session.provider is None:
        session.provider = provider
    return session


def _prune() -> None:
    """Forget the sessions that were freed, keeping what they counted (lock held)."""
    for key, entry in list(_sessions.items()):
        if entry.ref() is None:
            del _sessions[key]
            for name, value in entry.counters.as_dict().items():
                setattr(_retired, name, getattr(_retired, name) + value)


def close_idle_sessions(idle: float | None = None) -> int:
    """Close the pools of sessions unused for ``idle`` s (default ``IDLE_CLOSE_SECONDS``) and
    stop holding them, so those no store uses are freed; return how many were closed.

    The sweeper thread calls this; call it directly to release sockets now (e.g. ``idle=0``
    after a job: a store still in use reconnects on its next request).
    """
    cutoff = time.monotonic() - (IDLE_CLOSE_SECONDS if idle is None else idle)
    with _sessions_lock:
        idle_sessions = [
            s for e in _sessions.values() if (s := e.ref()) is not None and s.last_used <= cutoff
        ]
        for entry in _sessions.values():
            if entry.recent is not None and entry.recent.last_used <= cutoff:
                entry.recent = None
    count = len(idle_sessions)
    pools = [(s._pools, s._lock) for s in idle_sessions]
    del idle_sessions  # maybe the last strong references: those sessions are freed here
    for session_pools, lock in pools:
        _close_pools(session_pools, lock)  # queued on a stopped loop, never raced from here
    with _sessions_lock:
        _prune()
    return count


def open_sessions() -> int:
    """How many sessions this process holds now (not the freed ones): tests, diagnostics."""
    with _sessions_lock:
        _prune()
        return len(_sessions)


def _sweep() -> None:
    global _sweeper
    while True:
        time.sleep(SWEEP_EVERY)
        try:
            close_idle_sessions()
        except Exception:  # never let the sweeper die with sessions left to close
            log.exception("closing idle Swift sessions failed")
        with _sessions_lock:
            if not _sessions:
                _sweeper = None
                return


def _start_sweeper() -> None:
    """Start the sweeper thread unless it runs (lock held)."""
    global _sweeper
    if _sweeper is None:
        _sweeper = threading.Thread(target=_sweep, name="swiftzarr-session-sweeper", daemon=True)
        _sweeper.start()


def _after_fork_in_child() -> None:
    global _sweeper, _sessions_lock
    _sweeper = None  # threads do not survive a fork; the next get_session starts one
    _sessions_lock = threading.Lock()  # a thread of the parent may have held it


os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _close_sessions_at_exit() -> None:
    with _sessions_lock:
        sessions = [s for e in _sessions.values() if (s := e.ref()) is not None]
    for session in sessions:
        session.close_all()


def process_counters() -> dict[str, int]:
    """All sessions' counters of this process (those freed meanwhile included), plus auth
    requests sent by this process."""
    total = Counters()
    with _sessions_lock:
        parts = [_retired, *(e.counters for e in _sessions.values())]
        for counters in parts:
            for name, value in counters.as_dict().items():
                setattr(total, name, getattr(total, name) + value)
    result = total.as_dict()
    result["auth_calls"] = auth_calls()
    return result
