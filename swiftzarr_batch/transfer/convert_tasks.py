"""The worker side of a converting copy: one dask task converts (or checks) one block.

A block is one destination shard, or an aligned block of destination chunks (``convert_plan``).
The task reads exactly that region of the source (zarr's slicing reads and decodes only the
source chunks overlapping it), encodes it into an in-memory copy of the destination array (the
plan's metadata documents: no destination metadata needs to exist yet), decodes what it
encoded and compares the two decoded regions' digests, and only then writes the encoded
objects: a shard is one PUT, never read-modify-written. A Swift destination checks each body
against the MD5 sent with it, so what is stored is what was decoded and compared. Reading and
encoding run on zarr's synchronous pipeline (``FAST_PIPELINE``), the check's decode on the
default one, so the check does not trust the code that encoded.

``region_digest`` is the checksum both sides share: SHA-256 of the decoded values in C order
(NaNs made canonical, byte order native, strings by value), so it equals for a zarr 2 chunk
grid and a zarr 3 shard holding the same numbers, whatever the codecs. Reading an absent chunk
yields the fill value, so an all-fill block (written as no object at all) digests like the
source region.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import zarr
from zarr.abc.store import Store
from zarr.core.buffer import Buffer, default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import MemoryStore

from swiftzarr_batch.errors import (
    AuthenticationError,
    PermissionDeniedError,
    ReadOnlyError,
    SwiftZarrError,
)
from swiftzarr_batch.store.keys import is_metadata_key, join
from swiftzarr_batch.transfer.convert_plan import ArrayPlan, Shape

__all__ = ["BlockRef", "BlockResult", "TaskSpec", "check_blocks", "convert_blocks", "region_digest"]

FATAL = (AuthenticationError, PermissionDeniedError, ReadOnlyError)
PROTOTYPE = default_buffer_prototype()
#: zarr's synchronous pipeline (opt-in in zarr 3.4): reads and encodes a block in one batch off
#: the event loop, not one coroutine per chunk on the one loop thread every task shares (W8:
#: a converting copy in half the time). The check decodes with the array's default pipeline,
#: the one readers use: two implementations of the codecs' orchestration check each other.
FAST_PIPELINE = "zarr.core.codec_pipeline.FusedCodecPipeline"
_PIPELINE_CHOICE = threading.Lock()

BlockRef = tuple[str, Shape]
"""(array path relative to the copied root, block index)."""


@dataclass(frozen=True)
class TaskSpec:
    source_path: str
    dest_path: str
    arrays: dict[str, ArrayPlan]
    concurrency: int


@dataclass
class BlockResult:
    array: str
    block: str
    digest: str = ""
    objects: dict[str, str] = field(default_factory=dict)  # key (relative to dest) -> MD5
    bytes_written: int = 0
    problem: str | None = None

    @property
    def ok(self) -> bool:
        """True when the block had no ``problem``: converted and written (``convert_blocks``), or
        equal on both sides (``check_blocks``)."""
        return self.problem is None


def region_digest(values: npt.NDArray[Any]) -> str:
    """SHA-256 of decoded values, the same for equal values however they were stored."""
    h = hashlib.sha256(f"{values.dtype.kind}{values.dtype.itemsize}{values.shape}".encode())
    if values.dtype.kind in "OTU":
        for item in values.ravel(order="C"):
            text = str(item).encode()
            h.update(len(text).to_bytes(8, "little") + text)
        return h.hexdigest()
    if not values.dtype.isnative:
        values = values.astype(values.dtype.newbyteorder("="))
    if values.dtype.kind in "fc":
        nan = np.isnan(values)
        if nan.any():
            values = np.where(nan, np.array(np.nan, dtype=values.dtype), values)
    h.update(memoryview(np.ascontiguousarray(values)).cast("B"))
    return h.hexdigest()


def _open(store: Store, path: str, mode: str = "r", *, pipeline: str = "") -> zarr.Array[Any]:
    """The array at ``path``; with ``pipeline``, using that codec pipeline (see ``_encode``)."""
    arr = zarr.open_array(store, path=path or None, mode=mode)  # type: ignore[arg-type]
    if not pipeline:
        return arr
    # zarr picks an array's pipeline from its global config when the array is built; build it
    # again (no I/O: the metadata is read already) with the config set, under a lock so that
    # concurrent tasks never restore each other's setting.
    with _PIPELINE_CHOICE, zarr.config.set({"codec_pipeline.path": pipeline}):
        return zarr.Array(zarr.AsyncArray(arr.metadata, arr.store_path, arr.async_array.config))


def _read(
    source: Store, spec: TaskSpec, plan: ArrayPlan, index: Shape, pipeline: str = ""
) -> npt.NDArray[Any]:
    values = _open(source, join(spec.source_path, plan.path), pipeline=pipeline)
    return np.asarray(values[plan.region(index)])


# -- convert ----------------------------------------------------------------------------------
def convert_blocks(
    refs: Sequence[BlockRef], source: Store, dest: Store, spec: TaskSpec
) -> list[BlockResult]:
    """Convert each block (usually one): read, encode, check, write. Runs in a dask task.

    A block that fails (a source read, a write after the store's retries) is reported in its
    result, not raised, so the blocks done before it are recorded and a re-run skips them;
    errors that would hit every block (authentication, permissions) raise.
    """
    return [_convert_one(ref, source, dest, spec) for ref in refs]


def _convert_one(ref: BlockRef, source: Store, dest: Store, spec: TaskSpec) -> BlockResult:
    plan = spec.arrays[ref[0]]
    result = BlockResult(plan.path, plan.block_id(ref[1]))
    try:
        values = _read(source, spec, plan, ref[1], FAST_PIPELINE)
        result.digest = region_digest(values)
        encoded = _encode(plan, ref[1], values)
        del values  # from here on: the encoded objects and one decoded copy for the check
        check = region_digest(_decode(plan, ref[1], encoded))
        if check != result.digest:
            result.problem = (
                f"{plan.path or '/'} block {result.block}: the encoded block does not decode "
                "to the source values (lossy codec or dtype?); nothing written for it"
            )
            return result
        _write(dest, spec, plan, encoded, result)
    except FATAL:
        raise
    except (SwiftZarrError, OSError, ValueError, KeyError, RuntimeError) as exc:
        result.problem = f"{plan.path or '/'} block {result.block}: {type(exc).__name__}: {exc}"
    return result


def _template(plan: ArrayPlan) -> dict[str, Buffer]:
    return {k: PROTOTYPE.buffer.from_bytes(v) for k, v in plan.metadata.items()}


def _encode(plan: ArrayPlan, index: Shape, values: npt.NDArray[Any]) -> dict[str, Buffer]:
    """The block's destination objects, encoded in memory: {key relative to the array: body}."""
    objects = _template(plan)
    _open(MemoryStore(objects), "", mode="r+", pipeline=FAST_PIPELINE)[plan.region(index)] = values
    return {k: v for k, v in objects.items() if not is_metadata_key(k)}


def _decode(plan: ArrayPlan, index: Shape, encoded: dict[str, Buffer]) -> npt.NDArray[Any]:
    objects = _template(plan) | encoded
    return np.asarray(_open(MemoryStore(objects, read_only=True), "")[plan.region(index)])


def _write(
    dest: Store, spec: TaskSpec, plan: ArrayPlan, encoded: dict[str, Buffer], result: BlockResult
) -> None:
    """PUT the encoded objects, then record their MD5s: hashed here, in the task's thread,
    beside other tasks (hashlib lets go of the GIL), not on the event loop all tasks share."""
    views = {k: memoryview(b.as_numpy_array()).cast("B") for k, b in encoded.items()}  # no copy
    md5s = {join(plan.path, k): hashlib.md5(v).hexdigest() for k, v in views.items()}
    limit = asyncio.Semaphore(spec.concurrency)

    async def put(key: str, body: Buffer) -> None:
        async with limit:
            await dest.set(join(spec.dest_path, plan.path, key), body)

    async def put_all() -> None:
        await asyncio.gather(*(put(k, b) for k, b in encoded.items()))

    sync(put_all())
    result.objects.update(md5s)
    result.bytes_written += sum(v.nbytes for v in views.values())


# -- check ------------------------------------------------------------------------------------
def check_blocks(
    refs: Sequence[BlockRef], source: Store, dest: Store, spec: TaskSpec
) -> list[BlockResult]:
    """Digest each block's region on both sides, as stored now; a difference is a problem."""
    out = []
    for ref in refs:
        plan = spec.arrays[ref[0]]
        result = BlockResult(plan.path, plan.block_id(ref[1]))
        try:
            result.digest = region_digest(_read(source, spec, plan, ref[1]))
            there = np.asarray(_open(dest, join(spec.dest_path, plan.path))[plan.region(ref[1])])
            if region_digest(there) != result.digest:
                result.problem = (
                    f"{plan.path or '/'} block {result.block} {plan.region(ref[1])}: the "
                    "destination's decoded values differ from the source's"
                )
        except FATAL:
            raise
        except Exception as exc:  # a corrupt object fails to decode in many ways: all reported
            result.problem = (
                f"{plan.path or '/'} block {result.block}: unreadable: {type(exc).__name__}: {exc}"
            )
        out.append(result)
    return out
