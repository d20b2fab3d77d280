"""The JSON records of a versioned repository and where they live under its prefix.

Layout (keys relative to the repository's prefix)::

    repo.json                    format and manifest piece size; written once
    refs/branch.<name>.json      a branch head: snapshot id, fencing number, time, writer
    refs/lease.<name>.json       the branch's single-writer lease (holder, fence, expiry)
    refs/tag.<name>.json         a tag: snapshot id (created once, never moved)
    snapshots/<id>               a snapshot: parent, time, message, manifest pieces
    manifests/<id>               a manifest piece: a sorted run of key -> (session, size)
    chunks/<session>/<key>       what a session wrote for ``key`` (data, or a deletion marker)
    sessions/<session>/<n>.json  a session's "delete everything under this prefix" records

Snapshots and manifest pieces are content-addressed: their id is the SHA-256 of their body,
so a reader checks every record it reads against its name, two writers can never produce
different records under one name, and an object once referenced is never rewritten.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from swiftzarr_batch.errors import InvalidNameError
from swiftzarr_batch.versioned.errors import CorruptRecordError

FORMAT = "swiftzarr-versioned"
FORMAT_VERSION = 1
REPO_KEY = "repo.json"
SNAPSHOTS_DIR = "snapshots"
MANIFESTS_DIR = "manifests"
CHUNKS_DIR = "chunks"
SESSIONS_DIR = "sessions"
REFS_DIR = "refs"
DELETED_CONTENT_TYPE = "application/x-swiftzarr-deleted"
"""A session's "this key is deleted" marker: an empty object with this content type under the
session's own name for the key, so the later of a write and a delete wins (one object)."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_ID = re.compile(r"^[0-9a-f]{32}$")


def check_ref_name(name: str, what: str = "branch") -> str:
    """``name`` if it is a valid branch or tag name (it becomes part of an object name), else
    ``InvalidNameError`` naming ``what``."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidNameError(
            f"{what} name {name!r}: use 1-100 letters, digits, '.', '_' or '-' "
            "(starting with a letter or digit)"
        )
    return name


def check_id(snapshot_id: str) -> str:
    """``snapshot_id`` if it is 32 lowercase hex digits, else ``InvalidNameError``: ids from users
    and from records are checked before they name an object."""
    if not isinstance(snapshot_id, str) or not _ID.match(snapshot_id):
        raise InvalidNameError(f"snapshot id {snapshot_id!r}: expected 32 lowercase hex digits")
    return snapshot_id


def branch_key(name: str) -> str:
    """Where the head of branch ``name`` lives (the name is checked)."""
    return f"{REFS_DIR}/branch.{check_ref_name(name)}.json"


def lease_key(name: str) -> str:
    """Where the lease of branch ``name`` lives (the name is checked)."""
    return f"{REFS_DIR}/lease.{check_ref_name(name)}.json"


def tag_key(name: str) -> str:
    """Where tag ``name`` lives (the name is checked)."""
    return f"{REFS_DIR}/tag.{check_ref_name(name, 'tag')}.json"


def snapshot_key(snapshot_id: str) -> str:
    """Where snapshot ``snapshot_id`` lives (the id is checked)."""
    return f"{SNAPSHOTS_DIR}/{check_id(snapshot_id)}"


def piece_key(piece_id: str) -> str:
    """Where manifest piece ``piece_id`` lives (the id is checked)."""
    return f"{MANIFESTS_DIR}/{check_id(piece_id)}"


def chunk_key(session: str, key: str) -> str:
    """Where ``session`` wrote ``key``. Neither is checked here: the session id is ours and the key
    is zarr's."""
    return f"{CHUNKS_DIR}/{session}/{key}"


def content_id(body: bytes) -> str:
    """The id of a content-addressed record: the first 32 hex digits (128 bits) of its body's
    SHA-256."""
    return hashlib.sha256(body).hexdigest()[:32]


