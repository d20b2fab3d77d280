"""``swiftzarr log|tag|rollback|diff|gc|export``: a versioned repository (``versioned``) from
the command line. Snapshots may be named by id, tag or branch wherever one is asked for."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from swiftzarr_batch.errors import ConfigurationError
from swiftzarr_batch.store.locations import open_store
from swiftzarr_batch.store.swift_store import SwiftStore
from swiftzarr_batch.versioned import Repository

Add = Callable[[str, str, Callable[[argparse.Namespace], int]], argparse.ArgumentParser]


def _repo(args: argparse.Namespace) -> Repository:
    store = open_store(args.url, insecure=args.insecure)
    if not isinstance(store, SwiftStore):
        raise ConfigurationError(f"{args.url}: versioned repositories live on swift:// locations")
    return Repository.from_store(store)


def log_command(args: argparse.Namespace) -> int:
    """``swiftzarr log``: the branch's snapshots, newest first, as text or ``--json`` rows. Reads
    the head and then one snapshot record per line shown (``--limit`` bounds the walk)."""
    entries = _repo(args).log(args.branch, limit=args.limit)
    if args.json:
        rows = [
            {
                "id": e.id,
                "parent": e.parent,
                "message": e.message,
                "time": e.written_at.isoformat(),
                "keys": e.key_count,
            }
            for e in entries
        ]
        print(json.dumps(rows, indent=2))
        return 0
    for e in entries:
        print(f"{e.id}  {e.written_at:%Y-%m-%d %H:%M:%S}Z  {e.key_count:>8} keys  {e.message}")
    return 0


def tag_command(args: argparse.Namespace) -> int:
    """``swiftzarr tag``: name a snapshot (id, tag or branch) for good. Fails with
    ``VersionedError`` if the tag exists, since tags never move."""
    repo = _repo(args)
    snapshot = repo.resolve(args.snapshot)
    repo.tag(args.name, snapshot)
    print(f"tagged {snapshot} as {args.name}")
    return 0


def rollback_command(args: argparse.Namespace) -> int:
    """``swiftzarr rollback``: point a branch back at a snapshot with one head PUT under the
    branch's lease (``LeaseHeldError`` while a writer holds it); prints the snapshot it pointed to
    before."""
    repo = _repo(args)
    snapshot = repo.resolve(args.snapshot)
    before = repo.rollback(args.branch, snapshot)
    print(f"branch {args.branch}: {before} -> {snapshot}")
    return 0


def diff_command(args: argparse.Namespace) -> int:
    """``swiftzarr diff``: keys added (+), removed (-) and modified (M) from ``a`` to ``b``.
    Modified means written again by a later session, even with the same bytes."""
    diff = _repo(args).diff(args.a, args.b)
    if args.json:
        print(
            json.dumps(
                {"added": diff.added, "removed": diff.removed, "modified": diff.modified}, indent=2
            )
        )
        return 0
    for sign, keys in (("+", diff.added), ("-", diff.removed), ("M", diff.modified)):
        for key in keys:
            print(f"{sign} {key}")
    return 0


def gc_command(args: argparse.Namespace) -> int:
    """``swiftzarr gc``: delete what no branch or tag reaches and is older than ``--older-than``;
    ``--dry-run`` only lists it. The grace period must outlast every writable session."""
    report = _repo(args).gc(args.older_than, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    counts = ", ".join(f"{n} {kind}" for kind, n in sorted(report.counts().items())) or "nothing"
    print(
        f"{verb} {counts}; kept {report.kept_snapshots} snapshots ({report.kept_objects} objects)"
    )
    if args.verbose:
        for key in report.deleted:
            print(key)
    return 0


def export_command(args: argparse.Namespace) -> int:
    """``swiftzarr export``: copy one snapshot to ``dest`` as a plain zarr hierarchy (server-side
    copies when the same token can write ``dest``, else through this machine)."""
    repo = _repo(args)
    dest = open_store(args.dest, insecure=args.insecure)
    report = repo.export(args.snapshot, dest)
    how = "server-side" if report.server_side else "through this machine"
    print(f"exported {report.keys} keys ({report.bytes} bytes) to {args.dest} ({how})")
    return 0


def add_versioned_commands(add: Add) -> None:
    """Register ``log``, ``tag``, ``rollback``, ``diff``, ``gc`` and ``export`` with the CLI's
    parser through ``add`` (the CLI's own subcommand adder)."""
    p = add("log", "list a versioned repository's snapshots, newest first", log_command)
    p.add_argument("url", help="swift://CONTAINER/PREFIX of the repository")
    p.add_argument("--branch", default="main")
    p.add_argument("-n", "--limit", type=int, default=None, metavar="N")
    p.add_argument("--json", action="store_true", help="JSON on stdout")

    p = add("tag", "name a snapshot of a versioned repository (tags never move)", tag_command)
    p.add_argument("url")
    p.add_argument("name")
    p.add_argument("snapshot", help="snapshot id, tag or branch")

    p = add("rollback", "point a branch back at an older snapshot (one head PUT)", rollback_command)
    p.add_argument("url")
    p.add_argument("branch")
    p.add_argument("snapshot", help="snapshot id or tag")

    p = add("diff", "keys added (+), removed (-) and modified (M) between snapshots", diff_command)
    p.add_argument("url")
    p.add_argument("a", help="snapshot id, tag or branch")
    p.add_argument("b")
    p.add_argument("--json", action="store_true")

    p = add("gc", "delete objects no branch or tag reaches, older than a grace period", gc_command)
    p.add_argument("url")
    p.add_argument(
        "--older-than",
        type=float,
        default=7 * 86400,
        metavar="SECONDS",
        help="grace period; longer than any writable session (default: 7 days)",
    )
    p.add_argument("--dry-run", action="store_true", help="only say what would be deleted")
    p.add_argument("-v", "--verbose", action="store_true", help="print every deleted key")

    p = add("export", "copy one snapshot as a plain zarr hierarchy", export_command)
    p.add_argument("url")
    p.add_argument("snapshot", help="snapshot id, tag or branch")
    p.add_argument("dest", help="swift://CONTAINER/PREFIX, a path or an fsspec URL")
