"""``swiftzarr copy``'s conversion options: ``--zarr-format``, ``--chunks``, ``--shards``, ...

Any of them turns the copy into a converting copy (``copy_store(..., convert=Target(...))``);
without them ``copy`` copies objects as they are. Kept apart from the parser so the mapping
onto ``transfer.convert_plan.Target`` is one place.
"""

from __future__ import annotations

import argparse
from typing import Any

import zarr
from zarr.abc.store import Store

from swiftzarr_batch.errors import ConfigurationError
from swiftzarr_batch.transfer.convert_plan import Target, parse_shape, parse_size

_OPTIONS = ("zarr_format", "chunks", "shards", "shard_size", "compressor", "max_memory")


def add_convert_options(p: argparse.ArgumentParser) -> None:
    """Add the conversion options of ``swiftzarr copy``; giving any of them turns the copy into a
    converting one (``target_from_args``)."""
    g = p.add_argument_group("convert while copying (any of these re-encodes every array)")
    g.add_argument("--zarr-format", type=int, choices=(2, 3), help="destination zarr format")
    g.add_argument(
        "--chunks", metavar="AxB", help="destination chunk shape (default: the source's)"
    )
    g.add_argument(
        "--shards", metavar="AxB|auto", help="zarr 3 shard shape, or auto (see --shard-size)"
    )
    g.add_argument(
        "--shard-size", metavar="SIZE", help="--shards auto: decoded bytes per shard (64MiB)"
    )
    g.add_argument(
        "--compressor", metavar="SPEC", help="zstd[:L], gzip[:L], blosc[:CNAME[:L]], none, keep"
    )
    g.add_argument(
        "--max-memory", metavar="SIZE", help="refuse to start if a task needs more (e.g. 2GiB)"
    )


def target_from_args(args: argparse.Namespace, source: Store) -> Target | None:
    """The conversion asked for, or None for a plain copy."""
    if all(getattr(args, name, None) is None for name in _OPTIONS):
        return None
    fmt = args.zarr_format
    if fmt is None:  # keep the source's format unless shards ask for 3
        fmt = 3 if args.shards else zarr.open(store=source, mode="r").metadata.zarr_format
    kwargs: dict[str, Any] = {"zarr_format": fmt}
    if args.chunks:
        kwargs["chunks"] = parse_shape(args.chunks)
    if args.shards:
        kwargs["shards"] = "auto" if args.shards == "auto" else parse_shape(args.shards)
    elif args.shard_size:
        raise ConfigurationError("--shard-size goes with --shards auto")
    if args.shard_size:
        kwargs["shard_size"] = parse_size(args.shard_size)
    if args.compressor:
        kwargs["compressors"] = args.compressor
    if args.max_memory:
        kwargs["max_memory"] = parse_size(args.max_memory)
    return Target(**kwargs)
