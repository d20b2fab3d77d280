"""``swift://container/prefix`` for every zarr, xarray and dask user: an fsspec file system.

``xr.open_zarr("swift://c/p")``, ``zarr.open("swift://c/p")`` and ``da.to_zarr(a, "swift://c/p")``
all end in zarr's ``make_store``, which hands any URL whose scheme is not ``file`` or
``memory`` to ``FsspecStore.from_url(url, storage_options)``; zarr 3.4 has no registry of its
own for stores built from URLs (``zarr.registry`` loads entry points for codecs, codec pipelines,
buffers, data types and chunk key encodings only, and ``make_store`` consults none). So the
ecosystem's hook is fsspec's: ``SwiftFileSystem`` is registered for the protocol ``swift`` by the
``fsspec.specs`` entry point of this package (and by ``register()``, called when
``swiftzarr_batch.store`` is imported, for checkouts run without installed metadata), and zarr
wraps it in its own ``FsspecStore``. Nothing here speaks HTTP: every path operation is a
``SwiftStore`` call (or a listing of its ``SwiftContainer``) on the process's ``SwiftSession``,
so URL users get the store's data path: MD5 checks both ways, retries, re-auth, large objects,
bulk deletes, one authentication per process; and its rule that only a 404 means "missing"
(``FileNotFoundError``, which ``FsspecStore`` turns into a missing key; every other error raises).

Paths are ``container/key``; one file system is one account. Credentials, in this order:
``storage_options`` (``SwiftStore``'s own arguments: ``authurl``/``user``/``key``,
``preauthurl``/``preauthtoken``, ``credential_provider``, ``anonymous``) then the environment,
read the way the CLI reads it (``ST_AUTH``/``ST_USER``/``ST_KEY``, Keystone's ``OS_*``,
``OS_STORAGE_URL``/``OS_AUTH_TOKEN``). ``swift://c/p?account=AUTH_x`` (or ``account=``) opens
another account of the same cluster with the same token, as in the CLI. The data path's options
(``max_connections``, ``verify_reads``, ``cacert``...) are the store's too.

Pickles (dask) carry the storage URL and token, plus a provider only if it may travel, never a
user key, exactly like ``SwiftStore``'s; ``repr`` and ``to_dict`` show neither key nor token.

Why a file system under zarr's ``FsspecStore`` rather than our ``SwiftStore`` for URLs: with no
hook in ``make_store``, returning a ``SwiftStore`` would mean patching zarr. ``FsspecStore`` over
this file system passes zarr's own Store conformance suite (``tests/test_swift_url.py``), and the
file system keeps every request on ``SwiftStore``.

It is also a whole file system for everything else users keep on Swift (fsspec's abstract
suites pass, ``tests/test_fs_abstract.py``), split by concept: path rules and ``find``
(``fs_paths``: names are literal, only ``?account=`` is an option), file objects
(``fs_files``: ranged reads; all-or-nothing buffered writes, large files as segments sent while
writing), whole-file transfers (``fs_transfers``: ``put``/``get`` in bounded memory,
server-side ``cp``). Swift has no directories: a directory is what a listing shows under a
name; ``mkdir`` makes containers only, and directory markers are neither files nor
directories.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar

from fsspec.asyn import AsyncFileSystem
from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import default_buffer_prototype

from swiftzarr_batch.auth import (
    CredentialProvider,
    ResolvedAuth,
    Token,
    cached_authenticate,
    resolve_credentials,
)
from swiftzarr_batch.auth.providers import route_through
from swiftzarr_batch.errors import ConfigurationError
from swiftzarr_batch.store.fs_files import SwiftFile
from swiftzarr_batch.store.fs_paths import (
    PROTOCOL,
    account_option,
    directory_info,
    file_info,
    found_entries,
    strip_protocol,
)
from swiftzarr_batch.store.fs_writes import FileSystemWrites
from swiftzarr_batch.store.locations import for_account
from swiftzarr_batch.store.swift_store import SwiftStore
from swiftzarr_batch.swift.capabilities import cluster_info
from swiftzarr_batch.swift.container import SwiftContainer, is_marker
from swiftzarr_batch.swift.proxy import proxy_choice
from swiftzarr_batch.swift.tempurl import choose_digest, sign_object, temp_url_key

log = logging.getLogger(__name__)

__all__ = ["PROTOCOL", "SwiftFileSystem", "register"]

CREDENTIAL_OPTIONS = frozenset(
    {"authurl", "user", "key", "preauthurl", "preauthtoken", "credential_provider", "anonymous"}
)
DATA_OPTIONS = frozenset(
    {
        "max_connections",
        "retry",
        "verify_tls",
        "verify_reads",
        "verify_writes",
        "connect_timeout",
        "read_timeout",
        "cacert",
        "proxy",
        "read_only",
        "storage_policy",
        "delete_after",
    }
)
SECRET_OPTIONS = frozenset({"key", "preauthtoken", "credential_provider", "state"})
_FSSPEC_OPTIONS = frozenset(
    {"use_listings_cache", "listings_expiry_time", "max_paths", "batch_size", "loop"}
)


@dataclass(frozen=True)
class _Travelling:
    """What a pickled file system carries: a token (repr hides it), a provider only if it may
    travel, the data path's options. Its own ``repr`` shows the storage URL only."""

    token: Token
    provider: CredentialProvider | None
    anonymous: bool
    data: dict[str, Any]

    def __repr__(self) -> str:
        return f"<swift account {self.token.storage_url}>"


