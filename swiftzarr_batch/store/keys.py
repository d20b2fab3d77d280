"""What a key of a zarr hierarchy is (metadata, chunk, our own bookkeeping) and in which order
metadata must be written so that readers never see a node before its data.

zarr finds data through metadata: a reader that sees ``zarr.json``/``.zarray`` (or consolidated
metadata that lists a node) will read chunks, and an absent chunk silently reads as
``fill_value``. Copies therefore write every chunk first and metadata last, deepest nodes before
their parents and consolidated metadata at the very end.
"""

from __future__ import annotations

from collections.abc import Iterable

ZARR_JSON = "zarr.json"
ZARRAY = ".zarray"
ZGROUP = ".zgroup"
ZATTRS = ".zattrs"
ZMETADATA = ".zmetadata"
METADATA_NAMES = frozenset({ZARR_JSON, ZARRAY, ZGROUP, ZATTRS, ZMETADATA})

BOOKKEEPING_DIR = ".swiftzarr"
"""Objects of swiftzarr's own (ingest records, locks) live under ``<dataset>/.swiftzarr/``: not
zarr nodes, so ``verify_store`` does not call them orphans."""
LOCKS_DIR = f"{BOOKKEEPING_DIR}/locks"


def basename(key: str) -> str:
    """The last segment of ``key`` (the whole key when it has no ``/``)."""
    return key.rsplit("/", 1)[-1]


def dirname(key: str) -> str:
    """Everything before the last ``/`` of ``key`` ("" at the root)."""
    return key.rsplit("/", 1)[0] if "/" in key else ""


def join(*parts: str) -> str:
    """Join key segments, ignoring empty ones (``join("", "a/", "b") == "a/b"``)."""
    return "/".join(p.strip("/") for p in parts if p and p.strip("/"))


def is_metadata_key(key: str) -> bool:
    """Whether ``key`` is a zarr metadata document (v2 or v3, consolidated too): written after the
    data, and read to find the hierarchy."""
    return basename(key) in METADATA_NAMES


def is_node_document(key: str) -> bool:
    """Does ``key`` say a node (array or group) is here, rather than annotate one?"""
    return basename(key) in (ZARR_JSON, ZARRAY, ZGROUP)


def is_bookkeeping_key(key: str) -> bool:
    """Whether ``key`` is our own bookkeeping (under a ``.swiftzarr/`` directory at any depth): not
    a zarr node or chunk, so verify does not call it an orphan and a roll-back or a conversion
    leaves it alone."""
    return BOOKKEEPING_DIR in key.split("/")[:-1]


def is_lock_key(key: str) -> bool:
    """Whether ``key`` is a workflow's lock (under ``.swiftzarr/locks/``): a copy must never carry
    another run's lock to the destination."""
    return f"/{LOCKS_DIR}/" in f"/{key}"


def metadata_tiers(keys: Iterable[str]) -> list[list[str]]:
    """Metadata keys grouped in write order: deepest nodes first, consolidated metadata last.

    Keys in one tier do not depend on each other and may be written concurrently; a tier is
    written only after the previous one. Within a v2 node, ``.zarray``/``.zattrs`` come in the
    same tier as ``.zgroup`` (they describe the same node).
    """
    tiers: dict[tuple[int, int], list[str]] = {}
    for key in keys:
        consolidated = basename(key) == ZMETADATA
        depth = key.count("/")
        tiers.setdefault((int(consolidated), -depth), []).append(key)
    return [sorted(tiers[t]) for t in sorted(tiers)]
