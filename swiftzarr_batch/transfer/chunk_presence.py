"""Which of an array's chunk objects a listing showed: one bit per chunk of the grid.

``verify_store`` must say which chunks are missing without holding every listed name: a
million-chunk array would cost ~100 MB as a set of strings, and the grid is known from the
metadata anyway. So each listed key is decoded back to its grid index (the inverse of the
array's chunk key encoding) and recorded as one bit: a million chunks take 125 KB. Keys that do
not decode to a chunk inside the grid are not the array's: orphans.

The decoding is derived from the array's own ``encode`` (so zarr's encodings, v2 ``.zarray``
with either ``dimension_separator`` and v3 ``default``/``v2`` with ``/`` or ``.``, are all
covered the same way) and checked by a round trip when the array is set up.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator

from swiftzarr_batch.store.hierarchy import ArraySpec
from swiftzarr_batch.store.keys import join

log = logging.getLogger(__name__)

__all__ = ["MAX_BITMAP_BYTES", "ChunkPresence"]

MAX_BITMAP_BYTES = 256 * 2**20
"""Above this (2 G chunks) an array's presence is kept as a set of indices instead: such a grid
is sparse by construction (nobody stores 2 G objects), and a set costs per present chunk."""

_SCAN = 1 << 16  # bitmap bytes scanned at a time when looking for missing chunks


class ChunkPresence:
    """The chunk objects of one array seen so far (see the module docstring)."""

    def __init__(self, spec: ArraySpec) -> None:
        self.spec = spec
        self.grid_shape = spec.grid_shape
        self.ndim = len(self.grid_shape)
        self.expected = math.prod(self.grid_shape)
        self.present = 0
        self.prefix, self.separator = _layout(spec)
        self.node_prefix = f"{spec.path}/" if spec.path else ""
        # One match per listed key: the node, the encoding's prefix, canonical decimal
        # coordinates (no sign, no leading zero) joined by its separator.
        number = "(0|[1-9][0-9]*)"
        self._pattern = re.compile(
            re.escape(self.node_prefix + self.prefix)
            + re.escape(self.separator).join([number] * self.ndim)
        )
        nbytes = (self.expected + 7) // 8
        self._bits: bytearray | None = bytearray(nbytes) if nbytes <= MAX_BITMAP_BYTES else None
        self._sparse: set[int] = set()
        if self._bits is None:
            log.warning(
                "array %s has %d chunks: presence kept per present chunk, not as a bitmap",
                spec.path or "/",
                self.expected,
            )
        self._check_round_trip()

    def _check_round_trip(self) -> None:
        last = tuple(n - 1 for n in self.grid_shape)
        for coords in {(0,) * self.ndim, last, tuple(min(1, c) for c in last)}:
            if any(c < 0 for c in coords):
                continue  # an empty grid has no chunks to decode
            key = self.spec.encode(coords)
            if self.index(key) != self.ravel(coords):
                raise ValueError(
                    f"chunk key encoding not understood ({key!r} for chunk {coords}); "
                    "its chunks cannot be checked"
                )

    def ravel(self, coords: tuple[int, ...]) -> int:
        """The grid index of chunk ``coords`` in C order: its bit in the presence bitmap."""
        idx = 0
        for c, n in zip(coords, self.grid_shape, strict=True):
            idx = idx * n + c
        return idx

    def index(self, rel: str) -> int:
        """The grid index of the chunk key ``rel`` (relative to the array), or -1 when it is not
        a key of one of this array's chunks (wrong form, not canonical, outside the grid)."""
        return self._index(self.node_prefix + rel)

    def _index(self, key: str) -> int:
        match = self._pattern.fullmatch(key)
        if match is None:
            return -1
        idx = 0
        # The pattern has one group per dimension, so the zip is exact (no strict= check:
        # this runs once per listed key).
        for value, n in zip(map(int, match.groups()), self.grid_shape):
            if value >= n:
                return -1
            idx = idx * n + value
        return idx

    def record(self, key: str) -> bool:
        """Mark the store key ``key`` present; False when it is not one of this array's chunks."""
        idx = self._index(key)
        if idx < 0:
            return False
        if self._bits is not None:
            byte, bit = idx >> 3, 1 << (idx & 7)
            if not self._bits[byte] & bit:
                self._bits[byte] |= bit
                self.present += 1
        elif idx not in self._sparse:
            self._sparse.add(idx)
            self.present += 1
        return True

    @property
    def missing(self) -> int:
        """How many of the grid's chunks have not been recorded (yet)."""
        return self.expected - self.present

    def missing_keys(self, limit: int) -> list[str]:
        """The first ``limit`` missing chunk keys in grid (C) order."""
        return [
            join(self.spec.path, self.spec.encode(self._unravel(i)))
            for i in _take(self._missing_indices(), limit)
        ]

    def _missing_indices(self) -> Iterator[int]:
        if self._bits is None:
            yield from (i for i in range(self.expected) if i not in self._sparse)
            return
        bits = self._bits
        for start in range(0, len(bits), _SCAN):
            block = bytes(bits[start : start + _SCAN])
            if block.count(0xFF) == len(block):
                continue
            for offset, value in enumerate(block):
                if value == 0xFF:
                    continue
                base = (start + offset) * 8
                for b in range(8):
                    if not value & (1 << b) and base + b < self.expected:
                        yield base + b

    def _unravel(self, idx: int) -> tuple[int, ...]:
        coords = []
        for n in reversed(self.grid_shape):
            idx, c = divmod(idx, n)
            coords.append(c)
        return tuple(reversed(coords))


def _take(items: Iterator[int], limit: int) -> Iterator[int]:
    for count, item in enumerate(items):
        if count >= limit:
            return
        yield item


def _layout(spec: ArraySpec) -> tuple[str, str]:
    """(key prefix, separator) of the array's chunk keys, read off its own encoder."""
    ndim = len(spec.grid)
    if ndim == 0:
        return spec.encode(()), "/"
    probe = spec.encode(tuple(range(11, 11 + ndim)))
    first = probe.find("11")
    if first < 0:
        raise ValueError(f"chunk key encoding not understood ({probe!r})")
    if ndim == 1:
        return probe[:first], "/"
    second = probe.find("12", first + 2)
    return probe[:first], probe[first + 2 : second]
