"""A workflow's target as a versioned repository (``versioned = true`` in its config): the
run writes into one writable session and commits once, at the end, after it verified.

Readers of the repository see the previous commit until then, never a half-done run; a run
killed at any point leaves the last commit as it was, and the next run starts a fresh session
from it (after the dead run's lease expired). The branch lease replaces the dataset lock: a
second run exits with 75 as with the lock.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from zarr.abc.store import Store

from swiftzarr_batch.errors import ConfigurationError
from swiftzarr_batch.store.swift_store import SwiftStore
from swiftzarr_batch.versioned import (
    LeaseHeldError,
    ReadonlySession,
    Repository,
    WritableSession,
)
from swiftzarr_batch.workflows.common import LockHeldError

log = logging.getLogger(__name__)


@contextmanager
def versioned_session(store: Store, ttl: float, branch: str = "main") -> Iterator[WritableSession]:
    """A writable session on the repository at ``store`` (created if missing), closed (and its
    lease released) on the way out; ``LockHeldError`` when another run holds the branch."""
    if not isinstance(store, SwiftStore):
        raise ConfigurationError(f"{store}: a versioned target must be a swift:// location")
    repo = Repository.from_store(store, create=True)
    try:
        session = repo.writable_session(branch, lease_ttl=ttl)
    except LeaseHeldError as exc:
        raise LockHeldError(str(exc)) from None
    with session:
        yield session


def source_snapshot(store: Store, branch: str = "main") -> ReadonlySession:
    """The head of the repository at ``store``, read-only: one whole commit."""
    if not isinstance(store, SwiftStore):
        raise ConfigurationError(f"{store}: a versioned source must be a swift:// location")
    return Repository.from_store(store).readonly_session(branch)
