"""Paths of the ``swift://`` file system: what is a name, what is an option, what ``find`` sees.

The names rule: a path is ``container/object name`` and is taken literally: ``?``, ``#``,
``%``, spaces and any Unicode are part of the name (Swift allows them, other clients write
them, and a file system that cut a name at ``?`` would read and write the wrong object). The
only option a ``swift://`` URL carries is the project's own ``?account=AUTH_x`` (another
account of the same cluster): a URL ending in ``?account=...`` (and nothing else after the
``?``) has it stripped; any other ``?`` is part of the name.

``find`` is computed from one flat listing (``found_entries``), the way fsspec's ``find``
defines it from a walk: files at depth <= maxdepth, and with ``withdirs`` every directory at
depth <= maxdepth that holds a file at any depth, plus the root directory itself.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs

__all__ = [
    "PROTOCOL",
    "account_option",
    "content_type_for",
    "directory_info",
    "file_info",
    "found_entries",
    "strip_protocol",
]

PROTOCOL = "swift"
_SCHEME = f"{PROTOCOL}://"


def _split_option(text: str) -> tuple[str, str | None]:
    """``text`` without a trailing ``?account=X`` and X (None when there is no such option)."""
    head, sep, query = text.rpartition("?")
    if not sep or not query.startswith("account="):
        return text, None
    parsed = parse_qs(query, keep_blank_values=True)
    if set(parsed) != {"account"} or len(parsed["account"]) != 1 or "&" in query:
        return text, None
    return head, parsed["account"][0]


def strip_protocol(path: str) -> str:
    """``swift://c/key?account=A`` -> ``c/key``; a bare path is taken literally."""
    text = str(path)
    if text.startswith(_SCHEME):
        text, _ = _split_option(text[len(_SCHEME) :])
    return text.strip("/")


def account_option(path: str) -> str | None:
    """The ``account=`` option of a ``swift://`` URL (None: the credentials' own account)."""
    text = str(path)
    if not text.startswith(_SCHEME):
        return None
    return _split_option(text[len(_SCHEME) :])[1] or None


def content_type_for(name: str) -> str:
    """The Content-Type an upload of ``name`` gets: from its extension, else octet-stream."""
    kind, encoding = mimetypes.guess_type(name, strict=False)
    if kind is None or encoding is not None:  # data.csv.gz is gzip bytes, not text/csv
        return "application/octet-stream"
    return kind


def directory_info(name: str) -> dict[str, Any]:
    """fsspec's info of a directory: a name prefix that has objects below it (Swift has no
    directory objects; markers are not directories)."""
    return {"name": name, "size": 0, "type": "directory"}


def file_info(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    """fsspec's info of an object from a listing entry (or a HEAD turned into one)."""
    large = "slo_etag" in entry
    etag = str(entry.get("slo_etag") if large else entry.get("hash", "")).strip('"')
    return {
        "name": name,
        "size": int(entry.get("bytes", 0)),
        "type": "file",
        "ETag": etag or None,
        "last_modified": entry.get("last_modified"),
        "content_type": entry.get("content_type"),
        "large": large,
    }


def found_entries(
    root: str,
    files: Iterable[tuple[str, dict[str, Any]]],
    *,
    maxdepth: int | None,
    withdirs: bool,
) -> dict[str, dict[str, Any]]:
    """``find``'s result from every file under ``root`` (``name -> info``; names start with
    ``root/``): see the module docstring. The root directory itself is the caller's."""
    found: dict[str, dict[str, Any]] = {}
    cut = len(root) + 1 if root else 0
    for name, info in files:
        parts = name[cut:].split("/")
        depth = len(parts)
        if maxdepth is None or depth <= maxdepth:
            found[name] = info
        if withdirs:
            top = depth - 1 if maxdepth is None else min(depth - 1, maxdepth)
            for level in range(top, 0, -1):
                directory = (f"{root}/" if root else "") + "/".join(parts[:level])
                if directory in found:
                    break  # its parents were added with it
                found[directory] = directory_info(directory)
    return found
