"""The streaming run behind ``copy_store``: a merge of two sorted listings, decided as it goes.

Why a merge: holding both listings to compare them costs ~260 bytes per key (a million keys:
a quarter of a GB). Both sides list in sorted order (``transfer.sorted_listing``: Swift does,
other stores are walked per directory or sorted in spilled runs), so one pass over the two
streams side by side meets every key once, with its counterpart if it has one:

- only at the source: to copy;
- on both sides, decided by size + MD5: skipped (resume), or a conflict (``if_exists``);
  undecided (a side that knows no MD5): hashed by compare tasks, then decided;
- only at the destination: an extra key (``delete_extra``).

Data keys to copy go out in batches (``jobs.stream.BatchStream``) while the merge goes on, so
listing and copying overlap. What the run keeps is bounded by the hierarchy, not by its
chunks: metadata keys (copied last, deepest first, as before), keys left differing
(conflicts), keys that vanished meanwhile, counts. Extra data keys wait in a temporary file
until the copy is done (metadata-first deletion, as before), so a dry run holds no names.

``verify`` is a second merge of fresh listings of both sides: every source key must be at the
destination with the same size, and MD5 where both listings know it (a Swift destination
also checked every written body against its MD5 on the way); suspects are asked once more by
HEAD, since a listing may lag behind writes.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from typing import IO

from zarr.abc.store import Store
from zarr.core.sync import sync

from swiftzarr_batch.jobs.runner import Progress, ProgressCallback, run_batches
from swiftzarr_batch.jobs.stream import BatchStream
from swiftzarr_batch.store.keys import is_metadata_key, join, metadata_tiers
from swiftzarr_batch.store.objects import ObjectInfo, swift_objects
from swiftzarr_batch.store.sync_iter import iterate_pages
from swiftzarr_batch.transfer.copy_summary import (
    MAX_PROBLEMS_KEPT,
    CopyConflictError,
    CopyError,
    CopySummary,
)
from swiftzarr_batch.transfer.copy_tasks import (
    BatchResult,
    Item,
    TaskOptions,
    compare_batch,
    copy_batch,
)
from swiftzarr_batch.transfer.objects import delete_stream
from swiftzarr_batch.transfer.sorted_listing import sorted_objects
from swiftzarr_batch.transfer.unlisted import head_keys

__all__ = ["CopyRun", "Pair", "merged_pairs"]

log = logging.getLogger(__name__)

Pair = tuple[ObjectInfo | None, ObjectInfo | None]
_PAGE = 1_000  # merged pairs handed from the event loop at a time
_RECHECK = 1_000  # suspects asked by HEAD at a time


async def _relative(
    store: Store, path: str, exclude: Callable[[str], bool]
) -> AsyncIterator[ObjectInfo]:
    cut = len(path) + 1 if path else 0
    async for info in sorted_objects(store, path):
        rel = info.key[cut:] if cut else info.key
        if not exclude(rel):
            yield info._replace(key=rel) if cut else info


async def merged_pairs(
    a: AsyncIterator[ObjectInfo], b: AsyncIterator[ObjectInfo], page: int = _PAGE
) -> AsyncIterator[list[Pair]]:
    """Two sorted streams side by side: ``(a, b)`` per key, None where a side lacks it; in
    pages of ``page`` pairs. Holds one entry of each stream and the page."""
    x, y = await anext(a, None), await anext(b, None)
    out: list[Pair] = []
    while x is not None or y is not None:
        if y is None or (x is not None and x.key < y.key):
            out.append((x, None))
            x = await anext(a, None)
        elif x is None or y.key < x.key:
            out.append((None, y))
            y = await anext(b, None)
        else:
            out.append((x, y))
            x, y = await anext(a, None), await anext(b, None)
        if len(out) >= page:
            yield out
            out = []
    if out:
        yield out


class CopyRun:
    """One copy: the streaming plan-and-copy pass, then metadata, extras, verification."""

    def __init__(
        self,
        source: Store,
        dest: Store,
        opts: TaskOptions,
        summary: CopySummary,
        exclude: Callable[[str], bool] | None,
        batch_size: int,
        progress: ProgressCallback | None,
        interval: float,
    ) -> None:
        self.source, self.dest, self.opts, self.summary = source, dest, opts, summary
        self.exclude = exclude or (lambda key: False)
        self.batch_size = batch_size
        self.callback, self.interval = progress, interval
        self.max_pending = 0  # the most names the run held at once (data + undecided buffers)
        self._reset()

    def _reset(self) -> None:
        self.meta: dict[str, Item] = {}
        self.data: list[Item] = []
        self.undecided: list[tuple[ObjectInfo, ObjectInfo]] = []
        self.conflicts: set[str] = set()
        self.vanished: set[str] = set()
        self.extra_meta: list[str] = []
        self.extra_large: set[str] = set()
        self.extra_data: IO[str] | None = None
        self.extra_count = 0
        self.unlisted: dict[str, ObjectInfo] = {}  # source keys found by HEAD, not by listing

    def _progress(self, label: str, total: int = 0) -> Progress:
        return Progress(label, total, interval=self.interval, callback=self.callback)

    def pairs(self) -> Iterator[Pair]:
        """The merged listings of both sides, keys relative to the copied paths."""
        src = _relative(self.source, self.opts.source_path, self.exclude)
        dst = _relative(self.dest, self.opts.dest_path, self.exclude)
        return iterate_pages(merged_pairs(src, dst))

    # -- the pass -----------------------------------------------------------------------------
    def run(self, if_exists: str, *, delete_extra: bool) -> None:
        """Plan (and, unless a dry run, copy the data of) everything; metadata after."""
        if if_exists == "fail":  # nothing may be written if anything conflicts: plan first
            self._pass(if_exists, execute=False, delete_extra=False)
            self._raise_on_conflicts()
            if self.summary.dry_run:
                self.summary.keys_deleted = self.extra_count if delete_extra else 0
                return
            self._reset_counts()
        self._pass(if_exists, execute=not self.summary.dry_run, delete_extra=delete_extra)
        if self.conflicts:
            log.warning(
                "%d keys differ at %s and are left as they are (if_exists='skip')",
                len(self.conflicts),
                self.summary.dest,
            )
        if delete_extra:
            self.summary.keys_deleted = self.extra_count if self.summary.dry_run else 0

    def _reset_counts(self) -> None:
        s = self.summary
        s.keys_total = s.keys_copied = s.keys_skipped = s.keys_conflicting = 0
        s.bytes_copied = 0
        self._reset()

    def _raise_on_conflicts(self) -> None:
        s = self.summary
        if self.conflicts:
            shown = ", ".join(sorted(self.conflicts)[:5])
            raise CopyConflictError(
                f"{len(self.conflicts)} keys already exist at {s.dest} with different content "
                f"(e.g. {shown}); nothing was copied. Use if_exists='overwrite' to replace them "
                "or 'skip' to keep them",
                s,
            )

    def _pass(self, if_exists: str, *, execute: bool, delete_extra: bool) -> None:
        self.if_exists, self.execute, self.keep_extras = if_exists, execute, delete_extra
        swift_dest = swift_objects(self.dest)
        self.chunks = self._progress("copy chunks")
        self.compare = self._progress("compare")
        ensured = False
        listed = [0, 0]  # keys seen at the source, at the destination
        with BatchStream(self.source, self.dest, self.opts) as stream:
            for src, dst in self.pairs():
                listed[0] += src is not None
                listed[1] += dst is not None
                if src is None:
                    assert dst is not None
                    self._extra(dst)
                elif dst is None:
                    self._want(src)
                else:
                    same = src.same_content(dst)
                    if same is None:
                        self.undecided.append((src, dst))
                        self.compare.total += 1
                    else:
                        self._decide(src, dst, same)
                if not ensured and execute and swift_dest is not None and self.data:
                    sync(swift_dest.ensure_container())  # once, not in every task
                    ensured = True
                self._flush(stream, final=False)
            # Both listings are through (the copies may still be running): say what they held.
            log.info(
                "listed %d keys at %s and %d at %s",
                listed[0],
                self.summary.source,
                listed[1],
                self.summary.dest,
            )
            while self.data or self.undecided or stream.pending:
                self._flush(stream, final=True)
                stream.drain()  # compare results may add keys to copy: flush those too
            if not ensured and execute and swift_dest is not None and self.meta:
                sync(swift_dest.ensure_container())
        self.chunks.finish()
        self.compare.finish()
        self.summary.keys_conflicting = len(self.conflicts)

    def _flush(self, stream: BatchStream, *, final: bool) -> None:
        self.max_pending = max(self.max_pending, len(self.data) + len(self.undecided))
        while len(self.undecided) >= self.batch_size or (final and self.undecided):
            batch, self.undecided = (
                self.undecided[: self.batch_size],
                self.undecided[self.batch_size :],
            )
            stream.submit(compare_batch, batch, self._after_compare)
        while len(self.data) >= self.batch_size or (final and self.data):
            items, self.data = self.data[: self.batch_size], self.data[self.batch_size :]
            stream.submit(
                copy_batch,
                [items],
                self._merge,
                progress=self.chunks,
                measure=lambda r: (r.keys, r.bytes_copied),
            )

    def _want(self, info: ObjectInfo, *, counted: bool = False) -> None:
        """``info`` is to be copied."""
        s = self.summary
        if not counted:
            s.keys_total += 1
        if not self.execute:
            s.keys_copied += 1
            s.bytes_copied += info.size or 0
        elif is_metadata_key(info.key):
            self.meta[info.key] = (info.key, info.size, info.md5)
        else:
            self.data.append((info.key, info.size, info.md5))
            self.chunks.total += 1

    def _decide(self, src: ObjectInfo, dst: ObjectInfo, same: bool | None) -> None:
        self.summary.keys_total += 1
        if same:
            self.summary.keys_skipped += 1
        elif self.if_exists == "overwrite":
            self._want(src, counted=True)
        else:
            self.conflicts.add(src.key)

    def _after_compare(
        self, results: list[tuple[str, ObjectInfo | None, ObjectInfo | None]]
    ) -> None:
        self.compare.advance(len(results))
        for key, src, dst in results:
            if src is None:
                self.vanished.add(key)
            elif dst is None:
                self._want(src)
            else:
                self._decide(src, dst, bool(src.same_content(dst)))

    def _extra(self, info: ObjectInfo) -> None:
        self.extra_count += 1
        if not (self.keep_extras and self.execute):
            return
        if is_metadata_key(info.key):
            self.extra_meta.append(info.key)
            if info.large:
                self.extra_large.add(info.key)
            return
        if self.extra_data is None:
            self.extra_data = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
        self.extra_data.write(json.dumps([info.key, info.large]) + "\n")

    def _merge(self, r: BatchResult) -> None:
        s = self.summary
        s.keys_copied += r.copied
        s.keys_server_side += r.server_side
        s.bytes_copied += r.bytes_copied
        s.bytes_through_client += r.bytes_through_client
        s.keys_vanished += len(r.vanished)
        s.keys_failed += r.failed
        self.vanished.update(r.vanished)
        for key, why in r.failures:
            if len(s.problems) < MAX_PROBLEMS_KEPT:
                s.problems.append(f"{key}: {why}")
        if r.vanished:
            log.warning(
                "%d keys vanished from the source during the copy (e.g. %s)",
                len(r.vanished),
                r.vanished[0],
            )

    # -- what the source listing lacked ---------------------------------------------------------
    def copy_unlisted(self, present: list[ObjectInfo]) -> None:
        """Copy source chunks that exist but were not listed (``transfer.unlisted``).

        Keys are the source store's; each is compared with the destination by a HEAD first, so
        ``if_exists`` holds for them as for listed keys. They are never deleted as "extra", and
        ``verify`` checks them by HEAD at the destination.
        """
        prefix = f"{self.opts.source_path}/" if self.opts.source_path else ""
        infos = [
            ObjectInfo(i.key[len(prefix) :], i.size, i.md5)
            for i in present
            if i.key.startswith(prefix) and not self.exclude(i.key[len(prefix) :])
        ]
        if not infos:
            return
        self.unlisted = {i.key: i for i in infos}
        self.summary.keys_unlisted = len(infos)
        dest_path = self.opts.dest_path
        at_dest = {
            i.key[len(dest_path) + 1 :] if dest_path else i.key: i
            for i in head_keys(self.dest, [join(dest_path, i.key) for i in infos], 16)
        }
        self.if_exists, self.execute = self.if_exists, True
        self.chunks = self._progress("copy unlisted chunks")
        with BatchStream(self.source, self.dest, self.opts) as stream:
            for info in infos:
                dst = at_dest.get(info.key)
                if dst is None:
                    self._want(info)
                else:
                    self._decide(info, dst, info.same_content(dst) is not False)
                self._flush(stream, final=False)
            while self.data or stream.pending:
                self._flush(stream, final=True)
                stream.drain()
        self.chunks.finish()
        self.summary.keys_conflicting = len(self.conflicts)

    # -- metadata -----------------------------------------------------------------------------
    def copy_metadata(self) -> None:
        """Copy the metadata keys last (children before parents, consolidated last), so readers
        never see an array whose chunks are not all there; ``CopyError``, with no metadata
        written, if any key failed."""
        s = self.summary
        if s.keys_failed:
            raise CopyError(
                f"{s.keys_failed} keys could not be copied to {s.dest}; metadata was not "
                "written, so the destination shows no incomplete arrays. Re-run to resume: "
                + "; ".join(s.problems[:3]),
                s,
            )
        tiers = [[self.meta[k] for k in tier] for tier in metadata_tiers(self.meta)]
        results = run_batches(
            copy_batch,
            [tiers] if tiers else [],
            self.source,
            self.dest,
            self.opts,
            progress=self._progress("copy metadata", len(self.meta)),
            measure=lambda r: (r.keys, r.bytes_copied),
        )
        for r in results:
            self._merge(r)
        if s.keys_failed:
            raise CopyError(
                f"{s.keys_failed} metadata keys could not be copied: " + "; ".join(s.problems[:3]),
                s,
            )

    # -- delete -------------------------------------------------------------------------------
    def delete_extra(self) -> None:
        """Delete the destination keys the source lacks: metadata first (no reader finds a node
        whose chunks go), then chunks from the spilled list, but not those the source holds
        unlisted."""
        meta = [k for tier in reversed(metadata_tiers(self.extra_meta)) for k in tier]
        progress = self._progress("delete", self.extra_count)
        dest_path = self.opts.dest_path

        async def meta_first() -> AsyncIterator[ObjectInfo]:
            for key in meta:  # no reader may find a node whose chunks go
                yield ObjectInfo(join(dest_path, key), large=key in self.extra_large)

        async def data() -> AsyncIterator[ObjectInfo]:
            if self.extra_data is None:
                return
            self.extra_data.seek(0)
            for line in self.extra_data:
                key, large = json.loads(line)
                if key in self.unlisted:  # at the source after all, only not listed yet
                    self.extra_count -= 1
                    continue
                yield ObjectInfo(join(dest_path, key), large=large)

        try:
            for stream in (meta_first(), data()):
                progress.advance(sync(delete_stream(self.dest, stream)))
        finally:
            if self.extra_data is not None:
                self.extra_data.close()
                self.extra_data = None
        progress.finish()
        self.summary.keys_deleted = self.extra_count

    # -- verify -------------------------------------------------------------------------------
    def verify(self, deleted_extra: bool) -> None:
        """Compare source and destination listings after the copy, rechecking suspects by HEAD
        (listings may lag); sets ``summary.verified`` and notes what is missing or different."""
        problems = 0
        suspects: list[ObjectInfo] = []
        s = self.summary

        def note(text: str) -> None:
            nonlocal problems
            problems += 1
            if len(s.problems) < MAX_PROBLEMS_KEPT:
                s.problems.append(text)

        def recheck() -> None:
            for key in self._recheck(suspects):
                note(f"{key}: missing or different at the destination")
            suspects.clear()

        for src, dst in self.pairs():
            if src is None:
                assert dst is not None
                if dst.key in self.unlisted:
                    continue  # checked below
                if deleted_extra:
                    note(f"{dst.key}: extra key still at the destination")
                continue
            if src.key in self.vanished or src.key in self.conflicts:
                continue
            if dst is None or src.same_content(dst) is False:
                suspects.append(src)
                if len(suspects) >= _RECHECK:
                    recheck()
        for info in self.unlisted.values():  # listed nowhere yet, perhaps: HEAD each
            if info.key not in self.conflicts:
                suspects.append(info)
                if len(suspects) >= _RECHECK:
                    recheck()
        recheck()
        s.verified = not problems and not s.keys_failed

    def _recheck(self, infos: list[ObjectInfo]) -> list[str]:
        """The keys of ``infos`` that a HEAD still finds missing or different (listings may
        lag behind writes)."""
        if not infos:
            return []
        swift_dest = swift_objects(self.dest)

        async def still_bad(info: ObjectInfo) -> bool:
            dst_key = join(self.opts.dest_path, info.key)
            if swift_dest is None:
                return not await self.dest.exists(dst_key)
            got = await swift_dest.head(dst_key)  # its ETag is its MD5 (large objects: none)
            return got is None or (
                (info.md5 is not None and got.md5 != info.md5)
                or (info.size is not None and got.size != info.size)
            )

        async def check_all() -> list[str]:
            return [i.key for i in infos if await still_bad(i)]

        return sync(check_all())
