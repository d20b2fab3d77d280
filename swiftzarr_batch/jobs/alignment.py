"""Which dask blocks may be written by separate tasks: the chunk (or shard) alignment rule.

zarr writes a chunk, or a shard, as one object: a task writing part of it reads the object,
changes it and writes it back. Two tasks doing that to one object at once lose one of the
writes without an error. So before a job writes anything, every inner edge between two dask
blocks must fall on an edge of the zarr grid (``check_alignment``), or the blocks are rechunked
to edges that do (``aligned_chunks``). ``write_array`` and ``write_dataset`` both apply it.
"""

from __future__ import annotations

from collections.abc import Sequence

from swiftzarr_batch.errors import ChunkAlignmentError

__all__ = ["aligned_chunks", "check_alignment"]


def check_alignment(
    block_chunks: Sequence[Sequence[int]],
    unit: Sequence[int],
    *,
    what: str,
    offset: Sequence[int] | None = None,
    dims: Sequence[str] | None = None,
    unit_name: str = "chunk",
) -> None:
    """Raise ``ChunkAlignmentError`` unless every zarr chunk/shard is written by one block only.

    ``block_chunks`` are dask's chunks, ``unit`` the zarr chunk (or shard) shape and ``offset``
    where the blocks start in the zarr array. Each inner block edge must fall on a multiple of
    the unit; the outer edges may not (one task owns a partial first or last chunk).
    """
    offset = offset or (0,) * len(unit)
    for axis, (sizes, size, start) in enumerate(zip(block_chunks, unit, offset, strict=True)):
        edge = start
        for i, block in enumerate(sizes[:-1]):
            edge += block
            if size and edge % size:
                name = f"dimension {dims[axis]!r}" if dims else f"axis {axis}"
                first = edge - edge % size
                raise ChunkAlignmentError(
                    f"{what}: dask blocks {i} and {i + 1} along {name} meet at index {edge}, "
                    f"inside zarr {unit_name} [{first}, {first + size}) of size {size}; both "
                    "tasks would read-modify-write that object and one could undo the other. "
                    f"Make dask chunks multiples of {size} (they are {_short(sizes)}), "
                    "or pass rechunk=True"
                )


def aligned_chunks(sizes: Sequence[int], unit: int, offset: int = 0) -> tuple[int, ...]:
    """Dask chunks covering ``sum(sizes)`` whose inner edges fall on multiples of ``unit``.

    Blocks keep roughly the size of the original ones (rounded to whole units, at least one).
    ``offset`` is where the blocks start in the zarr array; the first block is shortened so that
    it ends on a grid edge.
    """
    total = int(sum(sizes))
    if total == 0 or unit <= 0:
        return tuple(sizes) or (0,)
    step = max(1, round(max(sizes) / unit)) * unit
    first = step - offset % unit if offset % unit else step
    out: list[int] = []
    left, current = total, first
    while left > 0:
        out.append(min(current, left))
        left -= out[-1]
        current = step
    return tuple(out)


def _short(sizes: Sequence[int]) -> str:
    shown = ", ".join(str(s) for s in sizes[:6])
    return f"({shown}{', ...' if len(sizes) > 6 else ''})"
