"""Manifests: which object holds each key of a snapshot, split in pieces.

A snapshot's manifest is a sorted list of pieces, each a run of consecutive keys (in Swift's
listing order, which is ``str`` order) mapping key -> (session that wrote it, size). A piece
holds at most ``piece_entries`` keys (10 000 by default), so a 1 M-key dataset has ~100 pieces
of a few hundred KB and nothing ever reads or writes its manifest whole:

- a reader finds a key's piece by bisecting the snapshot's piece ranges and keeps a few pieces
  in a small LRU cache (``ManifestReader``);
- a commit merges the session's sorted changes into the parent's pieces as two sorted streams
  (``merge_pieces``): a piece no change falls into is referenced again by id, unread; only the
  pieces changes fall into are read, merged and written anew (split when they grow past the
  cap), so commit cost follows the number of touched pieces, not the dataset's size.
"""

from __future__ import annotations

import asyncio
import bisect
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass

from swiftzarr_batch.versioned.errors import CorruptRecordError
from swiftzarr_batch.versioned.records import PieceRef, content_id, decode_addressed, encode

Ref = tuple[str, int]  # (session, size)
Piece = dict[str, Ref]  # key -> ref, in key order
LoadPiece = Callable[[str], Awaitable[bytes | bytearray]]
SavePiece = Callable[[str, bytes], Awaitable[None]]

DEFAULT_PIECE_ENTRIES = 10_000
_END = "\U0010ffff"


def parse_piece(body: bytes | bytearray, piece_id: str) -> Piece:
    """A manifest piece's entries, after checking its body hashes to ``piece_id``; anything
    malformed is a ``CorruptRecordError``."""
    doc = decode_addressed(body, piece_id, "manifest piece")
    try:
        sessions = [str(s) for s in doc["sessions"]]
        return {str(k): (sessions[int(s)], int(n)) for k, s, n in doc["entries"]}
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise CorruptRecordError(f"manifest piece {piece_id}: malformed ({exc!r})") from None


def piece_body(entries: list[tuple[str, Ref]]) -> bytes:
    """The body of a piece holding ``entries`` (already in key order); each session id is stored
    once. Its ``content_id`` is the piece's id."""
    sessions: dict[str, int] = {}
    rows = [[k, sessions.setdefault(s, len(sessions)), n] for k, (s, n) in entries]
    return encode({"sessions": list(sessions), "entries": rows})


def prefix_range(prefix: str) -> tuple[str, str]:
    """The lowest and highest key starting with ``prefix``, for range checks against pieces."""
    return prefix, prefix + _END


def overlaps(piece: PieceRef, low: str, high: str) -> bool:
    """Whether ``piece``'s key range meets ``[low, high]`` (both ends included)."""
    return piece.first <= high and piece.last >= low


class ManifestReader:
    """Key lookups and listings over one snapshot's pieces, with an LRU of parsed pieces.

    Memory is bounded by ``cache_pieces`` pieces (each at most ``piece_entries`` keys), not by
    the dataset. Concurrent lookups of one piece share a single GET."""

    def __init__(self, pieces: Iterable[PieceRef], load: LoadPiece, cache_pieces: int = 16) -> None:
        self.pieces = tuple(pieces)
        self._firsts = [p.first for p in self.pieces]
        self._load = load
        self._cache: OrderedDict[str, Piece] = OrderedDict()
        self._loading: dict[str, asyncio.Future[Piece]] = {}
        self._cache_pieces = cache_pieces

    async def piece(self, ref: PieceRef) -> Piece:
        """The parsed piece, from the LRU cache or one GET shared by concurrent callers.
        ``CorruptRecordError`` if it does not hash to its id or has another key count than its
        snapshot says."""
        cached = self._cache.get(ref.id)
        if cached is not None:
            self._cache.move_to_end(ref.id)
            return cached
        pending = self._loading.get(ref.id)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Piece] = asyncio.get_running_loop().create_future()
        self._loading[ref.id] = future
        try:
            piece = parse_piece(await self._load(ref.id), ref.id)
            if len(piece) != ref.count:
                raise CorruptRecordError(
                    f"manifest piece {ref.id}: {len(piece)} keys, its snapshot says {ref.count}"
                )
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            del self._loading[ref.id]
        future.set_result(piece)
        self._cache[ref.id] = piece
        while len(self._cache) > self._cache_pieces:
            self._cache.popitem(last=False)
        return piece

    def piece_for(self, key: str) -> PieceRef | None:
        """The piece whose range could hold ``key`` (a bisect, no I/O), or None when no piece covers
        it."""
        i = bisect.bisect_right(self._firsts, key) - 1
        if i < 0 or key > self.pieces[i].last:
            return None
        return self.pieces[i]

    async def lookup(self, key: str) -> Ref | None:
        """``(session, size)`` of ``key`` in this snapshot, or None if absent; reads at most one
        piece."""
        ref = self.piece_for(key)
        return None if ref is None else (await self.piece(ref)).get(key)

    async def entries(self, prefix: str = "") -> AsyncIterator[tuple[str, Ref]]:
        """Every (key, ref) starting with ``prefix``, in key order, a piece at a time."""
        low, high = prefix_range(prefix)
        for ref in self.pieces:
            if not overlaps(ref, low, high):
                continue
            for key, value in (await self.piece(ref)).items():
                if key.startswith(prefix):
                    yield key, value


