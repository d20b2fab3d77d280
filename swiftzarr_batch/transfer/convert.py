"""Converting copies: ``copy_store(..., convert=Target(...))`` re-encodes while it copies.

zarr 2 -> 3 (or back), new chunks, shards, compressors, filters, in one pass and in parallel:
one dask task per destination shard (or aligned block of chunks), each holding only its region
(see ``convert_plan`` for the blocks and their stated memory, ``convert_tasks`` for a task).

Order and resumability: every block's objects are written first; the destination's metadata
(built by the plan, with dimension names moved between v2's ``_ARRAY_DIMENSIONS`` and v3's
``dimension_names``) after all of them, deepest first, and consolidated metadata last, so no
reader sees an array before its data. What is done is recorded in a *manifest*, one small JSON
object at ``<dest>/.swiftzarr/convert.json``: per block, the digest of its decoded values and
the MD5 of every object written for it. It is written by the client from the tasks' results
(every ``Target.checkpoint_seconds`` and at the end, also when the run fails), so it costs a
handful of PUTs however many shards there are, never one more object per shard (which would
undo what sharding saves), and needs no HEAD per shard on a re-run: one listing gives every
object's MD5 (Swift's ETag). A re-run skips a block whose recorded objects are all listed with
their recorded MD5s, and converts the others; a shard replaced or damaged since is rewritten.
``verify_conversion`` re-reads both sides and compares decoded values block by block.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from zarr.abc.store import Store
from zarr.core.sync import sync

from swiftzarr_batch.errors import SwiftZarrError
from swiftzarr_batch.jobs.counters import cluster_counters
from swiftzarr_batch.jobs.runner import Progress, ProgressCallback, format_bytes, run_batches
from swiftzarr_batch.jobs.stream import BatchStream
from swiftzarr_batch.store.keys import BOOKKEEPING_DIR, is_bookkeeping_key, join, metadata_tiers
from swiftzarr_batch.store.objects import swift_objects
from swiftzarr_batch.transfer.convert_plan import ConvertPlan, Target, make_plan
from swiftzarr_batch.transfer.convert_tasks import (
    BlockRef,
    BlockResult,
    TaskSpec,
    check_blocks,
    convert_blocks,
)
from swiftzarr_batch.transfer.copy import CopyError, CopySummary
from swiftzarr_batch.transfer.objects import PROTOTYPE, describe, list_objects, read_with_info

log = logging.getLogger(__name__)

__all__ = [
    "MANIFEST_KEY",
    "ConvertConflictError",
    "ConvertError",
    "ConvertSummary",
    "convert_store",
    "verify_conversion",
]

MANIFEST_KEY = f"{BOOKKEEPING_DIR}/convert.json"
MAX_PROBLEMS_KEPT = 50


@dataclass
class ConvertSummary(CopySummary):
    """What a converting copy did (or, with ``dry_run``, would do). ``as_dict()`` is JSON-ready.

    A CopySummary (``keys_copied`` counts the objects written, ``bytes_copied`` their bytes),
    so callers of ``copy_store`` handle both alike, plus the conversion's own counts.
    """

    fingerprint: str = ""
    arrays: int = 0
    blocks_total: int = 0
    blocks_written: int = 0
    blocks_skipped: int = 0
    blocks_failed: int = 0
    objects_written: int = 0
    bytes_written: int = 0
    task_memory: int = 0  # the plan's estimate of one task's peak, in bytes
    plan: list[str] = field(default_factory=list)

    def line(self) -> str:
        """The one line ``swiftzarr copy`` prints for a conversion: blocks converted of the total,
        objects and bytes written, what was skipped as done, the memory per task, failures, retries,
        time and whether it verified."""
        what = "would convert" if self.dry_run else "converted"
        text = (
            f"{what} {self.blocks_written}/{self.blocks_total} blocks of {self.arrays} arrays "
            f"into {self.objects_written} objects, {format_bytes(self.bytes_written)}; skipped "
            f"{self.blocks_skipped} done; <= {format_bytes(self.task_memory)} per task"
        )
        if self.blocks_failed:
            text += f", {self.blocks_failed} FAILED"
        verified = {None: "", True: "; verified", False: "; NOT verified"}[self.verified]
        return f"{text}; {self.retried} retries; {self.seconds:.1f} s{verified}"


class ConvertError(CopyError):
    """The conversion did not complete or did not verify; ``summary`` says what was done."""


class ConvertConflictError(ConvertError):
    """The destination holds something else than (part of) this same conversion."""


def convert_store(
    source: Store,
    dest: Store,
    target: Target,
    *,
    source_path: str = "",
    dest_path: str = "",
    verify: bool = True,
    dry_run: bool = False,
    concurrency: int = 16,
    progress: ProgressCallback | None = None,
    progress_interval: float = 5.0,
) -> ConvertSummary:
    """Copy the hierarchy (or array) at ``source_path`` to ``dest_path``, converted to ``target``.

    Use it through ``copy_store(..., convert=target)``. Raises ConvertMemoryError (nothing
    written) if a task would exceed ``target.max_memory``, ConvertConflictError if the
    destination holds other data, ConvertError (after recording what was done: re-run to
    resume) if blocks failed or the result did not verify.
    """
    started = time.monotonic()
    before = cluster_counters()
    source_path, dest_path = source_path.strip("/"), dest_path.strip("/")
    plan = make_plan(source, source_path, target)
    summary = ConvertSummary(
        describe(source, source_path),
        describe(dest, dest_path),
        dry_run=dry_run,
        fingerprint=plan.fingerprint,
        arrays=len(plan.arrays),
        blocks_total=plan.blocks,
        keys_total=plan.blocks,
        task_memory=plan.task_bytes,
        plan=plan.lines(),
    )
    for line in summary.plan:
        log.info("plan: %s", line)
    run = _Run(
        source,
        dest,
        plan,
        summary,
        TaskSpec(source_path, dest_path, {a.path: a for a in plan.arrays}, concurrency),
    )
    try:
        todo = run.resume_point()
        if dry_run:
            summary.blocks_written = len(todo)
            return summary
        run.convert(
            todo,
            Progress(
                "convert", len(todo), unit="blocks", interval=progress_interval, callback=progress
            ),
        )
        run.write_metadata()
        if verify:
            run.verify_listing()
        run.save_manifest(complete=True)
    finally:
        summary.record_run(before, started)
    summary.raise_if_unverified("conversion", ConvertError)
    return summary


class _Run:
    """One conversion between its phases: resume point, blocks, metadata, verification."""

    def __init__(
        self, source: Store, dest: Store, plan: ConvertPlan, summary: ConvertSummary, spec: TaskSpec
    ) -> None:
        self.source, self.dest, self.plan, self.summary, self.spec = (
            source,
            dest,
            plan,
            summary,
            spec,
        )
        self.done: dict[str, dict[str, dict[str, Any]]] = {}
        self.last_save = time.monotonic()

    @property
    def manifest_key(self) -> str:
        return join(self.spec.dest_path, MANIFEST_KEY)

    def _listing(self) -> dict[str, str | None]:
        """Destination keys relative to ``dest_path`` -> MD5 (None where the store has none)."""

        async def collect() -> dict[str, str | None]:
            cut = len(self.spec.dest_path) + 1 if self.spec.dest_path else 0
            return {i.key[cut:]: i.md5 async for i in list_objects(self.dest, self.spec.dest_path)}

        return sync(collect())

    def resume_point(self) -> list[BlockRef]:
        """The blocks still to convert; refuses a destination that holds something else."""
        listed = self._listing()
        got = sync(read_with_info(self.dest, self.manifest_key))
        manifest = json.loads(got[0]) if got is not None else None
        data_keys = [k for k in listed if not is_bookkeeping_key(k)]
        if manifest is None and data_keys:
            raise ConvertConflictError(
                f"{self.summary.dest} already holds {len(data_keys)} keys (e.g. {data_keys[0]}) "
                "and no record of a conversion: convert into an empty destination. Nothing was "
                "written",
                self.summary,
            )
        if manifest is not None and manifest.get("fingerprint") != self.plan.fingerprint:
            raise ConvertConflictError(
                f"{self.summary.dest} holds a conversion with other settings (or from another "
                "source): remove it first or use another destination. Nothing was written",
                self.summary,
            )
        recorded = manifest["blocks"] if manifest else {}
        todo: list[BlockRef] = []
        for a in self.plan.arrays:
            for index in a.indices():
                entry = recorded.get(a.path, {}).get(a.block_id(index))
                if entry is not None and self._still_there(entry["objects"], listed):
                    self.done.setdefault(a.path, {})[a.block_id(index)] = entry
                    self.summary.blocks_skipped += 1
                else:
                    todo.append((a.path, index))
        return todo

    def _still_there(self, objects: dict[str, str], listed: dict[str, str | None]) -> bool:
        for key, md5 in objects.items():
            if key not in listed:
                return False
            if listed[key] is None:  # not a Swift store: hash the object
                got = sync(read_with_info(self.dest, join(self.spec.dest_path, key)))
                listed[key] = got[1].md5 if got is not None else ""
            if listed[key] != md5:
                return False
        return True

    # -- blocks ------------------------------------------------------------------------------
    def convert(self, todo: list[BlockRef], progress: Progress) -> None:
        swift_dest = swift_objects(self.dest)
        if swift_dest is not None and todo:
            sync(swift_dest.ensure_container())
        if todo:  # before the first block: a run killed before its first checkpoint resumes too
            self.save_manifest(complete=False)
        try:
            run_batches(
                convert_blocks,
                [[ref] for ref in todo],
                self.source,
                self.dest,
                self.spec,
                progress=progress,
                measure=self._record,
            )
        finally:
            if todo:
                self.save_manifest(complete=False, quiet=True)
        if self.summary.blocks_failed:
            raise ConvertError(
                f"{self.summary.blocks_failed} blocks could not be converted to "
                f"{self.summary.dest}; metadata was not written, so the destination shows no "
                "incomplete arrays. Re-run to resume: " + "; ".join(self.summary.problems[:3]),
                self.summary,
            )

    def _record(self, results: list[BlockResult]) -> tuple[int, int]:
        """Called as each task finishes (submitting thread): count it, checkpoint the manifest."""
        s = self.summary
        for r in results:
            if r.ok:
                self.done.setdefault(r.array, {})[r.block] = {
                    "digest": r.digest,
                    "objects": r.objects,
                }
                s.blocks_written += 1
                s.objects_written += len(r.objects)
                s.bytes_written += r.bytes_written
                s.keys_copied += len(r.objects)
                s.bytes_copied += r.bytes_written
                s.bytes_through_client += r.bytes_written
            else:
                s.blocks_failed += 1
                if len(s.problems) < MAX_PROBLEMS_KEPT:
                    s.problems.append(r.problem or "")
        if time.monotonic() - self.last_save >= self.plan.target.checkpoint_seconds:
            self.save_manifest(complete=False, quiet=True)
        return len(results), sum(r.bytes_written for r in results)

    def save_manifest(self, *, complete: bool, quiet: bool = False) -> None:
        body = {
            "format": 1,
            "fingerprint": self.plan.fingerprint,
            "source": self.summary.source,
            "target": self.plan.target.describe(),
            "complete": complete,
            "blocks": self.done,
        }
        data = json.dumps(body, sort_keys=True).encode()
        try:
            sync(self.dest.set(self.manifest_key, PROTOTYPE.buffer.from_bytes(data)))
        except (SwiftZarrError, OSError) as exc:
            if not quiet:
                raise
            log.warning(
                "could not record progress in %s (%s); a re-run redoes those blocks",
                self.manifest_key,
                exc,
            )
        self.last_save = time.monotonic()

    # -- metadata ----------------------------------------------------------------------------
    def write_metadata(self) -> None:
        """Deepest nodes first, then their parents; the root's (with the consolidated metadata
        the plan built) last. A tier's documents are written concurrently."""
        meta = self.plan.metadata

        async def write(keys: list[str]) -> None:
            limit = asyncio.Semaphore(self.spec.concurrency)

            async def one(key: str) -> None:
                async with limit:
                    body = PROTOTYPE.buffer.from_bytes(meta[key])
                    await self.dest.set(join(self.spec.dest_path, key), body)

            await asyncio.gather(*(one(k) for k in keys))

        for tier in metadata_tiers(meta):
            sync(write(tier))

    def verify_listing(self) -> None:
        """Every recorded object is listed with its MD5 (tasks already compared decoded values)."""
        listed = self._listing()
        problems = [
            f"{key}: missing or different at the destination"
            for blocks in self.done.values()
            for entry in blocks.values()
            for key, md5 in entry["objects"].items()
            if not self._still_there({key: md5}, listed)
        ]
        self.summary.verified = not problems and not self.summary.blocks_failed
        self.summary.problems += problems[:MAX_PROBLEMS_KEPT]


