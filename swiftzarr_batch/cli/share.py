"""``swiftzarr share``: hand a dataset to someone without an account.

- ``swiftzarr share swift://C/P [--expires 7d] [--method GET] [--create-key]``: print a signed
  link (temp URL) to every object under the prefix;
- ``swiftzarr share --public swift://C/P [--no-listings] [--whole-container]``: make the
  container publicly readable and print its URL;
- ``swiftzarr share --revoke swift://C``: take public read away again.

The URL goes to stdout (one line, to paste); what was done goes to stderr.
"""

from __future__ import annotations

import argparse
import logging

from swiftzarr_batch.errors import ConfigurationError
from swiftzarr_batch.store.locations import open_store
from swiftzarr_batch.store.swift_store import SwiftStore
from swiftzarr_batch.transfer.share import share_public, temp_url, unshare_public

__all__ = ["add_share_arguments", "share"]

log = logging.getLogger("swiftzarr_batch.cli.share")


def add_share_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``swiftzarr share`` (signed link, ``--public`` or ``--revoke``), added to
    ``p`` by the main parser; returns ``p``."""
    p.add_argument("url", help="swift://CONTAINER[/PREFIX] of the dataset")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--public",
        action="store_true",
        help="make the container readable by anyone (Swift ACLs are per container)",
    )
    mode.add_argument("--revoke", action="store_true", help="remove public read again")
    p.add_argument(
        "--expires",
        default="7d",
        metavar="DURATION",
        help="how long a signed link is valid: 7d, 12h, 30m, 90s (default 7d)",
    )
    p.add_argument("--method", default="GET", help="what the signed link allows (default GET)")
    p.add_argument(
        "--create-key",
        action="store_true",
        help="set a new container Temp-URL-Key if neither account nor container has one",
    )
    p.add_argument(
        "--no-listings",
        action="store_true",
        help="with --public: objects readable, container not listable (consolidated datasets)",
    )
    p.add_argument(
        "--whole-container",
        action="store_true",
        help="with --public: accept that the container holds other prefixes too",
    )
    return p


def share(args: argparse.Namespace) -> int:
    """``swiftzarr share``: print a signed link, or make the container publicly readable
    (``--public``), or take public read away (``--revoke``, checked against what the server holds
    afterwards). Only ``swift://`` locations can be shared."""
    store = open_store(args.url, read_only=True, insecure=args.insecure)
    if not isinstance(store, SwiftStore):
        raise ConfigurationError(f"only swift:// datasets can be shared, not {args.url!r}")
    if args.revoke:
        left = unshare_public(store)  # read back from the server; raises if it did not change
        log.info(
            "%s: public read removed; read ACL at the server now %r",
            store.container,
            ",".join(left),
        )
        return 0
    if args.public:
        url = share_public(
            store, listings=not args.no_listings, whole_container=args.whole_container
        )
        log.info("anyone can now read container %s", store.container)
    else:
        url = temp_url(store, expires=args.expires, method=args.method, create_key=args.create_key)
    print(url)
    return 0
