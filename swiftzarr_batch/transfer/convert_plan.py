"""What a converting copy will do, decided before anything is written: ``Target`` and the plan.

A converting copy (``copy_store(..., convert=Target(...))``) re-encodes every array instead of
copying its objects: new format (zarr 2 <-> 3), chunks, shards, compressors and filters. The
plan walks the source hierarchy once (metadata only) and builds the destination's metadata in
memory (a *template* hierarchy), so the tasks can encode shards without the destination having
any metadata yet: data is written first, metadata and consolidated metadata last.

Work is cut into *blocks*: one destination shard (sharded targets), or an aligned block of
destination chunks of about ``block_size`` decoded bytes (unsharded targets). A block is one
dask task; it reads exactly its region of the source, so its peak memory is known from the
shapes alone (``ArrayPlan.task_bytes``, see ``task_memory``) and checked against
``max_memory`` before the first write.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import math
import struct
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numcodecs  # type: ignore[import-untyped]
import numpy as np
import zarr
import zarr.codecs
from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype
from zarr.storage import MemoryStore

from swiftzarr_batch.errors import ConfigurationError
from swiftzarr_batch.jobs.runner import format_bytes
from swiftzarr_batch.store.keys import is_metadata_key, join

__all__ = [
    "ArrayPlan",
    "ConvertMemoryError",
    "ConvertPlan",
    "Target",
    "auto_block",
    "make_plan",
    "parse_codec",
    "parse_shape",
    "parse_size",
    "task_memory",
]

Shape = tuple[int, ...]
MiB = 1 << 20
DIMENSIONS_ATTR = "_ARRAY_DIMENSIONS"
FILL_ATTR = "_FillValue"
PROTOTYPE = default_buffer_prototype()
ZARR_CONCURRENCY_DEFAULT = 10
"""How many source chunks zarr decodes at once while filling one region (``async.concurrency``)."""
TASK_OVERHEAD = 1 * MiB


class ConvertMemoryError(ConfigurationError):
    """A block (one shard, or one destination chunk) needs more memory than ``max_memory``.

    Raised by the plan, before anything is written; ``needed`` and ``limit`` are in bytes.
    """

    def __init__(self, message: str, *, needed: int, limit: int) -> None:
        super().__init__(message)
        self.needed = needed
        self.limit = limit


@dataclass(frozen=True)
class Target:
    """What a converting copy writes (see ``copy_store``'s ``convert``).

    zarr_format: 2 or 3.
    chunks: the destination chunk shape; a tuple applies to every array of that many
        dimensions, a mapping ``{array path: shape}`` to those arrays; None keeps the source's.
    shards: zarr 3 only: a shape (multiple of the chunk shape), a mapping per array, "auto"
        (per array, the chunk grid grown to about ``shard_size`` decoded bytes) or None.
    compressors / filters: "auto" (zarr's default for the format), "keep" (the source's; same
        format only), None (none), a spec like "zstd:3", "gzip:5", "blosc:lz4:5", or codecs.
    block_size: unsharded targets: decoded bytes of the block of chunks one task writes.
    max_memory: refuse to start if one task would need more than this (bytes, estimated).
    checkpoint_seconds: how often the client records finished blocks (the resume manifest).
    """

    zarr_format: Literal[2, 3] = 3
    chunks: Shape | Mapping[str, Shape] | None = None
    shards: Shape | Mapping[str, Shape | None] | Literal["auto"] | None = None
    shard_size: int = 64 * MiB
    compressors: Any = "auto"
    filters: Any = "auto"
    block_size: int = 64 * MiB
    max_memory: int | None = None
    checkpoint_seconds: float = 10.0

    def __post_init__(self) -> None:
        if self.zarr_format not in (2, 3):
            raise ConfigurationError(f"zarr_format must be 2 or 3, got {self.zarr_format!r}")
        if self.shards is not None and self.zarr_format != 3:
            raise ConfigurationError("shards need zarr_format=3 (zarr 2 has no sharding)")
        if isinstance(self.shards, str) and self.shards != "auto":
            raise ConfigurationError(
                f"shards must be a shape, a mapping or 'auto', got {self.shards!r}"
            )
        for name in ("shard_size", "block_size"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"{name} must be >= 1 byte")
        if self.max_memory is not None and self.max_memory < 1:
            raise ConfigurationError("max_memory must be >= 1 byte")

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description (the plan's fingerprint is made from it)."""
        return {
            "zarr_format": self.zarr_format,
            "chunks": _jsonable(self.chunks),
            "shards": _jsonable(self.shards),
            "shard_size": self.shard_size,
            "compressors": repr(self.compressors),
            "filters": repr(self.filters),
            "block_size": self.block_size,
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: list(v) if v is not None else None for k, v in value.items()}
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class ArrayPlan:
    """One array: shapes, the destination metadata documents and the blocks' grid."""

    path: str  # relative to the copied root ("" when the root is the array)
    shape: Shape
    dtype: str
    source_chunks: Shape
    chunks: Shape  # destination (inner) chunks
    shards: Shape | None
    block: Shape  # the region one task writes: a shard, or a block of chunks
    itemsize: int
    task_bytes: int
    metadata: dict[str, bytes] = field(repr=False)  # keys relative to the array

    @property
    def grid(self) -> Shape:
        """Blocks along each dimension (a partial one at the edge counts): the array's tasks."""
        return tuple(-(-s // b) for s, b in zip(self.shape, self.block, strict=True))

    @property
    def blocks(self) -> int:
        """How many tasks the array takes (one per block)."""
        return math.prod(self.grid)

    def indices(self) -> Iterator[Shape]:
        """Every block's index, in C order, generated one at a time."""
        return itertools.product(*(range(n) for n in self.grid))

    def region(self, index: Shape) -> tuple[slice, ...]:
        """The array region the block at ``index`` covers (cut at the array's edge): what its task
        reads and writes."""
        return tuple(
            slice(i * b, min((i + 1) * b, s))
            for i, b, s in zip(index, self.block, self.shape, strict=True)
        )

    def block_id(self, index: Shape) -> str:
        """The block's name in the manifest of done blocks (``"1.0.2"``; ``"0"`` for a 0-d array),
        so a resumed conversion skips what is done."""
        return ".".join(map(str, index)) or "0"


@dataclass(frozen=True)
class ConvertPlan:
    """Every array's plan, the template's group metadata, and the plan's fingerprint."""

    target: Target
    arrays: tuple[ArrayPlan, ...]
    metadata: dict[str, bytes] = field(repr=False)  # every metadata doc, keys relative to root
    fingerprint: str

    @property
    def blocks(self) -> int:
        """Tasks in the whole conversion."""
        return sum(a.blocks for a in self.arrays)

    @property
    def task_bytes(self) -> int:
        """The largest estimated peak memory of one task over all arrays: what ``max_memory`` is
        checked against."""
        return max((a.task_bytes for a in self.arrays), default=0)

    def lines(self) -> list[str]:
        """One line per array for a dry run: shapes, chunks before and after, and its tasks with the
        memory each needs, to judge a conversion before starting it."""
        out = []
        for a in self.arrays:
            unit = f"shards {a.shards}" if a.shards else f"blocks {a.block} of chunks {a.chunks}"
            out.append(
                f"{a.path or '/'}: {a.shape} {a.dtype} chunks {a.source_chunks} -> {a.chunks}, "
                f"{unit}: {a.blocks} tasks of <= {format_bytes(a.task_bytes)} each"
            )
        return out


# -- parsing (CLI and Python share it) ---------------------------------------------------------
def parse_shape(text: str) -> Shape:
    """``"4096x4096"`` -> ``(4096, 4096)``."""
    try:
        shape = tuple(int(p) for p in text.lower().replace(",", "x").split("x"))
    except ValueError:
        raise ConfigurationError(f"not a shape: {text!r} (expected e.g. 512x512)") from None
    if not shape or min(shape) < 1:
        raise ConfigurationError(f"not a shape: {text!r} (every extent must be >= 1)")
    return shape


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1 << 10, "m": 1000**2, "mb": 1000**2}
_UNITS |= {"mib": 1 << 20, "g": 1000**3, "gb": 1000**3, "gib": 1 << 30, "tib": 1 << 40}


def parse_size(text: str) -> int:
    """``"64MiB"`` -> 67108864; plain numbers are bytes."""
    t = text.strip().lower()
    digits = t.rstrip("abcdefghijklmnopqrstuvwxyz ")
    unit = t[len(digits) :].strip()
    try:
        value = float(digits) * _UNITS[unit]
    except (KeyError, ValueError):
        raise ConfigurationError(f"not a size: {text!r} (expected e.g. 64MiB, 2GiB)") from None
    if value < 1:
        raise ConfigurationError(f"not a size: {text!r} (must be >= 1 byte)")
    return int(value)


def parse_codec(text: str, zarr_format: int) -> Any:
    """``"zstd:3"``, ``"gzip:5"``, ``"blosc:lz4:5"``, ``"none"`` -> a codec for the format."""
    name, *args = text.strip().lower().split(":")
    if name in ("none", ""):
        return None
    try:
        if name == "zstd":
            level = int(args[0]) if args else 3
            return zarr.codecs.ZstdCodec(level=level) if zarr_format == 3 else numcodecs.Zstd(level)
        if name == "gzip":
            level = int(args[0]) if args else 5
            return zarr.codecs.GzipCodec(level=level) if zarr_format == 3 else numcodecs.GZip(level)
        if name == "blosc":
            cname = args[0] if args else "zstd"
            level = int(args[1]) if len(args) > 1 else 5
            if zarr_format == 3:
                return zarr.codecs.BloscCodec(cname=cast(Any, cname), clevel=level)
            return numcodecs.Blosc(cname=cname, clevel=level)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(f"bad compressor {text!r}: {exc}") from None
    raise ConfigurationError(
        f"unknown compressor {text!r}: use zstd[:L], gzip[:L], blosc[:CNAME[:L]] or none"
    )


# -- sizes ---------------------------------------------------------------------------------------
def auto_block(chunks: Shape, shape: Shape, itemsize: int, size: int) -> Shape:
    """The chunk grid grown (by doubling, smallest factor first) to at most ``size`` bytes.

    Never beyond the array (a block covers at most every chunk along a dimension), never below
    one chunk. Growing the least-grown dimension keeps blocks square-ish in chunks.
    """
    counts = [max(1, -(-s // c)) for s, c in zip(shape, chunks, strict=True)]
    factors = [1] * len(chunks)
    while True:
        growable = [d for d in range(len(chunks)) if factors[d] < counts[d]]
        if not growable:
            break
        d = min(reversed(growable), key=lambda i: factors[i])
        trial = list(factors)
        trial[d] = min(counts[d], trial[d] * 2)
        if math.prod(c * f for c, f in zip(chunks, trial, strict=True)) * itemsize > size:
            break
        factors = trial
    return tuple(c * f for c, f in zip(chunks, factors, strict=True))


def task_memory(block: Shape, source_chunks: Shape, itemsize: int) -> int:
    """A task's peak, estimated from shapes: four regions' worth (the decoded source region,
    the encoded inner chunks and the shard they are joined into, the region decoded again for
    the check), up to ``ZARR_CONCURRENCY_DEFAULT`` source chunks being decoded (compressed and
    decoded; a source chunk may stick out of the region) and ``TASK_OVERHEAD`` for codecs'
    working memory. Measured peaks (tracemalloc, tests) stay below it."""
    region = math.prod(block) * itemsize
    overlapping = math.prod(
        -(-b // c) + (1 if b % c else 0) for b, c in zip(block, source_chunks, strict=True)
    )
    in_flight = min(overlapping, ZARR_CONCURRENCY_DEFAULT)
    return 4 * region + in_flight * 2 * math.prod(source_chunks) * itemsize + TASK_OVERHEAD


# -- the plan ------------------------------------------------------------------------------------
def make_plan(source: Store, source_path: str, target: Target) -> ConvertPlan:
    """Walk the source's metadata and build the destination's template and blocks.

    Raises ConfigurationError for shapes that do not fit the arrays and ConvertMemoryError if a
    task would need more than ``target.max_memory``; nothing is written anywhere.
    """
    try:
        node = zarr.open(store=source, path=source_path or None, mode="r")
    except (FileNotFoundError, KeyError, zarr.errors.NodeNotFoundError):
        raise ConfigurationError(
            f"no zarr group or array at {source_path or '/'} of the source"
        ) from None
    template: dict[str, Any] = {}
    mem = MemoryStore(template)
    plans: list[ArrayPlan] = []
    if isinstance(node, zarr.Array):
        plans.append(_plan_array(node, "", target))
    else:
        root = zarr.create_group(mem, zarr_format=target.zarr_format, attributes=dict(node.attrs))
        members = sorted(node.members(max_depth=None), key=lambda m: m[0])
        groups = {"": root}
        for path, member in members:
            parent = groups[path.rsplit("/", 1)[0] if "/" in path else ""]
            name = path.rsplit("/", 1)[-1]
            if isinstance(member, zarr.Array):
                plans.append(_plan_array(member, path, target))
            else:
                groups[path] = parent.create_group(name, attributes=dict(member.attrs))
    for a in plans:
        template.update(
            {join(a.path, k): PROTOTYPE.buffer.from_bytes(v) for k, v in a.metadata.items()}
        )
    if not isinstance(node, zarr.Array):  # consolidated here: no reading back the destination
        with warnings.catch_warnings():  # zarr 3: "consolidated metadata is not in the spec"
            warnings.simplefilter("ignore")
            zarr.consolidate_metadata(mem)
    metadata = {k: v.to_bytes() for k, v in template.items() if is_metadata_key(k)}
    fingerprint = hashlib.sha256(
        json.dumps(
            {
                "target": target.describe(),
                "metadata": {k: v.hex() for k, v in sorted(metadata.items())},
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()[:32]
    plan = ConvertPlan(target, tuple(plans), metadata, fingerprint)
    _check_memory(plan)
    return plan


def _check_memory(plan: ConvertPlan) -> None:
    limit = plan.target.max_memory
    if limit is None:
        return
    worst = max(plan.arrays, key=lambda a: a.task_bytes, default=None)
    if worst is not None and worst.task_bytes > limit:
        what = f"one shard {worst.shards}" if worst.shards else f"a block {worst.block}"
        raise ConvertMemoryError(
            f"array {worst.path or '/'}: {what} of {worst.dtype} needs about "
            f"{format_bytes(worst.task_bytes)} per task ({worst.task_bytes} bytes), more than "
            f"max_memory={format_bytes(limit)} ({limit} bytes); choose smaller shards or chunks. "
            "Nothing was written",
            needed=worst.task_bytes,
            limit=limit,
        )


def _for_array(value: Any, path: str, ndim: int) -> Any:
    if isinstance(value, Mapping):
        return value.get(path)
    if isinstance(value, tuple) and len(value) != ndim:
        return None  # a shape for arrays of another dimensionality
    return value


def _plan_array(
    src: zarr.Array[Any],
    path: str,
    target: Target,
) -> ArrayPlan:
    shape, ndim = tuple(src.shape), len(src.shape)
    itemsize = src.dtype.itemsize if src.dtype.kind not in "OTU" else 16
    source_chunks = tuple(src.chunks)
    chunks = _for_array(target.chunks, path, ndim) or source_chunks
    if len(chunks) != ndim:
        raise ConfigurationError(
            f"array {path or '/'}: chunks {chunks} do not have {ndim} dimensions"
        )
    chunks = tuple(int(c) for c in chunks)
    shards_wanted = _for_array(target.shards, path, ndim)
    if shards_wanted == "auto":
        shards: Shape | None = auto_block(chunks, shape, itemsize, target.shard_size)
    elif shards_wanted is None:
        shards = None
    else:
        shards = tuple(int(s) for s in shards_wanted)
        if len(shards) != ndim or any(s % c for s, c in zip(shards, chunks, strict=True)):
            raise ConfigurationError(
                f"array {path or '/'}: shards {shards} must be a multiple of the chunks {chunks}"
            )
    if shards is not None and shards == chunks:
        shards = None if target.shards == "auto" else shards
    block = shards or auto_block(chunks, shape, itemsize, target.block_size)
    if target.max_memory is not None and shards is None:  # shrink blocks of chunks to fit
        while block != chunks and task_memory(block, source_chunks, itemsize) > target.max_memory:
            d = max(range(ndim), key=lambda i: block[i] // chunks[i])
            block = tuple(
                max(c, (b // c // 2) * c) if i == d else b
                for i, (b, c) in enumerate(zip(block, chunks, strict=True))
            )
    attrs = dict(src.attrs)
    dims = _dimension_names(src, attrs)
    if target.zarr_format == 2 and dims is not None:
        attrs[DIMENSIONS_ATTR] = list(dims)
    fill = _fill_value(src, attrs, dims is not None, target.zarr_format)
    kwargs: dict[str, Any] = {
        "shape": shape,
        "dtype": src.metadata.data_type if src.metadata.zarr_format == 3 else src.dtype,
        "chunks": chunks,
        "shards": shards,
        "fill_value": fill,
        "attributes": attrs,
        "zarr_format": target.zarr_format,
        "compressors": _codecs(target.compressors, src, target, "compressors"),
        "filters": _codecs(target.filters, src, target, "filters"),
    }
    if target.zarr_format == 3:
        kwargs["dimension_names"] = dims
    one: dict[str, Any] = {}
    zarr.create_array(MemoryStore(one), **kwargs)
    made_docs = {k: v.to_bytes() for k, v in one.items() if is_metadata_key(k)}
    return ArrayPlan(
        path,
        shape,
        str(src.dtype),
        source_chunks,
        chunks,
        shards,
        block,
        itemsize,
        task_memory(block, source_chunks, itemsize),
        made_docs,
    )


def _dimension_names(src: zarr.Array[Any], attrs: dict[str, Any]) -> Sequence[str | None] | None:
    """v2 keeps dimension names in ``_ARRAY_DIMENSIONS`` (xarray's convention), v3 in the
    metadata's ``dimension_names``; the attribute is popped so it does not travel twice."""
    from_attrs = attrs.pop(DIMENSIONS_ATTR, None)
    if src.metadata.zarr_format == 3 and src.metadata.dimension_names is not None:
        return tuple(src.metadata.dimension_names)
    return tuple(from_attrs) if from_attrs is not None else None


def _fill_value(src: zarr.Array[Any], attrs: dict[str, Any], xarray: bool, fmt: int) -> Any:
    """The destination's fill value, and xarray's ``_FillValue`` moved where xarray expects it.

    xarray masks with the zarr 2 ``fill_value`` but, in zarr 3, with a ``_FillValue``
    attribute (floats as base64 of the little-endian float64). For arrays with dimension
    names (xarray's) a v2 fill value becomes that attribute, and back; a v3 array without the
    attribute becomes a v2 array with no fill value, so no values are masked that were not.
    """
    fill = src.fill_value
    if not xarray or src.metadata.zarr_format == fmt:
        return fill
    if fmt == 3:
        if fill is not None and FILL_ATTR not in attrs and src.dtype.kind in "biuf":
            value = np.asarray(fill).item()
            attrs[FILL_ATTR] = (
                base64.standard_b64encode(struct.pack("<d", value)).decode()
                if src.dtype.kind == "f"
                else value
            )
        return fill
    if FILL_ATTR not in attrs:
        return None
    value = attrs.pop(FILL_ATTR)
    if isinstance(value, str) and src.dtype.kind == "f":
        return struct.unpack("<d", base64.standard_b64decode(value))[0]
    return value


def _codecs(wanted: Any, src: zarr.Array[Any], target: Target, which: str) -> Any:
    if isinstance(wanted, str) and wanted == "keep":
        if src.metadata.zarr_format != target.zarr_format:
            raise ConfigurationError(
                f"{which}='keep' needs the same zarr format on both sides (source is "
                f"{src.metadata.zarr_format}, target {target.zarr_format})"
            )
        return getattr(src, which) or None
    if isinstance(wanted, str) and wanted != "auto":
        return parse_codec(wanted, target.zarr_format)
    return wanted
