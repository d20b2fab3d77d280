"""Validation and quoting of Swift container names, prefixes and object keys.

Swift accepts almost any UTF-8 object name, but some names silently do something else than the
user meant (a leading ``/`` doubles a slash in the URL, ``..`` segments are resolved by proxies
and clients, NUL is rejected with a 412). Rejecting them here, before any request, is what keeps
a bad name from half-writing a dataset.
"""

from __future__ import annotations

from urllib.parse import quote

from swiftzarr_batch.errors import InvalidNameError

MAX_CONTAINER_NAME_BYTES = 256
MAX_OBJECT_NAME_BYTES = 1024


def _check_utf8(name: str, what: str) -> None:
    """A lone surrogate (``'\\ud800'``, e.g. from ``os.fsdecode`` of bad bytes) has no UTF-8
    form, so no request could carry it: say so now rather than fail inside the HTTP client."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidNameError(
            f"{what} is not valid Unicode (a lone surrogate at position {exc.start}, which "
            f"UTF-8 cannot encode): {name[:60]!r}"
        ) from None


def validate_container(name: object) -> str:
    """Return ``name`` if it is a usable container name, else raise InvalidNameError."""
    if not isinstance(name, str) or not name:
        raise InvalidNameError(f"container name must be a non-empty string, got {name!r}")
    _check_utf8(name, "container name")
    if "/" in name:
        raise InvalidNameError(f"container name must not contain '/': {name!r}")
    if "\x00" in name:
        raise InvalidNameError(f"container name must not contain NUL: {name!r}")
    if len(name.encode("utf-8")) > MAX_CONTAINER_NAME_BYTES:
        raise InvalidNameError(
            f"container name is longer than {MAX_CONTAINER_NAME_BYTES} bytes: {name[:40]!r}..."
        )
    if name in (".", ".."):
        raise InvalidNameError(f"container name {name!r} is not allowed")
    return name


def normalize_prefix(prefix: object) -> str:
    """Return the prefix without trailing '/', checked segment by segment ('' is the root)."""
    if prefix is None:
        return ""
    if not isinstance(prefix, str):
        raise InvalidNameError(f"prefix must be a string, got {type(prefix).__name__}")
    if prefix.startswith("/"):
        raise InvalidNameError(f"prefix must not start with '/': {prefix!r}")
    stripped = prefix.rstrip("/")
    if stripped:
        _check_segments(stripped, what="prefix")
    return stripped


def validate_key(key: object) -> str:
    """Check a zarr key relative to a store prefix; raises InvalidNameError."""
    if not isinstance(key, str):
        raise InvalidNameError(f"key must be a string, got {type(key).__name__}")
    if key.startswith("/"):
        raise InvalidNameError(f"key must not start with '/': {key!r}")
    if key:
        _check_segments(key.rstrip("/") or key, what="key")
    return key


def _check_segments(path: str, *, what: str) -> None:
    _check_utf8(path, what)
    if "\x00" in path:
        raise InvalidNameError(f"{what} must not contain NUL: {path!r}")
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidNameError(
                f"{what} has an empty, '.' or '..' segment, which Swift URLs cannot carry "
                f"faithfully: {path!r}"
            )


def object_name(prefix: str, key: str) -> str:
    """Join a normalized prefix and a validated key into a Swift object name (length-checked)."""
    name = f"{prefix}/{key}" if prefix else key
    if len(name.encode("utf-8")) > MAX_OBJECT_NAME_BYTES:
        raise InvalidNameError(
            f"object name is longer than Swift's {MAX_OBJECT_NAME_BYTES} bytes: {name[:60]!r}..."
        )
    return name


def quote_path(*parts: str) -> str:
    """URL-quote ``container[/object]`` for a request path (slashes in object names kept)."""
    return "/".join(quote(p, safe="/") for p in parts)