def _rebuild(state: _Travelling, asynchronous: bool) -> SwiftFileSystem:
    return SwiftFileSystem(state=state, asynchronous=asynchronous)


class SwiftFileSystem(FileSystemWrites, AsyncFileSystem):  # type: ignore[misc]  # fsspec: no types
    """An fsspec ``AsyncFileSystem`` over one Swift account (see the module docstring)."""

    protocol: ClassVar[tuple[str, ...]] = (PROTOCOL,)
    root_marker = ""
    # Not fsspec's per-process instance cache: credentials come from the environment *when the
    # URL is opened* (a cached instance would keep the first ones). An instance costs no
    # request; the authenticated sessions are shared per process anyway.
    cachable = False

    def __init__(
        self,
        *,
        account: str | None = None,
        state: _Travelling | None = None,
        asynchronous: bool = False,
        **options: Any,
    ) -> None:
        unknown = set(options) - CREDENTIAL_OPTIONS - DATA_OPTIONS - _FSSPEC_OPTIONS
        if unknown:
            raise ConfigurationError(
                f"unknown storage option(s) for swift:// {sorted(unknown)}; the store's own "
                f"arguments are accepted: {sorted(CREDENTIAL_OPTIONS | DATA_OPTIONS)} "
                "and account"
            )
        fsspec_options = {k: v for k, v in options.items() if k in _FSSPEC_OPTIONS}
        super().__init__(asynchronous=asynchronous, **fsspec_options)
        self._stores: dict[str, SwiftStore] = {}
        if state is not None:
            self._token: Token | None = state.token
            self._provider = state.provider
            self._anonymous, self._data = state.anonymous, dict(state.data)
            return
        self._data = {k: v for k, v in options.items() if k in DATA_OPTIONS}
        self._anonymous = bool(options.get("anonymous"))
        if self._anonymous:
            if not options.get("preauthurl"):
                raise ConfigurationError("swift:// with anonymous=True needs preauthurl")
            self._token, self._provider = Token(str(options["preauthurl"]).rstrip("/"), ""), None
            return
        if options.get("credential_provider") is not None:
            provider = options["credential_provider"]
            given = ResolvedAuth(provider, None, "credential_provider")
            self._token, self._provider = for_account(given, account)
            return
        resolved = resolve_credentials(  # the arguments, else the environment, as the CLI
            authurl=options.get("authurl"),
            user=options.get("user"),
            key=options.get("key"),
            preauthurl=options.get("preauthurl"),
            preauthtoken=options.get("preauthtoken"),
            verify_tls=bool(options.get("verify_tls", True)),
            cacert=options.get("cacert"),
        )
        route_through(resolved.provider, proxy_choice(options.get("proxy")))
        self._token, self._provider = for_account(resolved, account)

    # -- identity, pickling -----------------------------------------------------------------
    def __repr__(self) -> str:
        url = self._token.storage_url if self._token else "<not yet authenticated>"
        return f"SwiftFileSystem(storage_url={url!r})"

    def __eq__(self, other: object) -> bool:
        """The same account with the same data path options (the storage URL authenticates
        once per process if needed, as ``SwiftStore``'s equality does)."""
        return isinstance(other, SwiftFileSystem) and self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash((PROTOCOL, self._anonymous))

    def _identity(self) -> tuple[str, bool, str]:
        data = repr(sorted(self._data.items()))
        return self._current_token().storage_url, self._anonymous, data

    def __reduce__(self) -> tuple[Callable[..., SwiftFileSystem], tuple[Any, ...]]:
        """URL + token (+ a provider that may travel), never a key: like ``SwiftStore``."""
        token = self._current_token()
        provider = self._provider if getattr(self._provider, "travels", False) else None
        state = _Travelling(token, provider, self._anonymous, self._data)
        return _rebuild, (state, self.asynchronous)

    def to_dict(self, *, include_password: bool = True) -> dict[str, Any]:
        """fsspec's JSON form without secrets (whatever ``include_password`` says): a file
        system rebuilt from it takes its credentials from the environment."""
        out: dict[str, Any] = super().to_dict(include_password=False)
        for name in SECRET_OPTIONS:
            out.pop(name, None)
        return out

    def _current_token(self) -> Token:
        """The token in use (authenticating once per process, blocking, if none yet)."""
        for store in self._stores.values():
            return store.session.token
        if self._token is None:
            assert self._provider is not None
            self._token = cached_authenticate(self._provider)
        return self._token

    # -- paths ------------------------------------------------------------------------------
    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        return strip_protocol(path)

    @staticmethod
    def _get_kwargs_from_urls(path: str) -> dict[str, Any]:
        account = account_option(str(path))
        return {"account": account} if account else {}

    def store(self, container: str) -> SwiftStore:
        """The ``SwiftStore`` at the root of ``container`` (one per container, sharing the
        process's session): what every path operation of this file system goes through. A
        name Swift would refuse is an ``InvalidNameError`` here, before any request."""
        found = self._stores.get(container)
        if found is None:
            if self._anonymous:
                assert self._token is not None
                found = SwiftStore(
                    container, preauthurl=self._token.storage_url, anonymous=True, **self._data
                )
            elif self._provider is not None:
                found = SwiftStore(container, credential_provider=self._provider, **self._data)
            else:
                assert self._token is not None
                found = SwiftStore(
                    container,
                    preauthurl=self._token.storage_url,
                    preauthtoken=self._token.token,
                    **self._data,
                )
            self._stores[container] = found
        return found

    def split_path(self, path: str) -> tuple[SwiftStore, str]:
        """``container/key`` -> (the container's store, the key; "" for the container)."""
        stripped = self._strip_protocol(path)
        if not stripped:
            raise ConfigurationError("a swift:// path needs a container: swift://CONTAINER/KEY")
        container, _, key = stripped.partition("/")
        store = self.store(container)
        if key:
            store.object_name(key)  # InvalidNameError now for '..', '//', NUL, too long
        return store, key

    _split = split_path

    async def _object(self, path: str) -> tuple[SwiftContainer, str]:
        """The container and object name of ``path`` for reading."""
        store, key = self.split_path(path)
        return await store.swift_container(), store.object_name(key)

    # -- file objects -----------------------------------------------------------------------
    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: int | str | None = "default",
        autocommit: bool = True,
        cache_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> SwiftFile:
        """A file object (``store.fs_files``): "rb", "wb" or "xb". Writing is refused here,
        at ``open()``, when this file system cannot write (read-only, anonymous, signed link);
        "xb" raises ``FileExistsError`` here when the file exists."""
        if mode not in ("rb", "wb", "xb"):
            raise NotImplementedError(
                f"{path}: mode {mode!r}: Swift objects are written whole ('wb', 'xb') or read "
                "('rb'); appending ('ab') would rewrite the object"
            )
        if not autocommit:
            raise NotImplementedError("swift:// files are committed at close (autocommit=True)")
        if mode != "rb":
            self._writable(path)
            if mode == "xb" and self.exists(path):
                raise FileExistsError(path)
        return SwiftFile(self, path, mode, block_size, cache_options=cache_options, **kwargs)

    # -- reads ------------------------------------------------------------------------------
    async def _cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        store, key = self.split_path(path)
        if not key:
            raise IsADirectoryError(path)
        wanted = await self._byte_request(path, start, end)
        value = await store.get(key, default_buffer_prototype(), wanted)
        if value is None:
            raise FileNotFoundError(path)
        return value.to_bytes()

    async def _byte_request(
        self, path: str, start: int | None, end: int | None
    ) -> ByteRequest | None:
        """fsspec's ``start``/``end`` (Python slice bounds) as a zarr byte request (an empty
        one when nothing is asked for: the store then only checks that the object exists).
        A negative end needs the size (one HEAD)."""
        if (end is not None and end < 0) or (start is not None and start < 0 and end is not None):
            size = int((await self._info(path))["size"])
            start = 0 if start is None else (max(size + start, 0) if start < 0 else start)
            end = max(size + end, 0) if end < 0 else end
        if start is not None and start < 0:
            return SuffixByteRequest(-start)
        if end is None:
            return OffsetByteRequest(start) if start else None
        start = start or 0
        return RangeByteRequest(start, max(end, start))

    async def _info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        """A file (from a HEAD), a directory (something is listed under it) or a container;
        ``FileNotFoundError`` otherwise. A directory marker (an empty ``name/`` object, or an
        empty object typed ``application/directory``) is neither: only listings decide what
        a directory is, and they leave markers out."""
        store, key = self.split_path(path)
        name = self._strip_protocol(path)
        container = await store.swift_container()
        if not key:
            if await container.exists():
                return directory_info(name)
            raise FileNotFoundError(path)
        head = await container.head(store.object_name(key))
        if head is not None:
            entry = _head_entry(head.headers)
            if not is_marker({"name": key, **entry}):
                return file_info(name, entry)
        async for _ in self._entries(store, key.rstrip("/") + "/", limit=1):
            return directory_info(name)
        raise FileNotFoundError(path)

    async def _entries(
        self, store: SwiftStore, prefix: str, *, limit: int | None = None
    ) -> AsyncIterator[dict[str, Any]]:
        """Every object under ``prefix``, without directory markers."""
        container = await store.swift_container()
        async for page in container.list_pages(prefix, limit=limit):
            for entry in page:
                yield entry

    async def _ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        """One level: files and directories (a "folder" holding only markers is none)."""
        store, key = self.split_path(path)
        base = f"{key.rstrip('/')}/" if key else ""
        top = f"{store.container}/"
        container = await store.swift_container()
        out: list[dict[str, Any]] = []
        async for entry in container.list_level(base):
            if "subdir" in entry:
                out.append(directory_info(top + entry["subdir"].rstrip("/")))
            else:
                out.append(file_info(top + entry["name"], entry))
        if not out:
            info = await self._info(path)  # a file lists as itself; FileNotFoundError if none
            out = [info] if info["type"] == "file" else []
        return out if detail else [e["name"] for e in out]

    async def _find(
        self,
        path: str,
        maxdepth: int | None = None,
        withdirs: bool = False,
        **kwargs: Any,
    ) -> Any:
        """fsspec's ``find`` (``store.fs_paths.found_entries``) from one streamed listing,
        not a walk of ``_ls``."""
        if maxdepth is not None and maxdepth < 1:
            raise ValueError("maxdepth must be at least 1")
        detail = kwargs.pop("detail", False)
        store, key = self.split_path(path)
        root = self._strip_protocol(path)
        base = f"{key.rstrip('/')}/" if key else ""
        top = f"{store.container}/"
        files = (
            (top + e["name"], file_info(top + e["name"], e))
            async for e in self._entries(store, base)
        )
        found = found_entries(
            root, [item async for item in files], maxdepth=maxdepth, withdirs=withdirs
        )
        if withdirs and (found if key else await self._isdir(root)):
            found[root] = directory_info(root)  # listed under: a directory (no request)
        if not found and key:
            try:
                info = await self._info(path)
            except FileNotFoundError:
                info = None
            if info is not None and info["type"] == "file":
                found[root] = info
        names = sorted(found)
        return {n: found[n] for n in names} if detail else names

    async def _exists(self, path: str, **kwargs: Any) -> bool:
        try:
            await self._info(path)
        except FileNotFoundError:
            return False
        return True

    def ukey(self, path: str) -> str:
        """What changes whenever the content does: the object's ETag (a large object's is
        the MD5 of its segments' ETags, which changes with any segment)."""
        info = self.info(path)
        if info["type"] != "file":
            raise IsADirectoryError(path)
        return str(info["ETag"])

    def checksum(self, path: str) -> int:
        """fsspec's change token: an ``int`` from the ETag (``ukey``), so it changes whenever
        the content does; raises ``IsADirectoryError`` for a directory."""
        return int(self.ukey(path)[:16], 16)

    def modified(self, path: str) -> datetime:
        """Last-Modified of the object (UTC)."""
        info = self.info(path)
        if info["type"] != "file" or not info.get("last_modified"):
            raise IsADirectoryError(path)
        return _parse_time(str(info["last_modified"]))

    def sign(self, path: str, expiration: int = 100, **kwargs: Any) -> str:
        """A temp URL of the file, for GET (``method="PUT"``/``"HEAD"`` also), valid for
        ``expiration`` seconds, signed with the account's (else the container's) Temp-URL
        key; ``create_key=True`` sets a container key when there is none."""
        return str(self._loop_run(self._sign(path, expiration, **kwargs)))

    def _loop_run(self, coro: Any) -> Any:
        from fsspec.asyn import sync

        return sync(self.loop, lambda: coro)

    async def _sign(
        self, path: str, expiration: int, method: str = "GET", create_key: bool = False
    ) -> str:
        store, key = self.split_path(path)
        if not key:
            raise IsADirectoryError(f"{path}: sign() signs one file")
        session = await store.asession()
        secret = await temp_url_key(session, store.container, create=create_key)
        digest = choose_digest(await cluster_info(session))
        return sign_object(
            secret,
            storage_url=session.storage_url,
            container=store.container,
            name=store.object_name(key),
            method=method,
            expires_at=int(time.time() + expiration),
            digest=digest,
        )