@dataclass
class ConversionCheck:
    """What ``verify_conversion`` found: blocks compared and those whose values differ."""

    blocks: int
    bad: list[str]

    @property
    def ok(self) -> bool:
        """True when no block differed: the destination holds the source's values."""
        return not self.bad


def verify_conversion(
    source: Store,
    dest: Store,
    target: Target,
    *,
    source_path: str = "",
    dest_path: str = "",
    concurrency: int = 16,
) -> ConversionCheck:
    """Re-read every block on both sides and compare the digests of the decoded values.

    Blocks are streamed to the tasks as the plan's indices are generated (``BatchStream``, a
    window of tasks at a time): memory holds the blocks in flight and the problems found, never
    one reference or task per block of the dataset."""
    plan = make_plan(source, source_path.strip("/"), target)
    spec = TaskSpec(
        source_path.strip("/"), dest_path.strip("/"), {a.path: a for a in plan.arrays}, concurrency
    )
    checked = 0
    bad: list[str] = []

    def handle(results: list[BlockResult]) -> None:
        nonlocal checked
        checked += len(results)
        bad.extend(r.problem or "" for r in results if not r.ok)

    with BatchStream(source, dest, spec) as stream:
        for a in plan.arrays:
            for index in a.indices():
                stream.submit(check_blocks, [(a.path, index)], handle)
    bad.sort()
    for line in bad:
        log.warning("verify: %s", line)
    return ConversionCheck(checked, bad)
