"""A container's read ACL (``X-Container-Read``): reading it, making it public and back.

Why its own module: Swift ACLs are per container, so "make this dataset public" is a change to
the container, and must keep every entry somebody else put there (``test:reader``, a referrer
``.r:.example.com``, a project id). Only the public entries (``.r:*``, and ``.rlistings`` when
no other referrer entry needs it) are added or removed. ``names_outside`` says what else a
container-wide change would expose, so that callers can refuse before changing anything.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from swiftzarr_batch.errors import ChangeNotAppliedError, ConfigurationError
from swiftzarr_batch.swift.names import quote_path

if TYPE_CHECKING:
    from swiftzarr_batch.swift.session import SwiftSession

__all__ = [
    "LISTINGS",
    "PUBLIC_READ",
    "format_acl",
    "names_outside",
    "parse_acl",
    "read_acl",
    "set_read_acl",
    "with_public",
    "without_public",
]

PUBLIC_READ = ".r:*"  # anyone may GET/HEAD objects
LISTINGS = ".rlistings"  # ... and list the container (with a referrer entry like .r:*)
READ_HEADER = "X-Container-Read"
#: Swift's way to delete a container header: ``X-Remove-`` + the name without its ``X-``. (The
#: earlier ``X-Remove-X-Container-Read`` was silently ignored: revoking left the data public.)
REMOVE_READ_HEADER = "X-Remove-Container-Read"


def parse_acl(value: str | None) -> list[str]:
    """The entries of an ACL header value, in order, without blanks or duplicates."""
    entries = (e.strip() for e in (value or "").split(","))
    return list(dict.fromkeys(e for e in entries if e))


def format_acl(entries: list[str]) -> str:
    """The header value of ACL ``entries`` (``parse_acl``'s inverse)."""
    return ",".join(entries)


def with_public(entries: list[str], *, listings: bool) -> list[str]:
    """``entries`` plus public read (and listings when asked); the others kept, in order."""
    wanted = [PUBLIC_READ, LISTINGS] if listings else [PUBLIC_READ]
    return entries + [e for e in wanted if e not in entries]


def without_public(entries: list[str]) -> list[str]:
    """``entries`` without public read; ``.rlistings`` goes too unless another referrer entry
    (``.r:.example.com``) still uses it."""
    kept = [e for e in entries if e != PUBLIC_READ]
    if not any(e.startswith(".r:") for e in kept):
        kept = [e for e in kept if e != LISTINGS]
    return kept


async def read_acl(session: SwiftSession, container: str) -> list[str]:
    """The container's read ACL entries; a missing container is an error, not "no ACL"."""
    resp = await session.request("HEAD", quote_path(container))
    if resp.status == 404:
        raise ConfigurationError(f"container {container!r} does not exist")
    return parse_acl(resp.headers.get(READ_HEADER))


async def set_read_acl(session: SwiftSession, container: str, entries: list[str]) -> list[str]:
    """Replace the read ACL (an empty list removes it) and return what the server then holds.

    A 2xx answer is not taken as proof: the ACL is read back (a fresh HEAD, which the proxy
    answers from the container server after clearing its cached container info) and a value
    other than ``entries`` raises ``ChangeNotAppliedError`` naming the container and both
    values, so "revoked" is never reported while the data stays public. Needs an account
    admin's token: Swift answers 403 to others, which stays a ``PermissionDeniedError``.
    """
    headers = {READ_HEADER: format_acl(entries)} if entries else {REMOVE_READ_HEADER: "1"}
    resp = await session.request("POST", quote_path(container), headers=headers)
    if resp.status == 404:
        raise ConfigurationError(f"container {container!r} does not exist")
    held = await read_acl(session, container)
    if held != entries:
        raise ChangeNotAppliedError(
            f"the read ACL of container {container!r}",
            wanted=format_acl(entries),
            held=format_acl(held),
        )
    return held


async def names_outside(
    session: SwiftSession, container: str, prefix: str, *, limit: int = 3
) -> list[str]:
    """Up to ``limit`` names (objects, or ``dir/`` subdirectories) of ``container`` that are
    not under ``prefix/``; [] when the prefix is alone in its container (or is "").

    Walks down the prefix one level at a time with delimiter listings on either side of the
    next component (``end_marker`` before it, ``marker`` after it, which Swift's listing skips
    as a whole subdirectory): a few small requests whatever the container holds.
    """
    found: list[str] = []
    parent = ""
    for part in [p for p in prefix.split("/") if p]:
        child = f"{parent}{part}/"
        for side in ({"end_marker": child}, {"marker": child}):
            params = {"format": "json", "limit": str(limit), "delimiter": "/", **side}
            if parent:
                params["prefix"] = parent
            resp = await session.request("GET", quote_path(container), params=params)
            if resp.status == 404:
                raise ConfigurationError(f"container {container!r} does not exist")
            if resp.status == 200 and resp.body:
                for entry in json.loads(resp.body):
                    found.append(str(entry.get("subdir") or entry.get("name")))
            if len(found) >= limit:
                return found[:limit]
        parent = child
    return found