def encode(doc: Any) -> bytes:
    """A record's body: compact JSON with sorted keys, so equal records get equal bodies and equal
    ids."""
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def decode(body: bytes | bytearray, what: str) -> Any:
    """Parse a record; anything but valid JSON of an object is a CorruptRecordError."""
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise CorruptRecordError(f"{what}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise CorruptRecordError(f"{what}: expected a JSON object")
    return doc


def decode_addressed(body: bytes | bytearray, record_id: str, what: str) -> Any:
    """Parse a content-addressed record after checking its body hashes to its id."""
    if content_id(bytes(body)) != record_id:
        raise CorruptRecordError(f"{what} {record_id}: its content does not match its id")
    return decode(body, f"{what} {record_id}")


def utc(ts: float) -> datetime:
    """A record's ``time`` (seconds since the epoch) as an aware UTC datetime."""
    return datetime.fromtimestamp(ts, UTC)


@dataclass(frozen=True)
class PieceRef:
    """A manifest piece as a snapshot lists it: its id and the key range it covers."""

    id: str
    first: str
    last: str
    count: int

    def as_list(self) -> list[Any]:
        """The ``[id, first, last, count]`` row a snapshot record stores for this piece."""
        return [self.id, self.first, self.last, self.count]


@dataclass(frozen=True)
class Snapshot:
    """One committed state of the repository (immutable; ``id`` is its body's hash)."""

    id: str
    parent: str | None
    time: float
    message: str
    session: str
    pieces: tuple[PieceRef, ...]

    @property
    def written_at(self) -> datetime:
        """When the snapshot was committed (the committing writer's clock), as an aware UTC
        datetime."""
        return utc(self.time)

    @property
    def key_count(self) -> int:
        """How many keys the snapshot holds, from its piece list (no piece is read)."""
        return sum(p.count for p in self.pieces)

    @staticmethod
    def body(
        parent: str | None, time: float, message: str, session: str, pieces: list[PieceRef]
    ) -> bytes:
        """The body of a new snapshot record; its ``content_id`` is the snapshot's id."""
        return encode(
            {
                "format": FORMAT,
                "version": FORMAT_VERSION,
                "parent": parent,
                "time": time,
                "message": message,
                "session": session,
                "pieces": [p.as_list() for p in pieces],
            }
        )

    @classmethod
    def parse(cls, body: bytes | bytearray, snapshot_id: str) -> Snapshot:
        """The snapshot in ``body``, after checking it hashes to ``snapshot_id``; anything malformed
        (ids included) is a ``CorruptRecordError``."""
        doc = decode_addressed(body, snapshot_id, "snapshot")
        try:
            pieces = tuple(
                PieceRef(check_id(p[0]), str(p[1]), str(p[2]), int(p[3])) for p in doc["pieces"]
            )
            parent = doc["parent"]
            return cls(
                snapshot_id,
                None if parent is None else check_id(parent),
                float(doc["time"]),
                str(doc["message"]),
                str(doc["session"]),
                pieces,
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise CorruptRecordError(f"snapshot {snapshot_id}: malformed ({exc!r})") from None


@dataclass(frozen=True)
class Head:
    """Where a branch points, with the fencing number of the lease that moved it there."""

    snapshot: str
    fence: int
    time: float
    writer: str

    def body(self) -> bytes:
        """The body of the branch's head record (rewritten on every commit or rollback)."""
        return encode(
            {
                "snapshot": self.snapshot,
                "fence": self.fence,
                "time": self.time,
                "writer": self.writer,
            }
        )

    @classmethod
    def parse(cls, body: bytes | bytearray, what: str) -> Head:
        """The head record in ``body``; anything malformed, a bad snapshot id included, is a
        ``CorruptRecordError`` naming ``what``."""
        doc = decode(body, what)
        try:
            return cls(
                check_id(doc["snapshot"]), int(doc["fence"]), float(doc["time"]), str(doc["writer"])
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptRecordError(f"{what}: malformed ({exc!r})") from None


@dataclass(frozen=True)
class LogEntry:
    """One snapshot as ``Repository.log`` reports it."""

    id: str
    parent: str | None
    message: str
    written_at: datetime
    key_count: int
