"""The zarr store on Swift: ``SwiftStore``, what a zarr key is (``keys``), reading a hierarchy's
metadata (``hierarchy``) and opening any store from a URL or path (``locations``).

It is the only room that knows both zarr and Swift; jobs, transfers and workflows use a store
through its public members (``session``, ``swift_container()``, ``object_name()``) and the
``ObjectStore`` capability, never its private ones.
"""

from swiftzarr_batch.store.swift_store import SwiftStore

__all__ = ["SwiftStore"]
