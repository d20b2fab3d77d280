"""A zarr hierarchy as its metadata documents describe it: which arrays exist, which chunk keys
their shape and chunk grid call for, and whether consolidated metadata agrees.

``verify_store`` checks stored keys against this; it is built from the raw documents (not by
opening nodes through zarr) so that one broken document is reported, not fatal, and so that no
chunk is read to find out what should exist.
"""

from __future__ import annotations

import itertools
import json
import math
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from swiftzarr_batch.store.keys import (
    ZARR_JSON,
    ZARRAY,
    ZATTRS,
    ZGROUP,
    ZMETADATA,
    basename,
    dirname,
    join,
)


@dataclass(frozen=True)
class ArraySpec:
    """An array's storage layout: ``grid`` is the shape of one stored object (a shard when
    sharded), so ``chunk_keys()`` are the keys that hold its data."""

    path: str
    zarr_format: int
    shape: tuple[int, ...]
    grid: tuple[int, ...]
    fill_value: str
    encode: Callable[[tuple[int, ...]], str] = field(repr=False, compare=False)

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """Stored objects along each dimension (a partly filled one at the edge counts)."""
        pairs = zip(self.shape, self.grid, strict=True)
        return tuple(math.ceil(s / c) if c else 0 for s, c in pairs)

    @property
    def nchunks(self) -> int:
        """How many objects the array's data takes when every chunk (or shard) is written."""
        return math.prod(self.grid_shape)

    def chunk_keys(self) -> Iterator[str]:
        """The store key of every chunk (or shard) of the grid, in C order, generated one at a time
        (a large grid is never held as a list)."""
        for coords in itertools.product(*(range(n) for n in self.grid_shape)):
            yield join(self.path, self.encode(coords))


@dataclass
class Hierarchy:
    arrays: dict[str, ArraySpec] = field(default_factory=dict)
    groups: set[str] = field(default_factory=set)
    errors: list[tuple[str, str]] = field(default_factory=list)
    """(metadata key, what is wrong with it)."""


def parse_hierarchy(docs: Mapping[str, bytes]) -> Hierarchy:
    """Nodes from metadata documents keyed by store key (e.g. ``"a/zarr.json"``, ``".zgroup"``)."""
    found = Hierarchy()
    for key in sorted(docs):
        name, node = basename(key), dirname(key)
        if name in (ZATTRS, ZMETADATA):
            _check_json(key, docs[key], found)
            continue
        try:
            doc = json.loads(docs[key])
            if name == ZARR_JSON and doc.get("node_type") == "array":
                found.arrays[node] = _array_v3(node, doc)
            elif name == ZARR_JSON and doc.get("node_type") == "group":
                found.groups.add(node)
            elif name == ZARRAY:
                found.arrays[node] = _array_v2(node, doc)
            elif name == ZGROUP:
                found.groups.add(node)
            else:
                found.errors.append((key, f"unknown node_type {doc.get('node_type')!r}"))
        except Exception as exc:
            found.errors.append((key, f"{type(exc).__name__}: {exc}"))
    return found


def _check_json(key: str, raw: bytes, found: Hierarchy) -> None:
    try:
        json.loads(raw)
    except ValueError as exc:
        found.errors.append((key, f"not valid JSON: {exc}"))


def _array_v3(path: str, doc: dict[str, Any]) -> ArraySpec:
    from zarr.core.metadata import ArrayV3Metadata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = ArrayV3Metadata.from_dict(doc)
    grid = getattr(meta.chunk_grid, "chunk_shape", None)
    if grid is None:
        raise ValueError(
            f"chunk grid {type(meta.chunk_grid).__name__} is not a regular grid; "
            "its chunk keys cannot be checked"
        )
    return ArraySpec(
        path, 3, tuple(meta.shape), tuple(grid), _fill(meta.fill_value), meta.encode_chunk_key
    )


def _array_v2(path: str, doc: dict[str, Any]) -> ArraySpec:
    from zarr.core.metadata import ArrayV2Metadata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        meta = ArrayV2Metadata.from_dict(doc)
    return ArraySpec(
        path,
        2,
        tuple(meta.shape),
        tuple(meta.chunks),
        _fill(meta.fill_value),
        meta.encode_chunk_key,
    )


def _fill(value: Any) -> str:
    """``0.0`` rather than ``np.float64(0.0)``."""
    return repr(value.item() if hasattr(value, "item") else value)


def stale_consolidated(root: str, docs: Mapping[str, bytes], found: Hierarchy) -> list[str]:
    """Disagreements between the consolidated metadata at ``root`` and the nodes themselves.

    Readers that open with ``consolidated=True`` see only what the consolidated document says;
    a node it lacks is invisible to them, and an array whose shape it misstates reads wrongly.
    Returns [] when there is no consolidated metadata.
    """
    listed = _consolidated_nodes(root, docs)
    if listed is None:
        return []
    actual: dict[str, tuple[int, ...] | None] = {p: a.shape for p, a in found.arrays.items()}
    actual.update({g: None for g in found.groups})
    problems = []
    for node, shape in sorted(actual.items()):
        if node == root or not _under(node, root):
            continue
        if node not in listed:
            problems.append(f"{node or '/'}: missing from the consolidated metadata")
        elif listed[node] != shape:
            problems.append(
                f"{node}: consolidated metadata says shape {listed[node]}, the array has {shape}"
            )
    for node in sorted(set(listed) - set(actual)):
        problems.append(f"{node}: in the consolidated metadata but not in the store")
    return problems


def _under(node: str, root: str) -> bool:
    return not root or node == root or node.startswith(root + "/")


def _consolidated_nodes(root: str, docs: Mapping[str, bytes]) -> dict[str, Any] | None:
    """Node path -> shape (None for groups) as consolidated metadata lists it, or None."""
    try:
        v3 = docs.get(join(root, ZARR_JSON))
        if v3 is not None:
            cm = json.loads(v3).get("consolidated_metadata")
            if not cm:
                return None
            return {join(root, rel): _shape(doc) for rel, doc in cm.get("metadata", {}).items()}
        v2 = docs.get(join(root, ZMETADATA))
        if v2 is None:
            return None
        nodes: dict[str, Any] = {}
        for key, doc in json.loads(v2).get("metadata", {}).items():
            name, node = basename(key), join(root, dirname(key))
            if name in (ZARRAY, ZGROUP):
                nodes[node] = _shape(doc)
        return nodes
    except (ValueError, AttributeError, TypeError):
        return None  # the broken document itself is reported by parse_hierarchy


def _shape(doc: Any) -> tuple[int, ...] | None:
    shape = doc.get("shape") if isinstance(doc, dict) else None
    return tuple(shape) if shape is not None else None
