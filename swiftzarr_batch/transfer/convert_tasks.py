"""The worker side of a converting copy: one dask task converts (or checks) one block.

A block is one destination shard, or an aligned block of destination chunks (``convert_plan``).
The task reads exactly that region of the source (zarr's slicing reads and decodes only the
source chunks overlapping it), encodes it into an in-memory copy of the destination array (the
plan's metadata documents: no destination metadata needs to exist yet), decodes what it
encoded and compares the two decoded regions' digests, and only then writes the encoded
objects: a shard is one PUT, never read-modify-written. A Swift destination checks each body
against the MD5 sent with it, so what is stored is what was decoded and compared.

``region_digest`` is the checksum both sides share: SHA-256 of the decoded values in C order
(NaNs made canonical, byte order native, strings by value), so it equals for a zarr 2 chunk
grid and a zarr 3 shard holding the same numbers, whatever the codecs. Reading an absent chunk
yields the fill value, so an all-fill block (written as no object at all) digests like the
source region.
"""

from __future__ import annotations

import asyncio
import hashlib
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


def _open(store: Store, path: str, mode: str = "r") -> zarr.Array[Any]:
    return zarr.open_array(store, path=path or None, mode=mode)  # type: ignore[arg-type]


def _read(source: Store, spec: TaskSpec, plan: ArrayPlan, index: Shape) -> npt.NDArray[Any]:
    values = _open(source, join(spec.source_path, plan.path))[plan.region(index)]
    return np.asarray(values)


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
        values = _read(source, spec, plan, ref[1])
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
        sync(_write(dest, spec, plan, encoded, result))
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
    _open(MemoryStore(objects), "", mode="r+")[plan.region(index)] = values
    return {k: v for k, v in objects.items() if not is_metadata_key(k)}


def _decode(plan: ArrayPlan, index: Shape, encoded: dict[str, Buffer]) -> npt.NDArray[Any]:
    objects = _template(plan) | encoded
    return np.asarray(_open(MemoryStore(objects, read_only=True), "")[plan.region(index)])


async def _write(
    dest: Store, spec: TaskSpec, plan: ArrayPlan, encoded: dict[str, Buffer], result: BlockResult
) -> None:
    limit = asyncio.Semaphore(spec.concurrency)

    async def put(key: str, body: Buffer) -> None:
        rel = join(plan.path, key)
        async with limit:
            await dest.set(join(spec.dest_path, rel), body)
        data = body.as_numpy_array()  # a view, not a copy of a shard
        result.objects[rel] = hashlib.md5(memoryview(data).cast("B")).hexdigest()
        result.bytes_written += data.nbytes

    await asyncio.gather(*(put(k, b) for k, b in encoded.items()))


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
