"""The ``swiftzarr`` sub-commands (argument parsing lives in ``cli``).

Each takes the parsed arguments and returns the exit status; errors are raised and turned into
one line by ``cli.main``. Results go to stdout, progress and warnings to stderr (logging).
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import sys
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import zarr
from zarr.abc.store import Store
from zarr.core.sync import sync
from zarr.errors import NodeNotFoundError

from swiftzarr_batch.auth import V1Password
from swiftzarr_batch.cli.cluster_options import cluster_from_args, cluster_given
from swiftzarr_batch.cli.convert_options import target_from_args
from swiftzarr_batch.errors import ConfigurationError
from swiftzarr_batch.jobs.runner import Progress, dask_context, format_bytes
from swiftzarr_batch.store.locations import (
    open_session,
    open_store,
    parse_swift_url,
    swift_credentials,
)
from swiftzarr_batch.store.objects import swift_objects, with_write_options
from swiftzarr_batch.swift.account import list_containers
from swiftzarr_batch.swift.session import SwiftSession
from swiftzarr_batch.swift.tempurl import parse_duration
from swiftzarr_batch.transfer.copy import CopyError, copy_store
from swiftzarr_batch.transfer.objects import (
    ObjectInfo,
    delete_markers,
    delete_stream,
    describe,
    list_objects,
)
from swiftzarr_batch.transfer.verify import verify_store

log = logging.getLogger("swiftzarr_batch.cli.main")


def _size(n: int, exact: bool = False) -> str:
    return str(n) if exact else format_bytes(n)


def _write_json(target: str | None, data: dict[str, Any]) -> None:
    if not target:
        return
    text = json.dumps(data, indent=2, default=str)
    if target == "-":
        print(text)
    else:
        with open(target, "w", encoding="utf-8") as f:
            f.write(text + "\n")


# -- token ------------------------------------------------------------------------------------
def token(args: argparse.Namespace) -> int:
    """``swiftzarr token``: authenticate once and print shell ``export`` lines (storage URL, token,
    expiry), so that many jobs can share one token instead of each authenticating. Needs renewable
    credentials (a token alone cannot make another); ``--lifetime`` is v1 auth's
    ``X-Auth-Lifetime``, and a shorter grant by the server is warned about."""
    resolved = swift_credentials(args.env_prefix, insecure=args.insecure)
    provider = resolved.provider
    if provider is None:
        raise ConfigurationError(
            f"a token needs credentials to authenticate with (ST_AUTH/ST_USER/ST_KEY or Keystone "
            f"OS_*); the environment only has a token ({resolved.source})"
        )
    if args.lifetime is not None:
        if args.lifetime < 1:
            raise ConfigurationError("--lifetime must be at least 1 second")
        if not isinstance(provider, V1Password):
            raise ConfigurationError(
                f"--lifetime needs v1 auth; {resolved.source} sets the token's lifetime itself"
            )
        provider.token_life = args.lifetime
    tok = provider.authenticate()
    print(f"export OS_STORAGE_URL={shlex.quote(tok.storage_url)}")
    print(f"export OS_AUTH_TOKEN={shlex.quote(tok.token)}")
    if tok.expires_at is None:
        print("# the server did not say when this token expires")
    else:
        left = tok.seconds_left() or 0
        if args.lifetime and left < args.lifetime - 60:
            log.warning(
                "asked for a token valid %d s; the server granted %d s", args.lifetime, left
            )
        when = datetime.fromtimestamp(tok.expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        print(
            f"export OS_AUTH_TOKEN_EXPIRES={shlex.quote(when)}  "
            f"# in {int(tok.seconds_left() or 0)} s"
        )
    print("# SwiftStore prefers ST_AUTH/ST_USER/ST_KEY when set: unset them to use this token")
    return 0


# -- ls / du / tree ---------------------------------------------------------------------------
def open_existing(url: str, *, insecure: bool = False, env_prefix: str = "") -> Store:
    """A read-only store at ``url`` whose container exists. Listing a missing container gives
    nothing, as an empty one does, so a typo would print an empty ``ls`` and exit 0; this asks
    the server (a HEAD) and raises ``FileNotFoundError`` naming the container instead."""
    store = open_store(url, read_only=True, env_prefix=env_prefix, insecure=insecure)
    swift = swift_objects(store)
    if swift is not None and not sync(swift.container_exists()):
        raise FileNotFoundError(f"container {swift.store.container!r} not found ({url})")
    return store


def ls(args: argparse.Namespace) -> int:
    """``swiftzarr ls``: the account's containers (``swift://`` without a container), else the first
    level under the location, one delimiter listing on Swift. A missing container is an error, not
    an empty listing (``open_existing``)."""
    if urlsplit(args.url).scheme == "swift" and not parse_swift_url(args.url).container:
        for entry in sync(_containers(open_session(args.url, insecure=args.insecure))):
            counts = f"{_size(entry['bytes']):>10}  {entry['count']:>9}  " if args.long else ""
            print(f"{counts}{entry['name']}/")
        return 0
    store = open_existing(args.url, insecure=args.insecure)
    for name, size in sync(_first_level(store)):
        shown = "" if not args.long else f"{'-' if size is None else _size(size):>10}  "
        print(f"{shown}{name}")
    return 0


async def _containers(session: SwiftSession) -> list[dict[str, Any]]:
    return [entry async for entry in list_containers(session)]


async def _first_level(store: Store) -> list[tuple[str, int | None]]:
    swift = swift_objects(store)
    if swift is not None:  # one delimiter listing, sizes included
        return [entry async for entry in swift.first_level()]
    out: list[tuple[str, int | None]] = []
    for name in sorted({n async for n in store.list_dir("")}):
        if await anext(aiter(store.list_prefix(f"{name}/")), None) is not None:
            out.append((f"{name}/", None))  # something lives under it: a directory
        else:
            out.append((name, await store.getsize(name)))
    return out


def du(args: argparse.Namespace) -> int:
    """``swiftzarr du``: objects and bytes under a location, per first-level entry and in total,
    from one streamed listing (memory grows with the first-level entries, not with the objects)."""
    store = open_existing(args.url, insecure=args.insecure)
    totals: dict[str, list[int]] = {}
    progress = Progress("du", 0, unit="keys listed", interval=5.0)

    async def walk(infos: AsyncIterator[ObjectInfo]) -> None:
        async for info in infos:
            size = info.size if info.size is not None else await store.getsize(info.key)
            top = info.key.split("/", 1)
            entry = totals.setdefault(top[0] + ("/" if len(top) > 1 else ""), [0, 0])
            entry[0] += 1
            entry[1] += size
            progress.advance(1, size)

    sync(walk(list_objects(store)))
    progress.finish()
    count = sum(v[0] for v in totals.values())
    size = sum(v[1] for v in totals.values())
    if not args.summarize:
        for name, (n, b) in sorted(totals.items()):
            print(f"{_size(b, args.bytes):>12}  {n:>9}  {name}")
    print(f"{_size(size, args.bytes):>12}  {count:>9}  total ({describe(store)})")
    return 0


def tree(args: argparse.Namespace) -> int:
    """The hierarchy, printed as it is walked: one group's members at a time (sorted per group),
    never every node at once."""
    store = open_existing(args.url, insecure=args.insecure)
    try:
        node = zarr.open(store=store, mode="r")
    except NodeNotFoundError:
        raise FileNotFoundError(f"no zarr group or array at {describe(store)}") from None
    if isinstance(node, zarr.Array):
        print(f"/ {_array_line(node)}")
        return 0
    print(f"/ (group, zarr v{node.metadata.zarr_format})")
    _print_members(node, 1)
    return 0


def _print_members(group: zarr.Group, depth: int) -> None:
    members = sorted(group.members(max_depth=0, use_consolidated_for_children=False))
    for name, member in members:
        if isinstance(member, zarr.Array):
            print(f"{'  ' * depth}{name} {_array_line(member)}")
        else:
            print(f"{'  ' * depth}{name} (group)")
            _print_members(member, depth + 1)


def _array_line(a: zarr.Array[Any]) -> str:
    shards = f" shards={a.shards}" if getattr(a, "shards", None) else ""
    return f"{a.shape} {a.dtype} chunks={a.chunks}{shards}"


# -- copy / verify / consolidate / rm ---------------------------------------------------------
def copy(args: argparse.Namespace) -> int:
    """``swiftzarr copy``: ``copy_store`` from the options, converting when a conversion option is
    given. With ``--json`` the summary is written even when the copy fails (``CopyError``), with
    ``ok: false`` and the error, so a scheduler can tell what was done before the command fails."""
    source = open_existing(args.src, env_prefix=args.src_env, insecure=args.insecure)
    dest = open_store(
        args.dst, read_only=args.dry_run, env_prefix=args.dst_env, insecure=args.insecure
    )
    dest = with_write_options(dest, args.storage_policy, args.delete_after)
    server_side = {"auto": None, "always": True, "never": False}[args.server_side]
    target = target_from_args(args, source)
    with dask_context(cluster=cluster_from_args(args), stores=(source, dest)):
        try:
            summary = copy_store(
                source,
                dest,
                if_exists=args.if_exists,
                delete_extra=args.delete_extra,
                verify=not args.no_verify,
                dry_run=args.dry_run,
                server_side=server_side,
                batch_size=args.batch_size,
                concurrency=args.concurrency,
                convert=target,
            )
        except CopyError as exc:
            _write_json(args.json, {**exc.summary.as_dict(), "ok": False, "error": str(exc)})
            raise
    _write_json(args.json, {**summary.as_dict(), "ok": True})
    if args.json != "-":
        for line in getattr(summary, "plan", []) if args.dry_run else []:
            print(line)  # a converting copy's plan: per array, tasks and memory per task
        print(summary.line())
    return 0


def verify(args: argparse.Namespace) -> int:
    """``swiftzarr verify``: ``verify_store`` on the location; exits 1 when problems were found, so
    a script or cron job fails on a broken dataset without parsing the report."""
    store = open_existing(args.url, insecure=args.insecure)
    with dask_context(cluster=cluster_from_args(args), stores=(store,)):
        report = verify_store(
            store,
            check_content=not args.no_content,
            allow_missing=args.allow_missing,
            batch_size=args.batch_size,
            concurrency=args.concurrency,
        )
    _write_json(args.json, report.as_dict())
    if args.json != "-":
        print(report.format())
    return 0 if report.ok else 1


def consolidate(args: argparse.Namespace) -> int:
    """``swiftzarr consolidate``: write consolidated metadata for the hierarchy (readers then open
    it with one GET); prints how many nodes it lists. Rerun it after changing the hierarchy."""
    store = open_store(args.url, insecure=args.insecure)
    started = time.monotonic()
    group = zarr.consolidate_metadata(store)
    nodes = len(group.members(max_depth=None))  # from the consolidated metadata just written
    print(
        f"consolidated the metadata of {nodes} nodes at {describe(store)} "
        f"({time.monotonic() - started:.1f} s)"
    )
    return 0


def clean_segments(args: argparse.Namespace) -> int:
    """Find and delete the segments of large-object uploads that never got their manifest (a
    writer killed mid-upload): nothing else can reclaim that space."""
    store = open_existing(args.url, insecure=args.insecure)
    swift = swift_objects(store)
    if swift is None:
        raise ConfigurationError(f"only swift:// locations have large-object segments: {args.url}")
    report = sync(
        swift.delete_orphan_segments(
            older_than=parse_duration(args.older_than), dry_run=args.dry_run
        )
    )
    verb = "would delete" if args.dry_run else "deleted"
    print(
        f"{verb} {report.segments} orphaned segments ({format_bytes(report.bytes)}) of "
        f"{report.uploads} uploads under {describe(store)}"
    )
    for upload in report.examples:
        print(f"  {upload}")
    return 0


def rm(args: argparse.Namespace) -> int:
    """Delete everything under a location. The listing streams into bulk deletes (no list of
    every name); without ``--yes`` a first counting pass (names not kept) feeds the prompt."""
    store = open_store(args.url, insecure=args.insecure)
    where = describe(store)
    count = 0
    if not args.yes:
        count, total = sync(_count(store))
        if not count:
            sync(delete_markers(store))  # empty "folders" only: no keys to ask about
            print(f"nothing to delete under {where}")
            return 0
        print(
            f"delete {count} objects ({format_bytes(total)}) under {where}? [y/N] ",
            end="",
            file=sys.stderr,
            flush=True,
        )
        answer = sys.stdin.readline().strip().lower()
        if not sys.stdin.isatty():
            print(file=sys.stderr)  # the answer was not echoed: end the prompt's line
        if answer not in ("y", "yes"):
            print("aborted: nothing was deleted", file=sys.stderr)
            return 1
    # The prompt's counting pass gives the total (a bar with an ETA); with --yes there is no
    # such pass, so the bar counts up (keys, bytes, rate) as the listing streams.
    counted = 0 if args.yes else count
    progress = Progress("rm", counted, interval=5.0)
    sizes = [0]

    async def listed() -> AsyncIterator[ObjectInfo]:
        async for info in _sized(store):
            sizes[0] += info.size or 0
            if not counted:  # the total grows with the listing
                progress.total += 1
            progress.advance(1, info.size or 0)
            yield info

    deleted = sync(delete_stream(store, listed()))
    sync(delete_markers(store))  # the empty "folders" the listing left out
    progress.finish()
    if not deleted:
        print(f"nothing to delete under {where}")
        return 0
    print(f"deleted {deleted} objects ({format_bytes(sizes[0])}) under {where}")
    return 0


async def _sized(store: Store) -> AsyncIterator[ObjectInfo]:
    async for info in list_objects(store):
        if info.size is None:
            info = ObjectInfo(info.key, await store.getsize(info.key), large=info.large)
        yield info


async def _count(store: Store) -> tuple[int, int]:
    count = total = 0
    async for info in _sized(store):
        count, total = count + 1, total + (info.size or 0)
    return count, total


# -- workflows ----------------------------------------------------------------------------------
def workflow(args: argparse.Namespace) -> int:
    """``swiftzarr ingest`` and ``swiftzarr mirror``: run the workflow from its TOML config; cluster
    options given on the command line replace the config's ``[dask]`` section. Returns the
    workflow's exit code (75 when another run holds the dataset's lock)."""
    if args.command == "ingest":
        from swiftzarr_batch.workflows.ingest import run_from_config
    else:
        from swiftzarr_batch.workflows.mirror import run_from_config
    return run_from_config(
        args.config,
        summary_path=args.summary,
        debug=args.debug,
        insecure=args.insecure,
        dask=cluster_given(args),
    )
