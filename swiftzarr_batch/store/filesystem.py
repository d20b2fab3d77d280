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
file system keeps every request on ``SwiftStore``. What ``FsspecStore`` never calls is not here:
file-like ``open()`` (reads and writes go through ``cat_file``/``pipe_file``), ``put``/``get``
of local files, server-side ``cp_file`` (``swiftzarr copy`` does that).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
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
from swiftzarr_batch.store.locations import for_account, parse_swift_url
from swiftzarr_batch.store.objects import swift_objects
from swiftzarr_batch.store.swift_store import SwiftStore
from swiftzarr_batch.swift.names import validate_key
from swiftzarr_batch.swift.proxy import proxy_choice

log = logging.getLogger(__name__)

__all__ = ["PROTOCOL", "SwiftFileSystem", "register"]

PROTOCOL = "swift"
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


class SwiftFileSystem(AsyncFileSystem):  # type: ignore[misc]  # fsspec has no type information
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
        text = str(path)
        if text.startswith(f"{PROTOCOL}://"):
            text = text[len(PROTOCOL) + 3 :]
        return text.split("?", 1)[0].strip("/")

    @staticmethod
    def _get_kwargs_from_urls(path: str) -> dict[str, Any]:
        if not str(path).startswith(f"{PROTOCOL}://"):
            return {}
        account = parse_swift_url(str(path)).account  # unknown ?options: a clear error
        return {"account": account} if account else {}

    def store(self, container: str) -> SwiftStore:
        """The ``SwiftStore`` at the root of ``container`` (one per container, sharing the
        process's session): what every path operation of this file system goes through."""
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

    def _split(self, path: str) -> tuple[SwiftStore, str]:
        """``container/key`` -> (the container's store, the key; "" for the container)."""
        stripped = self._strip_protocol(path)
        if not stripped:
            raise ConfigurationError("a swift:// path needs a container: swift://CONTAINER/KEY")
        container, _, key = stripped.partition("/")
        return self.store(container), key

    # -- reads ------------------------------------------------------------------------------
    async def _cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        store, key = self._split(path)
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
        store, key = self._split(path)
        name = self._strip_protocol(path)
        if not key:
            if await (await store.swift_container()).exists():
                return {"name": name, "size": 0, "type": "directory"}
            raise FileNotFoundError(path)
        found = await swift_objects(store).head(key)  # type: ignore[union-attr]
        if found is not None:
            return {"name": name, "size": found.size, "type": "file", "ETag": found.md5}
        async for _ in self._entries(store, key.rstrip("/") + "/", limit=1):
            return {"name": name, "size": 0, "type": "directory"}
        raise FileNotFoundError(path)

    async def _entries(
        self, store: SwiftStore, prefix: str, *, delimiter: str | None = None, limit: int = 10_000
    ) -> AsyncIterator[dict[str, Any]]:
        """Listing entries under ``prefix``, without directory markers (``name/`` objects)."""
        if prefix.strip("/"):
            validate_key(prefix.strip("/"))
        container = await store.swift_container()
        async for page in container.list_pages(prefix, delimiter=delimiter, limit=limit):
            for entry in page:
                if "subdir" in entry or not entry["name"].endswith("/"):
                    yield entry

    async def _ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        store, key = self._split(path)
        base = f"{key.rstrip('/')}/" if key else ""
        top = f"{store.container}/"
        out: list[dict[str, Any]] = []
        async for entry in self._entries(store, base, delimiter="/"):
            if "subdir" in entry:
                name = top + entry["subdir"].rstrip("/")
                out.append({"name": name, "size": 0, "type": "directory"})
            else:
                out.append(_file_info(top + entry["name"], entry))
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
        """Every object under ``path`` from one streamed listing (not a walk of ``_ls``)."""
        detail = kwargs.pop("detail", False)
        store, key = self._split(path)
        root = self._strip_protocol(path)
        base = f"{key.rstrip('/')}/" if key else ""
        top = f"{store.container}/"
        found: dict[str, dict[str, Any]] = {}
        if key:
            head = await swift_objects(store).head(key)  # type: ignore[union-attr]
            if head is not None:
                found[root] = {"name": root, "size": head.size, "type": "file"}
        async for entry in self._entries(store, base):
            name = top + entry["name"]
            depth = name[len(root) :].strip("/").count("/") + 1
            if maxdepth is not None and depth > maxdepth:
                continue
            found[name] = _file_info(name, entry)
            if withdirs:
                parent = name.rsplit("/", 1)[0]
                while len(parent) > len(root) and parent not in found:
                    found[parent] = {"name": parent, "size": 0, "type": "directory"}
                    parent = parent.rsplit("/", 1)[0]
        if withdirs and key and found and root not in found:
            found[root] = {"name": root, "size": 0, "type": "directory"}
        names = sorted(found)
        return {n: found[n] for n in names} if detail else names

    async def _exists(self, path: str, **kwargs: Any) -> bool:
        try:
            await self._info(path)
        except FileNotFoundError:
            return False
        return True

    # -- writes -----------------------------------------------------------------------------
    async def _pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kw: Any) -> None:
        store, key = self._split(path)
        if not key:
            raise IsADirectoryError(path)
        objects = swift_objects(store)
        assert objects is not None
        await objects.ensure_container()  # once per process: a new container's first write
        buffer = default_buffer_prototype().buffer.from_bytes(value)
        if mode == "create":
            await store.set_if_not_exists(key, buffer)
        else:
            await store.set(key, buffer)

    async def _rm_file(self, path: str, **kwargs: Any) -> None:
        store, key = self._split(path)
        if key:
            await store.delete(key)  # a missing object is not an error (nothing to do)

    async def _rm(
        self,
        path: str | list[str],
        recursive: bool = False,
        batch_size: int | None = None,
        maxdepth: int | None = None,
        **kwargs: Any,
    ) -> None:
        """Delete objects; ``recursive``: everything under the path too, in bulk (large
        objects with their segments). Missing paths are no error: zarr's ``clear`` deletes a
        directory and then, again, the keys it held."""
        for one in [path] if isinstance(path, str) else path:
            store, key = self._split(one)
            if key:
                await store.delete(key)
            if recursive:
                await store.delete_dir(key.rstrip("/"))

    async def _mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        """Swift has no directories: a key's "directory" exists once an object is under it."""

    async def _makedirs(self, path: str, exist_ok: bool = False) -> None:
        """As ``_mkdir``: nothing to create."""


def _file_info(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "size": int(entry.get("bytes", 0)), "type": "file"}


def register() -> None:
    """Make fsspec know ``swift://`` even without this package's installed entry points (a
    source checkout on ``PYTHONPATH``); an implementation registered by someone else stays."""
    from fsspec.registry import known_implementations, registry

    if PROTOCOL not in registry and PROTOCOL not in known_implementations:
        from fsspec.registry import register_implementation

        register_implementation(PROTOCOL, f"{__name__}.SwiftFileSystem")