Change = tuple[str, Ref | None]  # None: the key was deleted


@dataclass
class MergeStats:
    pieces_read: int = 0
    pieces_written: int = 0
    pieces_kept: int = 0
    keys: int = 0


SAVES_IN_FLIGHT = 4


class _PieceWriter:
    """Collects merged entries and writes a piece every ``cap`` of them; up to
    ``SAVES_IN_FLIGHT`` piece PUTs overlap with the merge (memory: that many bodies)."""

    def __init__(self, cap: int, save: SavePiece, stats: MergeStats) -> None:
        self.cap, self.save, self.stats = cap, save, stats
        self.buffer: list[tuple[str, Ref]] = []
        self.out: list[PieceRef] = []
        self.kept_last = False  # the last of ``out`` is a parent piece referenced unread
        self.saving: list[asyncio.Task[None]] = []

    async def finish(self) -> None:
        """Flush and wait for every piece PUT (the first failure raises, the rest are
        awaited so none is left running)."""
        await self.flush()
        results = await asyncio.gather(*self.saving, return_exceptions=True)
        self.saving = []
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def add(self, key: str, ref: Ref) -> None:
        self.buffer.append((key, ref))
        if len(self.buffer) >= self.cap:
            await self.flush()

    async def flush(self) -> None:
        if not self.buffer:
            return
        body = piece_body(self.buffer)
        piece_id = content_id(body)
        self.saving.append(asyncio.ensure_future(self.save(piece_id, body)))
        if len(self.saving) >= SAVES_IN_FLIGHT:
            await self.saving.pop(0)
        self.out.append(PieceRef(piece_id, self.buffer[0][0], self.buffer[-1][0], len(self.buffer)))
        self.stats.pieces_written += 1
        self.stats.keys += len(self.buffer)
        self.buffer = []
        self.kept_last = False

    def keep(self, ref: PieceRef) -> None:
        self.out.append(ref)
        self.stats.pieces_kept += 1
        self.stats.keys += ref.count
        self.kept_last = True


async def merge_pieces(
    parent: ManifestReader,
    changes: AsyncIterator[Change],
    deleted_prefixes: Iterable[str],
    cap: int,
    save: SavePiece,
) -> tuple[list[PieceRef], MergeStats]:
    """The pieces of ``parent`` with ``changes`` (sorted by key, each key once) applied and
    every parent key under ``deleted_prefixes`` removed (unless a change writes it again).

    A parent piece that no change and no deleted prefix falls into is kept by reference; small
    runs of new entries are merged into a neighbouring piece rather than left as tiny pieces."""
    stats = MergeStats()
    writer = _PieceWriter(cap, save, stats)
    prefixes = sorted(set(deleted_prefixes))
    pending: Change | None = None
    exhausted = False

    async def peek() -> Change | None:
        nonlocal pending, exhausted
        if pending is None and not exhausted:
            try:
                pending = await anext(changes)
            except StopAsyncIteration:
                exhausted = True
        return pending

    async def take() -> Change:
        nonlocal pending
        change = await peek()
        assert change is not None
        pending = None
        return change

    def dropped(key: str) -> bool:
        i = bisect.bisect_right(prefixes, key) - 1
        return i >= 0 and key.startswith(prefixes[i])

    def touched_by_prefix(ref: PieceRef) -> bool:
        return any(overlaps(ref, *prefix_range(p)) for p in prefixes)

    try:
        for ref in parent.pieces:
            # changes before this piece
            while (change := await peek()) is not None and change[0] < ref.first:
                await take()
                if change[1] is not None:
                    await writer.add(change[0], change[1])
            change = await peek()
            inside = change is not None and change[0] <= ref.last
            small_buffer = writer.buffer and len(writer.buffer) + ref.count <= cap
            if not inside and not touched_by_prefix(ref) and not small_buffer:
                await writer.flush()
                writer.keep(ref)
                continue
            stats.pieces_read += 1
            for key, value in (await parent.piece(ref)).items():
                while (change := await peek()) is not None and change[0] < key:
                    await take()
                    if change[1] is not None:
                        await writer.add(change[0], change[1])
                if change is not None and change[0] == key:
                    await take()
                    if change[1] is not None:
                        await writer.add(key, change[1])
                elif not dropped(key):
                    await writer.add(key, value)
        while (change := await peek()) is not None:
            await take()
            if change[1] is not None:
                if writer.kept_last and writer.out[-1].count + len(writer.buffer) < cap:
                    # a few keys after an unread piece: merge them into it rather than start a
                    # tiny piece of their own (appends would leave one per commit otherwise)
                    last = writer.out.pop()
                    writer.kept_last = False
                    stats.pieces_kept -= 1
                    stats.keys -= last.count
                    stats.pieces_read += 1
                    writer.buffer = [*(await parent.piece(last)).items(), *writer.buffer]
                await writer.add(change[0], change[1])
        await writer.finish()
    except BaseException:
        for task in writer.saving:  # a failed merge leaves no PUT running behind it
            task.cancel()
        raise
    return writer.out, stats
