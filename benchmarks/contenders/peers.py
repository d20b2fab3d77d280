"""The stores a user would pick instead: zarr-swiftstore, s3fs and obstore (through Swift's
s3api middleware), and swiftspec; all driven through the same zarr/dask code as ``ours``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from benchmarks.contenders.base import ZarrContender
from benchmarks.contenders.files import FileOps

S3_REGION = "us-east-1"
#: zarr-swiftstore's top-level package is called ``zarrswift``, like this project's compatibility
#: shim; benchmarks/setup_venv.sh installs it here, outside site-packages.
PEERS_DIR = Path(sys.prefix) / "peers"


def _import_zarr_swiftstore() -> Any:
    for name in [m for m in sys.modules if m == "zarrswift" or m.startswith("zarrswift.")]:
        del sys.modules[name]
    sys.path.insert(0, str(PEERS_DIR))
    import zarrswift

    if not str(zarrswift.__file__).startswith(str(PEERS_DIR)):
        raise RuntimeError(
            f"zarr-swiftstore not found in {PEERS_DIR} (got {zarrswift.__file__});"
            " run benchmarks/setup_venv.sh"
        )
    return zarrswift


class ZarrSwiftStore(ZarrContender):
    """zarr-swiftstore 3.0.2 (python-swiftclient Connection under asyncio.to_thread)."""

    name = "zarr-swiftstore"

    def setup(self) -> dict[str, Any]:
        super().setup()
        from swiftclient.client import get_auth

        zarrswift = _import_zarr_swiftstore()
        self.url, self.token = get_auth(self.server.auth_url, self.server.user, self.server.key)
        self.warm_up()
        return {"version": zarrswift.__version__}

    def store(self, container: str, prefix: str, *, read_only: bool = False) -> Any:
        from zarrswift.storage import SwiftStore

        # Pre-authenticated, as its README shows: no auth request per store or per pickle.
        return SwiftStore(
            container,
            prefix,
            {"preauthurl": self.url, "preauthtoken": self.token},
            read_only=read_only,
        )


class S3fs(FileOps, ZarrContender):
    """zarr ``FsspecStore`` on s3fs, through Swift's s3api middleware."""

    name = "s3fs"

    def files(self) -> Any:
        """A synchronous s3fs for its file objects (W9), made once per worker."""
        if getattr(self, "_files", None) is None:
            import s3fs

            self._files = s3fs.S3FileSystem(
                key=self.server.user,
                secret=self.server.key,
                endpoint_url=self.server.proxy_url,
                client_kwargs={"region_name": S3_REGION},
                skip_instance_cache=True,
                use_listings_cache=False,
            )
        return self._files

    def setup(self) -> dict[str, Any]:
        super().setup()
        import s3fs

        self.fs = s3fs.S3FileSystem(
            key=self.server.user,
            secret=self.server.key,
            endpoint_url=self.server.proxy_url,
            client_kwargs={"region_name": S3_REGION},
            asynchronous=True,
            skip_instance_cache=True,
            use_listings_cache=False,
        )
        self.warm_up()
        return {"version": s3fs.__version__}

    def store(self, container: str, prefix: str, *, read_only: bool = False) -> Any:
        from zarr.storage import FsspecStore

        return FsspecStore(self.fs, read_only=read_only, path=f"{container}/{prefix}".rstrip("/"))


class Obstore(ZarrContender):
    """zarr ``ObjectStore`` on obstore (Rust object_store), through Swift's s3api middleware."""

    name = "obstore"

    def setup(self) -> dict[str, Any]:
        super().setup()
        import obstore

        self.warm_up()
        return {"version": getattr(obstore, "__version__", "?")}

    def s3(self, container: str, prefix: str = "") -> Any:
        from obstore.store import S3Store

        return S3Store(
            container,
            prefix=prefix or None,
            endpoint=self.server.proxy_url,
            access_key_id=self.server.user,
            secret_access_key=self.server.key,
            region=S3_REGION,
            virtual_hosted_style_request=False,
            client_options={"allow_http": True},
        )

    def store(self, container: str, prefix: str, *, read_only: bool = False) -> Any:
        from zarr.storage import ObjectStore

        return ObjectStore(self.s3(container, prefix), read_only=read_only)

    def w5_delete(self, container: str, prefix: str, expect: int) -> dict[str, Any]:
        """List, then obstore's batched delete (S3 DeleteObjects, 1 000 keys per request)."""
        import obstore

        s3 = self.s3(container)
        paths = [m["path"] for batch in obstore.list(s3, prefix=prefix) for m in batch]
        obstore.delete(s3, paths)
        return {
            "objects": len(paths),
            "bytes": 0,
            "check": "ok" if len(paths) == expect else f"FAIL: deleted {len(paths)} of {expect}",
        }


class Swiftspec(ZarrContender):
    """swiftspec 0.0.4 (fsspec ``swift://``) under zarr's FsspecStore.

    It builds ``https://`` URLs only, so against a plain-HTTP endpoint it can only fail; the
    failure is its result (the harness reports it rather than skipping it).
    """

    name = "swiftspec"

    def setup(self) -> dict[str, Any]:
        super().setup()
        import swiftspec  # noqa: F401
        from swiftclient.client import get_auth

        self.url, self.token = get_auth(self.server.auth_url, self.server.user, self.server.key)
        return {}

    def store(self, container: str, prefix: str, *, read_only: bool = False) -> Any:
        from swiftspec import SWIFTFileSystem
        from zarr.storage import FsspecStore

        parts = urlsplit(self.url)
        account = parts.path.rsplit("/", 1)[-1]
        fs = SWIFTFileSystem(
            auth=[{"url": f"https://{parts.netloc}/v1/{account}", "token": self.token}],
            asynchronous=True,
        )
        base = f"swift://{parts.netloc}/{account}/{container}/{prefix}".rstrip("/")
        return FsspecStore(fs, read_only=read_only, path=base)


class ZarrMemory(ZarrContender):
    """zarr's ``MemoryStore``: no network at all. Not a peer: its CPU per chunk is the floor
    that dask + zarr cost every store here, so a store's own cost is its row minus this one."""

    name = "zarr-memory"

    def setup(self) -> dict[str, Any]:
        super().setup()
        self.dicts: dict[str, dict[str, Any]] = {}
        self.warm_up()
        return {}

    def store(self, container: str, prefix: str, *, read_only: bool = False) -> Any:
        from zarr.storage import MemoryStore

        key = f"{container}/{prefix}"
        if key not in self.dicts:  # a new repetition: drop the older ones of this case
            parent = key.rsplit("/", 1)[0]
            for old in [k for k in self.dicts if k.rsplit("/", 1)[0] == parent]:
                del self.dicts[old]
            self.dicts[key] = {}
        return MemoryStore(self.dicts[key], read_only=read_only)
