"""Versioned datasets on plain Swift: atomic commits, snapshots, tags, time travel, rollback.

An icechunk-shaped API (``Repository``, writable and read-only sessions whose ``.store`` is a
zarr store) built only from what Swift's native API guarantees: atomic single-object PUTs,
newest-replica reads and server-side copies. The model and its guarantees are in the docs'
"Versioned datasets" section. This room sits above ``store`` (it uses ``SwiftStore`` and its
object-level extras) and below ``jobs``/``workflows``, which may commit through it.
"""

from swiftzarr_batch.versioned.errors import (
    BranchMovedError,
    CommitLostError,
    CorruptRecordError,
    LeaseHeldError,
    LeaseLostError,
    RefNotFoundError,
    RepositoryNotFoundError,
    SessionClosedError,
    VersionedError,
)
from swiftzarr_batch.versioned.maintenance import ExportReport, GCReport
from swiftzarr_batch.versioned.records import LogEntry
from swiftzarr_batch.versioned.repository import Diff, Repository
from swiftzarr_batch.versioned.sessions import ReadonlySession, WritableSession
from swiftzarr_batch.versioned.stores import SessionStore, SnapshotStore

__all__ = [
    "BranchMovedError",
    "CommitLostError",
    "CorruptRecordError",
    "Diff",
    "ExportReport",
    "GCReport",
    "LeaseHeldError",
    "LeaseLostError",
    "LogEntry",
    "ReadonlySession",
    "RefNotFoundError",
    "Repository",
    "RepositoryNotFoundError",
    "SessionClosedError",
    "SessionStore",
    "SnapshotStore",
    "VersionedError",
    "WritableSession",
]
