"""``copy_store``: copy a zarr hierarchy between any two zarr-3 stores, in parallel and resumable.

zarr 3's own ``copy_store`` raises NotImplementedError. This one lists both sides, compares
objects by size + MD5 (Swift listings carry both; other stores are hashed from their bytes),
and copies what differs as dask tasks over batches of keys, so no process ever holds more than
a batch. Between two Swift containers reachable with the same token (same cluster, any account
the token may read) the copy is server-side (PUT + ``X-Copy-From``): no data crosses the client.

Order is what keeps readers safe: every chunk is written before any metadata, metadata goes
deepest-first, consolidated metadata last; extra keys are deleted metadata-first. A re-run
skips every key that already matches, so an interrupted copy resumes where it stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from zarr.abc.store import Store
from zarr.core.sync import sync

from swiftzarr_batch.errors import ConfigurationError, ReadOnlyError, SwiftZarrError
from swiftzarr_batch.jobs.counters import cluster_counters, counters_delta
from swiftzarr_batch.jobs.runner import (
    Progress,
    ProgressCallback,
    batched,
    format_bytes,
    run_batches,
)
from swiftzarr_batch.store.keys import is_lock_key, is_metadata_key, join, metadata_tiers
from swiftzarr_batch.store.objects import CopySource, swift_objects
from swiftzarr_batch.transfer.copy_tasks import (
    BatchResult,
    Item,
    TaskOptions,
    compare_batch,
    copy_batch,
)
from swiftzarr_batch.transfer.objects import ObjectInfo, delete_keys, describe, list_objects

if TYPE_CHECKING:
    from swiftzarr_batch.transfer.convert_plan import Target

log = logging.getLogger(__name__)

IfExists = Literal["skip", "overwrite", "fail"]
IF_EXISTS = ("skip", "overwrite", "fail")
MAX_PROBLEMS_KEPT = 50

__all__ = ["CopyConflictError", "CopyError", "CopySummary", "copy_store"]


@dataclass
class CopySummary:
    """What a copy did (or, with ``dry_run``, would do). ``as_dict()`` is JSON-ready."""

    source: str
    dest: str
    dry_run: bool = False
    server_side: bool = False
    keys_total: int = 0
    keys_copied: int = 0
    keys_server_side: int = 0
    keys_skipped: int = 0
    keys_conflicting: int = 0
    keys_deleted: int = 0
    keys_vanished: int = 0
    keys_failed: int = 0
    bytes_copied: int = 0
    bytes_through_client: int = 0
    requests: int = 0
    retried: int = 0
    seconds: float = 0.0
    verified: bool | None = None
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        what = "would copy" if self.dry_run else "copied"
        how = f" ({self.keys_server_side} server-side)" if self.keys_server_side else ""
        text = (
            f"{what} {self.keys_copied}/{self.keys_total} keys{how}, "
            f"{format_bytes(self.bytes_copied)}; skipped {self.keys_skipped} matching"
        )
        if self.keys_conflicting:
            text += f", left {self.keys_conflicting} differing"
        if self.keys_deleted:
            text += f", {'would delete' if self.dry_run else 'deleted'} {self.keys_deleted}"
        if self.keys_vanished:
            text += f", {self.keys_vanished} vanished at the source"
        if self.keys_failed:
            text += f", {self.keys_failed} FAILED"
        verified = {None: "", True: "; verified", False: "; NOT verified"}[self.verified]
        return f"{text}; {self.retried} retries; {self.seconds:.1f} s{verified}"

    def record_run(self, counters_before: dict[int, dict[str, int]], started: float) -> None:
        """Fill in the request, retry and time figures of a finished (or failed) run.

        Copies and conversions both end this way, so their summaries read alike."""
        delta = counters_delta(counters_before, cluster_counters())
        self.requests, self.retried = delta.get("requests", 0), delta.get("retries", 0)
        self.seconds = round(time.monotonic() - started, 3)

    def raise_if_unverified(self, what: str, error: type[CopyError]) -> None:
        """Log the summary line; raise ``error`` when verification found problems."""
        log.info("%s -> %s: %s", self.source, self.dest, self.line())
        if self.verified is False:
            raise error(
                f"{what} {self.source} -> {self.dest} did not verify: "
                + "; ".join(self.problems[:3]),
                self,
            )


class CopyError(SwiftZarrError, RuntimeError):
    """The copy did not complete or did not verify; ``summary`` says what was done."""

    def __init__(self, message: str, summary: CopySummary) -> None:
        super().__init__(message)
        self.summary = summary


class CopyConflictError(CopyError):
    """``if_exists="fail"`` and keys exist at the destination with other content."""


def copy_store(
    source: Store,
    dest: Store,
    *,
    source_path: str = "",
    dest_path: str = "",
    if_exists: IfExists = "skip",
    delete_extra: bool = False,
    verify: bool = True,
    dry_run: bool = False,
    server_side: bool | None = None,
    batch_size: int = 250,
    concurrency: int = 16,
    exclude: Callable[[str], bool] | None = is_lock_key,
    progress: ProgressCallback | None = None,
    progress_interval: float = 5.0,
    convert: Target | None = None,
) -> CopySummary:
    """Copy every key under ``source_path`` of ``source`` to ``dest_path`` of ``dest``.

    if_exists: what to do with a destination key whose content differs (matching keys are
        always skipped): "skip" leaves it (counted in ``keys_conflicting``), "overwrite"
        replaces it, "fail" raises CopyConflictError before anything is written.
    delete_extra: delete destination keys that are not in the source (after the copy).
    verify: check every written key (Swift: the server checks the MD5 we send, and copies
        carry the source ETag; other stores are read back) and, at the end, that the
        destination lists every source key with the source's size and MD5.
    dry_run: plan only; the summary says what would be copied and deleted.
    server_side: None copies server-side when possible, True requires it, False never.
    batch_size: keys per dask task; concurrency: concurrent requests per task.
    exclude: keys (relative to the paths) that are neither copied nor deleted; by default
        swiftzarr's lock objects.
    progress: ``callback(label, done, total, bytes)``; progress is also logged (INFO) at most
        every ``progress_interval`` seconds.

    convert: re-encode while copying (zarr 2 <-> 3, chunks, shards, codecs; see
        ``transfer.convert``): returns a ConvertSummary (a CopySummary); ``if_exists``,
        ``delete_extra``, ``server_side``, ``batch_size`` and ``exclude`` do not apply (the
        destination must be empty or hold this same conversion, which is then resumed).

    Raises CopyError (with ``.summary``) if any key failed or the copy did not verify.
    """
    if if_exists not in IF_EXISTS:
        raise ConfigurationError(f"if_exists must be one of {IF_EXISTS}, got {if_exists!r}")
    if batch_size < 1 or concurrency < 1:
        raise ConfigurationError("batch_size and concurrency must be >= 1")
    if dest.read_only and not dry_run:
        raise ReadOnlyError(f"the destination {describe(dest, dest_path)} is read-only")
    _check_not_overlapping(source, source_path, dest, dest_path)
    if convert is not None:  # imported here: the converting copy builds on this module
        from swiftzarr_batch.transfer.convert import convert_store

        return convert_store(
            source,
            dest,
            convert,
            source_path=source_path,
            dest_path=dest_path,
            verify=verify,
            dry_run=dry_run,
            concurrency=concurrency,
            progress=progress,
            progress_interval=progress_interval,
        )
    started = time.monotonic()
    before = cluster_counters()
    route = _server_side_route(source, dest, server_side)
    opts = TaskOptions(source_path.strip("/"), dest_path.strip("/"), concurrency, verify, route)
    summary = CopySummary(
        describe(source, source_path),
        describe(dest, dest_path),
        dry_run=dry_run,
        server_side=route is not None,
    )
    run = _CopyRun(source, dest, opts, summary, exclude, batch_size, progress, progress_interval)
    try:
        run.plan(if_exists)
        if not dry_run:
            run.copy()
            if delete_extra:
                run.delete_extra()
            if verify:
                run.verify(delete_extra)
        elif delete_extra:
            summary.keys_deleted = len(run.extras)
    finally:
        summary.record_run(before, started)
    summary.raise_if_unverified("copy", CopyError)
    return summary


class _CopyRun:
    """The state of one copy between its phases (plan, copy, delete, verify)."""

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
        self.src: dict[str, ObjectInfo] = {}
        self.to_copy: list[ObjectInfo] = []
        self.conflicts: set[str] = set()
        self.extras: list[str] = []
        self.large_extras: list[str] = []
        self.vanished: set[str] = set()
        self.learned: dict[str, tuple[int | None, str]] = {}

    def _progress(self, label: str, total: int, unit: str = "keys") -> Progress:
        return Progress(label, total, unit=unit, interval=self.interval, callback=self.callback)

    def _list(self, store: Store, path: str) -> dict[str, ObjectInfo]:
        async def collect() -> dict[str, ObjectInfo]:
            cut = len(path) + 1 if path else 0
            found: dict[str, ObjectInfo] = {}
            async for info in list_objects(store, path):
                rel = info.key[cut:]
                if not self.exclude(rel):
                    found[rel] = ObjectInfo(rel, info.size, info.md5, info.large)
            return found

        return sync(collect())

    # -- plan -------------------------------------------------------------------------------
    def plan(self, if_exists: str) -> None:
        self.src = self._list(self.source, self.opts.source_path)
        dst = self._list(self.dest, self.opts.dest_path)
        log.info(
            "listed %d keys at %s and %d at %s",
            len(self.src),
            self.summary.source,
            len(dst),
            self.summary.dest,
        )
        undecided = [
            (s, dst[k]) for k, s in self.src.items() if k in dst and s.same_content(dst[k]) is None
        ]
        if undecided:  # a non-Swift side: hash both objects in parallel tasks
            results = run_batches(
                compare_batch,
                batched(undecided, self.batch_size),
                self.source,
                self.dest,
                self.opts,
                progress=self._progress("compare", len(undecided)),
                measure=lambda r: (len(r), 0),
            )
            for compared in results:
                for key, new_src, new_dst in compared:
                    self._update_after_compare(key, new_src, new_dst, dst)
        for key, info in self.src.items():
            other = dst.get(key)
            if other is None or (info.same_content(other) is False and if_exists == "overwrite"):
                self.to_copy.append(info)
            elif info.same_content(other):
                self.summary.keys_skipped += 1
            else:
                self.conflicts.add(key)
        self.extras = [k for k in dst if k not in self.src]
        self.large_extras = [k for k in self.extras if dst[k].large]
        s = self.summary
        s.keys_total, s.keys_conflicting = len(self.src), len(self.conflicts)
        if self.conflicts and if_exists == "fail":
            shown = ", ".join(sorted(self.conflicts)[:5])
            raise CopyConflictError(
                f"{len(self.conflicts)} keys already exist at {s.dest} with different content "
                f"(e.g. {shown}); nothing was copied. Use if_exists='overwrite' to replace them "
                "or 'skip' to keep them",
                s,
            )
        if self.conflicts:
            log.warning(
                "%d keys differ at %s and are left as they are (if_exists='skip')",
                len(self.conflicts),
                s.dest,
            )
        if s.dry_run:
            s.keys_copied = len(self.to_copy)
            s.bytes_copied = sum(i.size or 0 for i in self.to_copy)

    def _update_after_compare(
        self,
        key: str,
        src: ObjectInfo | None,
        dst_info: ObjectInfo | None,
        dst: dict[str, ObjectInfo],
    ) -> None:
        if src is None:
            self.src.pop(key, None)
            self.vanished.add(key)
        else:
            self.src[key] = src
        if dst_info is None:
            dst.pop(key, None)
        else:
            dst[key] = dst_info

    # -- copy -------------------------------------------------------------------------------
    def copy(self) -> None:
        swift_dest = swift_objects(self.dest)
        if swift_dest is not None and self.to_copy:  # once, not in every task
            sync(swift_dest.ensure_container())
        data = [_item(i) for i in self.to_copy if not is_metadata_key(i.key)]
        meta = {i.key: _item(i) for i in self.to_copy if is_metadata_key(i.key)}
        self._run_copy(
            "copy chunks", [[batch] for batch in batched(data, self.batch_size)], len(data)
        )
        if self.summary.keys_failed:
            raise CopyError(
                f"{self.summary.keys_failed} keys could not be copied to {self.summary.dest}; "
                "metadata was not written, so the destination shows no incomplete arrays. "
                "Re-run to resume: " + "; ".join(self.summary.problems[:3]),
                self.summary,
            )
        tiers = [[meta[k] for k in tier] for tier in metadata_tiers(meta)]
        self._run_copy("copy metadata", [tiers] if tiers else [], len(meta))
        if self.summary.keys_failed:
            raise CopyError(
                f"{self.summary.keys_failed} metadata keys could not be copied: "
                + "; ".join(self.summary.problems[:3]),
                self.summary,
            )

    def _run_copy(
        self, label: str, batches: Sequence[Sequence[Sequence[Item]]], total: int
    ) -> None:
        results = run_batches(
            copy_batch,
            batches,
            self.source,
            self.dest,
            self.opts,
            progress=self._progress(label, total),
            measure=lambda r: (r.keys, r.bytes_copied),
        )
        for r in results:
            self._merge(r)

    def _merge(self, r: BatchResult) -> None:
        s = self.summary
        s.keys_copied += r.copied
        s.keys_server_side += r.server_side
        s.bytes_copied += r.bytes_copied
        s.bytes_through_client += r.bytes_through_client
        s.keys_vanished += len(r.vanished)
        s.keys_failed += r.failed
        self.vanished.update(r.vanished)
        self.learned.update(r.learned)
        for key, why in r.failures:
            if len(s.problems) < MAX_PROBLEMS_KEPT:
                s.problems.append(f"{key}: {why}")
        if r.vanished:
            log.warning(
                "%d keys vanished from the source during the copy (e.g. %s)",
                len(r.vanished),
                r.vanished[0],
            )

    # -- delete -----------------------------------------------------------------------------
    def delete_extra(self) -> None:
        meta = [
            k
            for tier in reversed(metadata_tiers(k for k in self.extras if is_metadata_key(k)))
            for k in tier
        ]
        data = [k for k in self.extras if not is_metadata_key(k)]
        progress = self._progress("delete", len(self.extras))
        for group in (meta, data):  # metadata first: no reader may find a node whose chunks go
            for batch in batched(group, 10_000) if group else []:
                sync(
                    delete_keys(
                        self.dest,
                        [join(self.opts.dest_path, k) for k in batch],
                        large=[join(self.opts.dest_path, k) for k in self.large_extras],
                    )
                )
                progress.advance(len(batch))
        progress.finish()
        self.summary.keys_deleted = len(self.extras)

    # -- verify -----------------------------------------------------------------------------
    def verify(self, deleted_extra: bool) -> None:
        after = self._list(self.dest, self.opts.dest_path)
        problems: list[str] = []
        suspects: list[str] = []
        for key, info in self.src.items():
            if key in self.vanished or key in self.conflicts:
                continue
            size, md5 = self.learned.get(key, (info.size, info.md5))
            expected = ObjectInfo(key, size if size is not None else info.size, md5 or None)
            got = after.get(key)
            if got is None or expected.same_content(got) is False:
                suspects.append(key)
        for key in self._recheck(suspects):  # listings may lag behind writes: ask each object
            problems.append(f"{key}: missing or different at the destination")
        if deleted_extra:
            left = [k for k in after if k not in self.src]
            problems += [f"{k}: extra key still at the destination" for k in left]
        self.summary.verified = not problems and not self.summary.keys_failed
        self.summary.problems += problems[:MAX_PROBLEMS_KEPT]

    def _recheck(self, keys: list[str]) -> list[str]:
        if not keys:
            return []

        swift_dest = swift_objects(self.dest)

        async def still_bad(key: str) -> bool:
            size, md5 = self.learned.get(key, (self.src[key].size, self.src[key].md5))
            dst_key = join(self.opts.dest_path, key)
            if swift_dest is None:
                return not await self.dest.exists(dst_key)
            got = await swift_dest.head(dst_key)  # its ETag is its MD5 (large objects: none)
            return got is None or (
                (md5 is not None and got.md5 != md5) or (size is not None and got.size != size)
            )

        async def check_all() -> list[str]:
            return [k for k in keys if await still_bad(k)]

        return sync(check_all())


def _item(info: ObjectInfo) -> Item:
    return (info.key, info.size, info.md5)


def _server_side_route(source: Store, dest: Store, wanted: bool | None) -> CopySource | None:
    """Where to copy from server-side: both Swift stores, on one cluster, with one token."""
    src, dst = swift_objects(source), swift_objects(dest)
    route = None
    if wanted is not False and src is not None and dst is not None:
        route = dst.copy_source(src)
    if wanted and route is None:
        raise ConfigurationError(
            "server-side copy needs two Swift stores on the same cluster opened with the same "
            "token (e.g. one store and another from store.with_prefix or the same credentials)"
        )
    return route


def _location(store: Store, path: str) -> str:
    swift = swift_objects(store)
    if swift is not None:
        return swift.address(path)
    return describe(store, path).rstrip("/") + "/"


def _check_not_overlapping(source: Store, source_path: str, dest: Store, dest_path: str) -> None:
    a, b = _location(source, source_path), _location(dest, dest_path)
    if a.startswith(b) or b.startswith(a):
        raise ConfigurationError(
            f"source {describe(source, source_path)} and destination {describe(dest, dest_path)}"
            " overlap; copy into a different container or path"
        )
