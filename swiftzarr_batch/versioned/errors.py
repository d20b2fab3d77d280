"""Typed errors of versioned repositories (all ``SwiftZarrError``s, so callers catch them
together with the rest of the package's)."""

from __future__ import annotations

from swiftzarr_batch.errors import SwiftZarrError


class VersionedError(SwiftZarrError):
    """Base class of the errors of a versioned repository."""


class RepositoryNotFoundError(VersionedError, FileNotFoundError):
    """No repository at that location (``Repository.open``); ``open_or_create`` makes one."""


class RefNotFoundError(VersionedError, KeyError):
    """No such branch, tag or snapshot, or no snapshot as old as the time asked for."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CorruptRecordError(VersionedError, ValueError):
    """A record (head, snapshot, manifest piece) is not what its name says: unreadable JSON,
    a content id that does not match its body, or a chunk a snapshot references is gone."""


class LeaseHeldError(VersionedError):
    """Another writer holds the branch's lease: only one writable session per branch at a time."""


class LeaseLostError(VersionedError):
    """This session's lease expired or was taken over (a newer fencing number exists); it
    committed nothing. Its writes stay unreferenced until ``gc`` removes them."""


class BranchMovedError(VersionedError):
    """The branch head moved since this session started (a writer that took an expired lease
    committed in between); this session's commit was refused, the other one is intact."""


class CommitLostError(VersionedError):
    """The head PUT of this commit was overwritten by a racing head PUT (see the docs'
    guarantees: Swift has no compare-and-swap). The snapshot exists and is readable by its id;
    the branch points to the other writer's snapshot."""


class SessionClosedError(VersionedError):
    """The writable session already committed or was closed; open a new one."""
