"""The worker side of ``copy_store``: one dask task copies (or compares) one batch of keys.

Tasks receive the stores (picklable: a SwiftStore ships its storage URL + token) and a batch of
``Item``s, run their requests concurrently on zarr's event loop (bounded by ``concurrency``), and
return a small ``BatchResult``: counts, the MD5s they learned, and per-key failures. A failure
of one key (e.g. a corrupt source object) is reported, not raised, so one bad chunk does not
throw away a long copy; failures that would hit every key (authentication, permissions) raise.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

from zarr.abc.store import Store
from zarr.core.sync import sync

from swiftzarr_batch.errors import (
    AuthenticationError,
    IntegrityError,
    PermissionDeniedError,
    ReadOnlyError,
    SwiftZarrError,
)
from swiftzarr_batch.store.keys import join
from swiftzarr_batch.store.objects import CopySource, SwiftObjects, swift_objects
from swiftzarr_batch.transfer.objects import PROTOTYPE, ObjectInfo, read_with_info, still_listed

FATAL = (AuthenticationError, PermissionDeniedError, ReadOnlyError)
"""Errors that would repeat for every key: stop the whole copy at once."""

MAX_FAILURES_KEPT = 20

Item = tuple[str, int | None, str | None]
"""(key relative to the copied paths, source size, source MD5) as known when planning."""


@dataclass(frozen=True)
class TaskOptions:
    source_path: str
    dest_path: str
    concurrency: int
    verify: bool
    route: CopySource | None  # server-side copies from there, when the cluster can


@dataclass
class BatchResult:
    keys: int = 0
    copied: int = 0
    server_side: int = 0
    bytes_copied: int = 0
    bytes_through_client: int = 0
    vanished: list[str] = field(default_factory=list)
    learned: dict[str, tuple[int | None, str]] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)
    failed: int = 0

    def fail(self, key: str, exc: BaseException) -> None:
        """Count a failed key and keep its error (up to ``MAX_FAILURES_KEPT``, so a failing batch's
        result stays small); the batch goes on with the other keys."""
        self.failed += 1
        if len(self.failures) < MAX_FAILURES_KEPT:
            self.failures.append((key, f"{type(exc).__name__}: {exc}"))


# -- copy -------------------------------------------------------------------------------------
def copy_batch(
    tiers: Sequence[Sequence[Item]],
    source: Store,
    dest: Store,
    opts: TaskOptions,
) -> BatchResult:
    """Copy the items, tier after tier (a tier's items concurrently). Runs in a dask task."""
    return sync(_copy_tiers(tiers, source, dest, opts))


async def _copy_tiers(
    tiers: Sequence[Sequence[Item]],
    source: Store,
    dest: Store,
    opts: TaskOptions,
) -> BatchResult:
    result = BatchResult()
    limit = asyncio.Semaphore(opts.concurrency)
    swift = swift_objects(dest)
    # A Swift destination verified each body against the MD5 we sent (422 otherwise); any
    # other store is read back.
    read_back = opts.verify and swift is None
    swift_source = swift_objects(source)

    async def one(item: Item) -> None:
        async with limit:
            try:
                if (
                    swift is not None
                    and swift_source is not None
                    and item[2] is None  # listed without an MD5: a large object
                    and await _copy_large(item, swift, swift_source, opts, result)
                ):
                    result.keys += 1
                    return
                if swift is not None and opts.route is not None and item[2] is not None:
                    await _copy_server_side(item, swift, opts.route, source, opts, result)
                else:
                    await _copy_through_client(item, source, dest, opts, read_back, result)
            except FATAL:
                raise
            except (SwiftZarrError, OSError, ValueError) as exc:
                result.fail(item[0], exc)
            result.keys += 1

    for tier in tiers:
        await asyncio.gather(*(one(item) for item in tier))
    return result


async def _copy_through_client(
    item: Item,
    source: Store,
    dest: Store,
    opts: TaskOptions,
    read_back: bool,
    result: BatchResult,
) -> None:
    rel, size, md5 = item
    src_key = join(opts.source_path, rel)
    got = await read_with_info(source, src_key)
    if got is None:
        await _vanished(source, src_key, rel, result)
        return
    data, info = got
    dst_key = join(opts.dest_path, rel)
    await dest.set(dst_key, PROTOTYPE.buffer.from_bytes(data))
    if read_back:
        back = await read_with_info(dest, dst_key)
        if back is None or back[1].md5 != info.md5:
            raise IntegrityError(
                f"{dst_key}: the destination does not hold what was written",
                method="verify",
                path=dst_key,
            )
    if (info.size, info.md5) != (size, md5):
        result.learned[rel] = (info.size, info.md5 or "")
    result.copied += 1
    result.bytes_copied += len(data)
    result.bytes_through_client += len(data)


async def _copy_large(
    item: Item, dest: SwiftObjects, source: SwiftObjects, opts: TaskOptions, result: BatchResult
) -> bool:
    """A Swift large object (listed without an MD5) between two Swift stores: segment by
    segment (``swift.large_copy``), server-side when the route allows; False if it turned out
    not to be one (the caller copies it as a plain object)."""
    rel = item[0]
    done = await dest.copy_large_from(
        source, join(opts.source_path, rel), join(opts.dest_path, rel), opts.route
    )
    if done is None:
        return False
    if done.md5:
        result.learned[rel] = (done.size, done.md5)
    result.copied += 1
    result.server_side += int(opts.route is not None)
    result.bytes_copied += done.size
    result.bytes_through_client += done.through_client
    return True


async def _vanished(source: Store, src_key: str, rel: str, result: BatchResult) -> None:
    """A source key read as 404: deleted since the listing (fine), or still listed (not)."""
    if await still_listed(source, src_key):
        raise FileNotFoundError(
            f"{src_key} is listed at the source but reads as 404 (the "
            "server quarantined it after its bytes stopped matching its "
            "ETag, or it was lost)"
        )
    result.vanished.append(rel)


async def _copy_server_side(
    item: Item,
    dest: SwiftObjects,
    route: CopySource,
    source: Store,
    opts: TaskOptions,
    result: BatchResult,
) -> None:
    """PUT with X-Copy-From on the destination container: the cluster moves the bytes.

    Only for objects with a known MD5: a large object (SLO manifest, listed without one) goes
    through the client, where the store writes it as a large object again (a server-side copy
    would try to make one object of it, beyond the cluster's max_file_size).
    """
    rel, size, md5 = item
    src_key = join(opts.source_path, rel)
    copied = await dest.copy_from(route, src_key, join(opts.dest_path, rel))
    if copied is None:
        await _vanished(source, src_key, rel, result)
        return
    # The copy middleware sent the source's ETag with the new object, so the server has
    # checked the copied bytes; a different ETag here means the source changed since listing.
    if copied.md5 and copied.md5 != md5:
        result.learned[rel] = (None, copied.md5)
    result.copied += 1
    result.server_side += 1
    result.bytes_copied += size or 0


# -- compare ----------------------------------------------------------------------------------
def compare_batch(
    pairs: Sequence[tuple[ObjectInfo, ObjectInfo]],
    source: Store,
    dest: Store,
    opts: TaskOptions,
) -> list[tuple[str, ObjectInfo | None, ObjectInfo | None]]:
    """Fill in unknown sizes/MD5s by reading the objects (keys relative to the copied paths).

    Returns (key, source, destination); None for a side means the object disappeared
    meanwhile. Runs in a dask task.
    """
    return sync(_compare(pairs, source, dest, opts))


async def _compare(
    pairs: Sequence[tuple[ObjectInfo, ObjectInfo]],
    source: Store,
    dest: Store,
    opts: TaskOptions,
) -> list[tuple[str, ObjectInfo | None, ObjectInfo | None]]:
    limit = asyncio.Semaphore(opts.concurrency)

    async def complete(store: Store, path: str, info: ObjectInfo) -> ObjectInfo | None:
        if info.size is not None and info.md5 is not None:
            return info
        swift = swift_objects(store)
        async with limit:
            if swift is not None:  # a large object: its MD5 from a HEAD, not from its bytes
                head = await swift.content_info(join(path, info.key))
                if head is None or head.md5 is not None:
                    return None if head is None else ObjectInfo(info.key, head.size, head.md5)
            got = await read_with_info(store, join(path, info.key))
        return None if got is None else ObjectInfo(info.key, got[1].size, got[1].md5)

    async def one(
        pair: tuple[ObjectInfo, ObjectInfo],
    ) -> tuple[str, ObjectInfo | None, ObjectInfo | None]:
        src, dst = pair
        return (
            src.key,
            await complete(source, opts.source_path, src),
            await complete(dest, opts.dest_path, dst),
        )

    return list(await asyncio.gather(*(one(p) for p in pairs)))
