"""Sharing a dataset with people who have no account: public read on and off, signed links.

Why here and not in the store: sharing changes the *container* (its read ACL, its Temp-URL
key), which is account administration seen from a dataset, and it must look at the dataset
first (is it consolidated? is it alone in its container?) before changing anything. The Swift
mechanics are ``swift.acl`` and ``swift.tempurl``; the reader's side is
``SwiftStore.from_url``.

- ``share_public(store)``: the container's read ACL gets ``.r:*`` (and ``.rlistings``, unless
  ``listings=False``, which needs a consolidated dataset). Swift ACLs are per container, so a
  container holding other prefixes is refused unless ``whole_container=True``.
- ``unshare_public(store)``: removes them again; every other ACL entry is kept, both ways.
  Every change is read back from the server (``swift.acl.set_read_acl``): what is reported is
  what the server holds, and a change it did not make raises ``ChangeNotAppliedError``.
- ``temp_url(store, expires="7d")``: one URL for every object under the store's prefix,
  signed with the account's or container's Temp-URL key (created only with ``create_key``).
"""

from __future__ import annotations

import json
import logging
import math
import time
from datetime import timedelta

from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from swiftzarr_batch.errors import ConfigurationError
from swiftzarr_batch.store.keys import ZARR_JSON, ZMETADATA
from swiftzarr_batch.store.swift_store import SwiftStore
from swiftzarr_batch.swift import acl, capabilities, tempurl

__all__ = ["is_consolidated", "share_public", "temp_url", "unshare_public"]

log = logging.getLogger(__name__)

NOT_CONSOLIDATED = (
    "{what} cannot list, and {store} has no consolidated metadata: run `swiftzarr consolidate "
    "{store}` first"
)


def _check_owner(store: SwiftStore, what: str) -> None:
    if store.signed_link or not store.session.token.token:
        raise ConfigurationError(
            f"{what} needs the account's credentials; {store} was opened from a link or anonymously"
        )


async def is_consolidated(store: SwiftStore) -> bool:
    """Whether the hierarchy at the store's root has consolidated metadata (format 2
    ``.zmetadata``, or format 3 ``zarr.json`` with ``consolidated_metadata``): what a reader
    that cannot list needs."""
    proto = default_buffer_prototype()
    if await store.exists(ZMETADATA):
        return True
    doc = await store.get(ZARR_JSON, proto)
    if doc is None:
        return False
    try:
        return json.loads(doc.to_bytes()).get("consolidated_metadata") is not None
    except (ValueError, AttributeError):
        return False


async def _share_public(store: SwiftStore, listings: bool, whole_container: bool) -> str:
    _check_owner(store, "making a dataset public")
    session = await store.asession()
    entries = await acl.read_acl(session, store.container)
    if not whole_container and store.prefix:
        others = await acl.names_outside(session, store.container, store.prefix)
        if others:
            shown = ", ".join(repr(n) for n in others)
            raise ConfigurationError(
                f"Swift ACLs are per container: making {store} public would also make the "
                f"rest of container {store.container!r} public ({shown} ...). Give the "
                "dataset its own container, or pass whole_container=True (--whole-container)"
            )
    if not listings and not await is_consolidated(store):
        raise ConfigurationError(
            NOT_CONSOLIDATED.format(what="a public link without listings", store=store)
        )
    new = acl.with_public(entries, listings=listings)
    held = await acl.set_read_acl(session, store.container, new) if new != entries else entries
    log.info(
        "container %s is public for reading (read ACL at the server: %r)",
        store.container,
        acl.format_acl(held),
    )
    return tempurl.SignedLink(session.storage_url, store.container, store.prefix).url


def share_public(store: SwiftStore, *, listings: bool = True, whole_container: bool = False) -> str:
    """Make the store's container readable by anyone; returns the URL to hand out (open it with
    ``SwiftStore.from_url``). Other entries of the read ACL are kept.

    ``listings=False`` adds only ``.r:*`` (objects readable, container not listable): enough for
    a consolidated dataset. A container with objects outside the store's prefix is refused,
    with nothing changed, unless ``whole_container`` (ACLs cannot be narrower than a container).
    Needs an account admin's credentials (Swift answers 403 to others).
    """
    return sync(_share_public(store, listings, whole_container))


async def _unshare_public(store: SwiftStore) -> list[str]:
    _check_owner(store, "revoking public access")
    session = await store.asession()
    entries = await acl.read_acl(session, store.container)
    new = acl.without_public(entries)
    held = await acl.set_read_acl(session, store.container, new) if new != entries else entries
    log.debug("container %s read ACL at the server: %r", store.container, acl.format_acl(held))
    return held


def unshare_public(store: SwiftStore) -> list[str]:
    """Remove public read (``.r:*``, and ``.rlistings`` unless another referrer entry uses it)
    from the store's container; returns the read ACL entries the server holds afterwards (read
    back from it). Raises ``ChangeNotAppliedError`` if the server still holds public read after
    answering success."""
    return sync(_unshare_public(store))


async def _temp_url(
    store: SwiftStore,
    expires: str | float | timedelta,
    method: str,
    create_key: bool,
    digest: str | None,
) -> str:
    _check_owner(store, "signing a link")
    seconds = tempurl.parse_duration(expires)
    session = await store.asession()
    chosen = tempurl.choose_digest(await capabilities.cluster_info(session), digest)
    key = await tempurl.temp_url_key(session, store.container, create=create_key)
    expires_at = math.ceil(time.time() + seconds)
    link = tempurl.sign_prefix(
        key,
        storage_url=session.storage_url,
        container=store.container,
        prefix=store.prefix,
        method=method,
        expires_at=expires_at,
        digest=chosen,
    )
    if method.upper() == "GET" and not await is_consolidated(store):
        log.warning(NOT_CONSOLIDATED.format(what="a signed link", store=store))
    log.info(
        "signed a %s link to %s (%s), valid until %s",
        method.upper(),
        store,
        chosen,
        tempurl.expiry_text(expires_at),
    )
    return link.url


def temp_url(
    store: SwiftStore,
    *,
    expires: str | float | timedelta = "7d",
    method: str = "GET",
    create_key: bool = False,
    digest: str | None = None,
) -> str:
    """A signed link (Swift temp URL) to every object under the store's prefix.

    ``expires``: how long it is valid (``"7d"``, ``"12h"``, seconds, a timedelta). The key is
    the account's ``Temp-URL-Key``, else the container's; with neither, ``create_key=True`` sets
    a new container key (nothing is created otherwise). ``digest``: ``"sha256"`` or
    ``"sha512"``, by default the first the cluster's ``/info`` allows. The URL holds the
    signature, never the key; changing the key revokes every link signed with it.
    """
    return sync(_temp_url(store, expires, method, create_key, digest))