def _head_entry(headers: Any) -> dict[str, Any]:
    """A HEAD's headers as a listing entry (``fs_paths.file_info`` reads either)."""
    entry: dict[str, Any] = {
        "bytes": int(headers.get("Content-Length", 0)),
        "hash": headers.get("Etag", "").strip('"'),
        "content_type": headers.get("Content-Type"),
        "last_modified": headers.get("Last-Modified"),
    }
    if "X-Static-Large-Object" in headers:
        entry["slo_etag"] = entry.pop("hash")
    return entry


def _parse_time(text: str) -> datetime:
    """A listing's ``2026-12-08T01:02:03.456789`` or a HEAD's RFC 1123 date, in UTC."""
    try:
        return datetime.fromisoformat(text).replace(tzinfo=UTC)
    except ValueError:
        return parsedate_to_datetime(text).astimezone(UTC)


def register() -> None:
    """Make fsspec know ``swift://`` even without this package's installed entry points (a
    source checkout on ``PYTHONPATH``); an implementation registered by someone else stays."""
    from fsspec.registry import known_implementations, registry

    if PROTOCOL not in registry and PROTOCOL not in known_implementations:
        from fsspec.registry import register_implementation

        register_implementation(PROTOCOL, f"{__name__}.SwiftFileSystem")
