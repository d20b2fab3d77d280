"""zarr byte requests in HTTP terms: the Range header for a ``ByteRequest``, the slice of a body
when a server ignored the range, and the bytes of a ``Buffer`` to upload without a copy.

Kept apart from ``swift_store`` because they are pure functions of zarr's request types: the
store's methods stay about Swift, and these are testable alone.
"""

from __future__ import annotations

from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import Buffer

__all__ = ["range_header", "slice_body", "upload_body"]


def upload_body(value: Buffer) -> bytes | memoryview:
    """The bytes to upload, without a copy when the buffer is a contiguous host array."""
    try:
        return memoryview(value.as_numpy_array()).cast("B")
    except (TypeError, ValueError, AttributeError):
        return value.to_bytes()


def range_header(byte_range: ByteRequest | None) -> str | None:
    """HTTP Range for a zarr ByteRequest; "" for an empty range; ValueError for a bad one."""
    if byte_range is None:
        return None
    if isinstance(byte_range, RangeByteRequest):
        start, end = byte_range.start, byte_range.end
        if start < 0 or end < start:
            raise ValueError(f"invalid byte range [{start}, {end}): need 0 <= start <= end")
        return "" if end == start else f"bytes={start}-{end - 1}"
    if isinstance(byte_range, OffsetByteRequest):
        if byte_range.offset < 0:
            raise ValueError(f"invalid byte offset {byte_range.offset}: must be >= 0")
        return f"bytes={byte_range.offset}-"
    if isinstance(byte_range, SuffixByteRequest):
        if byte_range.suffix < 0:
            raise ValueError(f"invalid suffix length {byte_range.suffix}: must be >= 0")
        return "" if byte_range.suffix == 0 else f"bytes=-{byte_range.suffix}"
    raise TypeError(f"Unexpected byte_range, got {byte_range!r}")


def slice_body(body: bytes | bytearray, byte_range: ByteRequest | None) -> bytes | bytearray:
    """The part of a whole object's ``body`` that ``byte_range`` asks for: a server (or a proxy in
    front of it) may answer a Range request with the whole object (200), and zarr must still get
    only the bytes it asked for."""
    if isinstance(byte_range, RangeByteRequest):
        return body[byte_range.start : byte_range.end]
    if isinstance(byte_range, OffsetByteRequest):
        return body[byte_range.offset :]
    if isinstance(byte_range, SuffixByteRequest):
        return body[-byte_range.suffix :] if byte_range.suffix else b""
    return body
