"""``SwiftStore``: a zarr-python 3 store backed by an OpenStack Swift container (and prefix).

Keys map to objects ``<prefix>/<key>`` in one container. The store is a thin translation of
zarr's Store ABC onto ``SwiftContainer``; the data path (pooling, retries, MD5, re-auth) is
``swift.session``'s. What Swift can do beyond the ABC (listings with MD5s, server-side copies,
bulk deletes...) is offered to other rooms by ``store.objects.swift_objects``, not here.

It is picklable for dask: a pickle carries the storage URL and token, never a user key, and
unpickled copies in one process share one connection pool.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import os
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, Self

from zarr.abc.store import ByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype
from zarr.core.sync import sync

from swiftzarr_batch.auth import (
    CredentialProvider,
    Token,
    cached_authenticate,
)
from swiftzarr_batch.errors import ListingNotAllowedError, ReadOnlyError
from swiftzarr_batch.store.byte_ranges import upload_body
from swiftzarr_batch.store.read_cache import ReadCache, ReadCacheOption, cache_bytes
from swiftzarr_batch.store.store_auth import store_auth
from swiftzarr_batch.store.sync_iter import iterate_pages
from swiftzarr_batch.swift import large_objects
from swiftzarr_batch.swift.bulk_stream import delete_streamed, listed_for_delete
from swiftzarr_batch.swift.capabilities import large_object_limits
from swiftzarr_batch.swift.container import SwiftContainer
from swiftzarr_batch.swift.names import (
    normalize_prefix,
    object_name,
    validate_container,
    validate_key,
)
from swiftzarr_batch.swift.proxy import ProxyOption
from swiftzarr_batch.swift.retry import RetryPolicy
from swiftzarr_batch.swift.session import SwiftSession, TransportOptions, get_session
from swiftzarr_batch.swift.swiftclient_conn import swiftclient_connection
from swiftzarr_batch.swift.tempurl import parse_link
from swiftzarr_batch.swift.write_options import WriteOptions

log = logging.getLogger(__name__)

__all__ = ["SwiftStore"]


class SwiftStore(Store):
    """zarr store on a Swift container, optionally under a prefix.

    Parameters
    ----------
    container, prefix
        Where the hierarchy lives: objects are named ``prefix/key``.
    authurl, user, key
        v1 credentials (TempAuth, Keystone's v1 shim). Used once per process to get a token.
    preauthurl, preauthtoken
        A storage URL and token obtained elsewhere (``acquire_token``, ``store.conn``).
    credential_provider
        Any object with ``authenticate() -> Token``; used to get a new token after a 401. It is
        pickled with the store only if it says so (``travels = True``).
    read_only
        Refuse writes; opening read-only never creates the container.
    max_connections, retry, verify_tls, verify_reads, verify_writes, connect_timeout, read_timeout
        Data path tuning, see ``TransportOptions``. The MD5 checks (``verify_reads``,
        ``verify_writes``) are on by default; they cost ~10 ms of CPU per 8 MiB chunk.
    max_requests_per_second
        A cluster-wide cap on requests, for sites that publish one: divided across the dask
        workers of a job (``swift.concurrency``). Without it (and without ``swiftzarr --rate``)
        only the adaptive limit applies, which backs off on 498/429/503 whatever this says.
    cacert
        The site's CA bundle (a PEM file), for auth, data and ``conn`` alike. Without it (and
        with ``verify_tls``): ``OS_CACERT``, the cloud's ``cacert``/``verify`` in clouds.yaml,
        ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``/``SSL_CERT_FILE``, the system's store, in
        that order (``swift.tls``). The choice travels with the pickle as a *path*: workers of
        one site share the file system, so they read the same file (it must exist there).
    proxy
        A forward proxy (``http://[user:password@]host:port``) for auth, data and ``conn``, or
        False for none; without it ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` (``swift.proxy``).

    anonymous
        No credentials, just ``preauthurl``: read a container made public
        (``X-Container-Read: .r:*,.rlistings``). Always read-only.
    storage_policy, delete_after
        The storage policy of the container if the store creates it, and seconds after which
        Swift deletes each object written (``swift.write_options``); both travel with pickles.
    read_cache
        Keep shard indexes (suffix reads) in memory: a random chunk read from a sharded array
        is one GET, not two (``store.read_cache``: why it is never stale). None: on (16 MiB)
        if read-only, else off; True/False; or a cap in bytes. Never pickled, unlike the option.

    Notes
    -----
    Credentials are taken from the arguments first, then ``ST_AUTH/ST_USER/ST_KEY``, then
    Keystone v3 (``OS_CLOUD``, ``OS_AUTH_URL`` ...), then ``OS_STORAGE_URL/OS_AUTH_TOKEN``.
    Values larger than the cluster's ``max_file_size`` are written as Static Large Objects.
    """

    supports_writes: bool = True
    supports_deletes: bool = True
    supports_listing: bool = True

    def __init__(
        self,
        container: str,
        prefix: str = "",
        *,
        authurl: str | None = None,
        user: str | None = None,
        key: str | None = None,
        preauthurl: str | None = None,
        preauthtoken: str | None = None,
        credential_provider: CredentialProvider | None = None,
        read_only: bool = False,
        max_connections: int = 64,
        retry: RetryPolicy | None = None,
        verify_tls: bool = True,
        verify_reads: bool = True,
        verify_writes: bool = True,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        anonymous: bool = False,
        cacert: str | os.PathLike[str] | None = None,
        proxy: ProxyOption = None,
        storage_policy: str | None = None,
        delete_after: int | None = None,
        read_cache: ReadCacheOption = None,
        max_requests_per_second: float | None = None,
    ) -> None:
        super().__init__(read_only=read_only or anonymous)
        self.container = validate_container(container)
        self.prefix = normalize_prefix(prefix)
        self._writes = WriteOptions(storage_policy, delete_after)
        self._read_cache_option, self.read_cache = read_cache, ReadCache()
        self._cache_cap = cache_bytes(read_cache, self.read_only)
        self._provider, self._token, trust = store_auth(
            authurl=authurl,
            user=user,
            key=key,
            preauthurl=preauthurl,
            preauthtoken=preauthtoken,
            credential_provider=credential_provider,
            anonymous=anonymous,
            verify_tls=verify_tls,
            cacert=cacert,
            proxy=proxy,
        )
        self._options = TransportOptions(
            max_connections=max_connections,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            verify_tls=trust.verify,
            trust=trust,
            proxy=proxy,
            verify_reads=verify_reads,
            verify_writes=verify_writes,
            retry=retry or RetryPolicy(),
            max_requests_per_second=max_requests_per_second,
        )
        self._swift_session: SwiftSession | None = None
        self._swift_container: SwiftContainer | None = None
        self._conn: Any = None

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Open a shared link read-only, with no credentials: a public container's URL
        (``https://host/v1/AUTH_x/container/prefix``) or a signed link (temp URL) that
        ``swiftzarr share`` / ``temp_url()`` printed.

        A signed link's signature goes with every request (and with the store's pickle to dask
        workers); it cannot list, so the dataset is read through its consolidated metadata.
        ``options`` are the data path's (``max_connections``, ``retry``, ``verify_tls`` ...)."""
        link = parse_link(url)
        store = cls(
            link.container, link.prefix, preauthurl=link.storage_url, anonymous=True, **options
        )
        if link.signed:
            store._token = Token(link.storage_url, "", link.expires_at, link.query)
        return store

    @property
    def signed_link(self) -> bool:
        """Whether this store reads through a signed link (temp URL): no listings."""
        return bool(self._token is not None and self._token.query)

    def _check_listable(self) -> None:
        if self.signed_link:
            raise ListingNotAllowedError(
                f"{self}: this link cannot list: the dataset must be consolidated; run "
                "`swiftzarr consolidate` on it (with credentials) and share it again"
            )

    # -- identity, pickling -----------------------------------------------------------------
    @property
    def session(self) -> SwiftSession:
        """The process's shared ``SwiftSession`` for this store's storage URL and token.

        Authenticates (once per process) on first use; blocking, so async code calls
        ``asession()``."""
        if self._swift_session is None:
            if self._token is None:
                assert self._provider is not None
                self._token = cached_authenticate(self._provider)
            self._swift_session = get_session(self._token, self._provider, self._options)
        return self._swift_session

    async def asession(self) -> SwiftSession:
        """``session`` from async code: a first authentication runs off the event loop."""
        if self._swift_session is None and self._token is None:
            await asyncio.to_thread(lambda: self.session)
        return self.session

    async def swift_container(self) -> SwiftContainer:
        """The ``SwiftContainer`` this store's objects live in (for object-level operations of
        other rooms: conditional PUTs, server-side copies, raw listings)."""
        if self._swift_container is None:  # once per store copy: it is on every request's path
            self._swift_container = SwiftContainer(
                await self.asession(), self.container, self._writes
            )
        return self._swift_container

    @property
    def storage_url(self) -> str:
        """The account's storage URL (the first use of ``session`` authenticates, blocking)."""
        return self.session.storage_url

    def __str__(self) -> str:
        return f"swift://{self.container}/{self.prefix}"

    def __repr__(self) -> str:
        url = self._token.storage_url if self._token else "<not yet authenticated>"
        return (
            f"SwiftStore(container={self.container!r}, prefix={self.prefix!r}, "
            f"storage_url={url!r}, read_only={self.read_only})"
        )

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, SwiftStore)
            and self.container == other.container
            and self.prefix == other.prefix
            and self.read_only == other.read_only
            and self.storage_url == other.storage_url
        )

    def __hash__(self) -> int:
        return hash((self.container, self.prefix, self.read_only))

    def __getstate__(self) -> dict[str, Any]:
        """Ship URL + token (+ a provider only if it is allowed to travel), never a user key."""
        session = self.session
        # this store's own provider first: a session shared with another store of the same
        # token may hold a provider that must not travel
        provider = next(
            (p for p in (self._provider, session.provider) if getattr(p, "travels", False)), None
        )
        return {
            "container": self.container,
            "prefix": self.prefix,
            "read_only": self._read_only,
            "is_open": self._is_open,
            "token": session.token,
            "options": self._options,
            "provider": provider,
            "writes": self._writes,
            "read_cache": self._read_cache_option,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.container, self.prefix = state["container"], state["prefix"]
        self._read_only, self._is_open = state["read_only"], state["is_open"]
        self._token, self._options = state["token"], state["options"]
        self._provider, self._writes = state["provider"], state.get("writes", WriteOptions())
        self._read_cache_option, self.read_cache = state.get("read_cache"), ReadCache()
        self._cache_cap = cache_bytes(self._read_cache_option, self._read_only)
        self._swift_session = self._swift_container = self._conn = None

    def _with(self, **changes: Any) -> Self:
        clone = object.__new__(type(self))
        clone.__setstate__({**self.__getstate__(), "provider": None, "is_open": False, **changes})
        clone._provider = self._provider or (
            self._swift_session.provider if self._swift_session else None
        )
        clone.read_cache = self.read_cache  # one cache: the parent's writes invalidate it
        return clone

    def with_read_only(self, read_only: bool = False) -> Self:
        """zarr's copy with ``read_only`` set: same container, credentials and read cache."""
        return self._with(read_only=read_only)

    def with_writes(self, writes: WriteOptions) -> Self:
        """The same store, writing with these storage policy and expiry settings."""
        return self._with(writes=writes)

    def with_prefix(self, prefix: str) -> Self:
        """The same container and credentials under another prefix."""
        return self._with(prefix=normalize_prefix(prefix))

    # -- helpers ----------------------------------------------------------------------------
    def object_name(self, key: str) -> str:
        """The Swift object name of zarr ``key`` (validated; raises ``InvalidNameError``)."""
        return object_name(self.prefix, validate_key(key))

    @property
    def listing_base(self) -> str:
        """What every object name of this store starts with: ``prefix/``, or "" at the
        container's root (a listing prefix, unlike ``object_name``, which needs a key)."""
        return f"{self.prefix}/" if self.prefix else ""

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyError()

    @property
    def counters(self) -> dict[str, int]:
        """Requests, bytes, retries, re-auths and errors of this process's shared session."""
        return self.session.counters.as_dict()

    @property
    def token_expires_at(self) -> float | None:
        """UNIX time at which the current token expires, when the auth server said so."""
        return self.session.token.expires_at

    @property
    def conn(self) -> Any:
        """A python-swiftclient ``Connection`` on this store's storage URL and token.

        For the CLI-like operations users know (``conn.url``, ``conn.token``,
        ``conn.get_container``); not used by the store's own data path."""
        if self._conn is None:  # the data path's trust and proxy
            self._conn = swiftclient_connection(self.session)
        return self._conn

    # -- Store ABC: lifecycle ---------------------------------------------------------------
    async def _open(self) -> None:
        if self._is_open:
            raise ValueError("store is already open")
        if not self.read_only:
            await (await self.swift_container()).ensure_exists()
        self._is_open = True

    # -- Store ABC: reads -------------------------------------------------------------------
    async def get(
        self,
        key: str,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        """The object (or byte range) of ``key`` via the read cache; ``None`` only on a 404."""
        prototype = prototype or default_buffer_prototype()
        name, container = self.object_name(key), await self.swift_container()
        body = await self.read_cache.read(container, name, byte_range, self._cache_cap)
        return None if body is None else prototype.buffer.from_bytes(body)

    async def get_partial_values(
        self,
        prototype: BufferPrototype,
        key_ranges: Iterable[tuple[str, ByteRequest | None]],
    ) -> list[Buffer | None]:
        """``get`` of each (key, range) pair, concurrently; ``None`` for each missing key."""
        return list(await asyncio.gather(*(self.get(k, prototype, r) for k, r in key_ranges)))

    async def exists(self, key: str) -> bool:
        """Whether the object of ``key`` exists (one HEAD; only a 404 means no)."""
        return await (await self.swift_container()).head(self.object_name(key)) is not None

    async def getsize(self, key: str) -> int:
        """Size of the object of ``key`` in bytes (one HEAD); ``FileNotFoundError`` if absent."""
        resp = await (await self.swift_container()).head(self.object_name(key))
        if resp is None:
            raise FileNotFoundError(key)
        return int(resp.headers["Content-Length"])

    async def getsize_prefix(self, prefix: str) -> int:
        """Sum of object sizes under the directory ``prefix``, from listings (no HEADs)."""
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self._check_listable()
        total = 0
        async for page in (await self.swift_container()).list_pages(self._prefix_for(prefix)):
            total += sum(int(e.get("bytes", 0)) for e in page)
        return total

    # -- Store ABC: writes ------------------------------------------------------------------
    async def set(self, key: str, value: Buffer) -> None:
        """Write ``key`` (in segments above the limit); ``ReadOnlyError`` on a read-only store."""
        self._check_writable()
        if not isinstance(value, Buffer):
            raise TypeError(
                f"SwiftStore.set(): `value` must be a Buffer instance, got {type(value).__name__}"
            )
        await self._put(self.object_name(key), upload_body(value))

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        """Atomic create (``If-None-Match: *``): an existing object is left untouched."""
        self._check_writable()
        await self._put(self.object_name(key), upload_body(value), if_none_match=True)

    async def _put(
        self, name: str, body: bytes | memoryview, *, if_none_match: bool = False
    ) -> bool:
        container = await self.swift_container()
        limit = await large_object_limits(container.session, len(body))  # None: one PUT
        try:
            if limit is not None:
                return await large_objects.put_large(
                    container, name, body, limit, if_none_match=if_none_match
                )
            return await container.put(name, body, if_none_match=if_none_match)
        finally:
            self.read_cache.forget(name)  # once written (or failed): never before

    async def _set_many(self, values: Iterable[tuple[str, Buffer]]) -> None:
        await asyncio.gather(*(self.set(k, v) for k, v in values))

    async def delete(self, key: str) -> None:
        """Delete ``key`` and its segments (absent: no error); ``ReadOnlyError`` if read-only."""
        self._check_writable()
        name = self.object_name(key)
        container = await self.swift_container()
        head = await container.head(name)  # a large object's segments must go with it
        if head is None:
            return
        try:
            if "X-Static-Large-Object" in head.headers:
                await large_objects.delete_large(container, name)
            else:
                await container.delete(name)
        finally:
            self.read_cache.forget(name)

    async def delete_dir(self, prefix: str) -> None:
        """Delete every key under ``prefix`` as the listing streams (``swift.bulk_stream``:
        batches of names to the bulk-delete middleware, no list of every name), large objects
        with their segments."""
        self._check_writable()
        container = await self.swift_container()
        base = self.listing_base
        if prefix:
            validate_key(prefix)
            base = f"{base}{prefix.rstrip('/')}/"
        # The directory markers ("folders") go too: ``listed_for_delete`` lists them.
        try:
            deleted = await delete_streamed(container, listed_for_delete(container, base))
        finally:
            self.read_cache.forget_under(base)
        log.debug("deleted %d objects under %s", deleted, base)

    async def clear(self) -> None:
        """Delete every object under this store's prefix (``delete_dir("")``)."""
        await self.delete_dir("")

    # -- Store ABC: listings ----------------------------------------------------------------
    def _prefix_for(self, prefix: str) -> str:
        if prefix:
            validate_key(prefix)
        return self.listing_base + prefix

    async def list(self) -> AsyncIterator[str]:
        """Every key, streamed from the container listing (may lag writes); not on a signed link."""
        async for key in self.list_prefix(""):
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        """Every key under ``prefix``, streamed from the listing; not on a signed link."""
        self._check_listable()
        cut = len(self.listing_base)
        async for page in (await self.swift_container()).list_pages(self._prefix_for(prefix)):
            for entry in page:
                yield entry["name"][cut:]

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        """The direct children (keys, sub-directories) of ``prefix``; not on a signed link."""
        self._check_listable()
        base = self.listing_base
        if prefix.strip("/"):
            validate_key(prefix)
            base = f"{base}{prefix.strip('/')}/"
        cut = len(base)
        async for entry in (await self.swift_container()).list_level(base):  # no markers
            child = (entry.get("subdir") or entry["name"])[cut:].rstrip("/")
            if child:
                yield child

    # -- seed helpers (the original zarrswift API) -------------------------------------------
    def listdir(self, path: str = "") -> builtins.list[str]:
        """First-level names under ``path`` (``store.listdir()`` of the original zarrswift)."""

        async def collect() -> builtins.list[str]:
            return sorted({name async for name in self.list_dir(path)})

        return sync(collect())

    def walk(self, path: str = "") -> Iterator[str]:
        """Every key under ``path``, sorted, as a generator (a page of names at a time).

        Swift lists in UTF-8 byte order, which is ``sorted()``'s order for ``str``, so nothing
        is collected to sort. ``store._walk()`` (the original zarrswift's) returns a list."""
        self._check_listable()  # now, not at the first next(): so is authentication
        self.session  # noqa: B018
        prefix = f"{path.strip('/')}/" if path.strip("/") else ""
        return iterate_pages(self._key_pages(prefix))

    async def _key_pages(self, prefix: str) -> AsyncIterator[builtins.list[str]]:
        cut = len(self.listing_base)
        async for page in (await self.swift_container()).list_pages(self._prefix_for(prefix)):
            yield [entry["name"][cut:] for entry in page]

    def _walk(self, path: str = "") -> builtins.list[str]:
        return builtins.list(self.walk(path))
