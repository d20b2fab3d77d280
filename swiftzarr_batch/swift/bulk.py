"""The body of a bulk-delete request: one line per object, and which names cannot be a line.

Why this needs care: Swift's bulk middleware reads the body in pieces of ``max_path_length``
bytes (``max_object_name_length + max_container_name_length + 2``, 1 282 by default) and
refuses the whole request ("400 Invalid File Name", naming nothing) as soon as its buffer holds
more than twice that without a newline. Depending on where a line falls in those pieces, any
line longer than ``max_path_length`` can trip it, and a legal 1 024-byte name, percent-encoded
the usual way, is three times as long (509 x ``é``, 254 emoji, 300 CJK characters, 900 spaces).

So a line percent-encodes only what the middleware would misread (``%``, which it unquotes,
and ASCII whitespace and controls, which it strips or splits on) and sends every other byte,
UTF-8 included, as it is; a name whose line is still longer than ``max_path_length`` (many
spaces, say) is not put in a bulk request at all: the caller deletes it with its own DELETE.
Pure functions, no I/O: the container layer sends the requests.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

from swiftzarr_batch.swift.names import MAX_CONTAINER_NAME_BYTES, MAX_OBJECT_NAME_BYTES

__all__ = ["body_line", "max_line_bytes", "split_names"]

_ESCAPE = re.compile(rb"[\x00-\x20%\x7f]")  # what the middleware would strip, split or unquote


def _encode(text: str) -> bytes:
    raw = text.encode("utf-8")
    return _ESCAPE.sub(lambda m: b"%%%02X" % m.group()[0], raw) if _ESCAPE.search(raw) else raw


def body_line(container: str, name: str) -> bytes:
    """The bulk-delete line of ``container/name`` (no newline)."""
    return b"/" + _encode(container) + b"/" + _encode(name)


def max_line_bytes(info: dict[str, Any]) -> int:
    """The longest line the cluster's bulk middleware always accepts: its ``max_path_length``,
    from the name limits ``/info`` states (Swift's defaults otherwise)."""
    swift = info.get("swift") if isinstance(info.get("swift"), dict) else {}
    assert isinstance(swift, dict)
    obj = int(swift.get("max_object_name_length", MAX_OBJECT_NAME_BYTES))
    cont = int(swift.get("max_container_name_length", MAX_CONTAINER_NAME_BYTES))
    return obj + cont + 2


def split_names(
    container: str, names: Iterable[str], limit: int
) -> tuple[list[tuple[str, bytes]], list[str]]:
    """``(names with their lines, names too long for a line)``: the first go into bulk
    requests, the second are deleted one by one."""
    lines: list[tuple[str, bytes]] = []
    alone: list[str] = []
    for name in names:
        line = body_line(container, name)
        if len(line) <= limit:
            lines.append((name, line))
        else:
            alone.append(name)
    return lines, alone


def batches(items: Sequence[Any], per_request: int, parallel: int, smallest: int) -> list[Any]:
    """``items`` cut into requests: at most ``per_request`` each, and small enough that
    ``parallel`` requests share the work, but not below ``smallest`` (not worth a request)."""
    size = min(per_request, max(smallest, -(-len(items) // parallel)))
    return [items[i : i + size] for i in range(0, len(items), size)]
