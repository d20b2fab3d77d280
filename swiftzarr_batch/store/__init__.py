"""The zarr store on Swift: ``SwiftStore``, what a zarr key is (``keys``), reading a hierarchy's
metadata (``hierarchy``), opening any store or an account's session from a URL or path
(``locations``), ``swift://`` URLs for zarr/xarray/dask users (``filesystem``: an fsspec file
system on the store's data path), and what a store can do beyond zarr's ABC (``objects``).

It is the only room that knows both zarr and Swift; jobs, transfers and workflows use a store
through its public members (``session``, ``swift_container()``, ``object_name()``) and the
object-level capability ``objects.swift_objects(store)`` (listings with sizes and MD5s,
server-side copies, bulk deletes, newest-replica reads, expiring objects), never by asking
which class a store is, and never through its private members.
"""

from swiftzarr_batch.store import filesystem
from swiftzarr_batch.store.objects import ObjectInfo, SwiftObjects, swift_objects
from swiftzarr_batch.store.swift_store import SwiftStore

filesystem.register()  # swift:// for fsspec (and so zarr, xarray, dask) from a plain checkout

__all__ = ["ObjectInfo", "SwiftObjects", "SwiftStore", "swift_objects"]
