"""What the cluster can do: its ``/info`` document, read once per session, and the limits in it.

Why one module: ``/info`` is the only request of the client that goes outside the account (it
sits at the server's root, needs no token and is not retried), and what it says decides how the
store works on this cluster: the largest single object and whether SLO is there (big values),
whether the bulk middleware is there (deletes), which storage policies exist (new containers).
Reading it here, once per cluster and process (every session and token of one server shares
the answer), keeps that request and its parsing out of the data path.

A cluster may hide ``/info`` (``expose_info = false``) or be unreachable for it: then the
document is ``{}`` and callers get Swift's defaults. A failed attempt is not remembered (the
next caller asks again); an answer, even a refusal, is.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass
from typing import Any

from swiftzarr_batch.swift.http1 import ConnectionFailed, TLSFailure
from swiftzarr_batch.swift.session import SwiftSession
from swiftzarr_batch.swift.status import Outcome, classify

__all__ = [
    "DEFAULT_MAX_FILE_SIZE",
    "SMALL_ENOUGH",
    "Limits",
    "bulk_delete_limits",
    "clear_cache",
    "cluster_info",
    "info_path",
    "large_object_limits",
    "limits",
    "storage_policies",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_FILE_SIZE = 5 * 1024**3 + 2
"""Swift's default ``max_file_size`` constraint (5 GiB + 2 bytes)."""
DEFAULT_MAX_MANIFEST_SEGMENTS = 1000
"""The SLO middleware's default ``max_manifest_segments``."""
SMALL_ENOUGH = 1024 * 1024
"""No Swift cluster limits single objects below this: smaller bodies skip the /info lookup."""

_ACCOUNT_SUFFIX = re.compile(r"/v1/[^/]+/?$")
_info_cache: dict[tuple[str, str, int, str], dict[str, Any]] = {}
_info_lock = threading.Lock()
DEFAULT_MAX_DELETES = 10_000
"""The bulk middleware's default ``max_deletes_per_request``."""


@dataclass(frozen=True)
class Limits:
    """What the cluster accepts: one object's size, and the SLO manifest's limits."""

    max_file_size: int = DEFAULT_MAX_FILE_SIZE
    max_manifest_segments: int = DEFAULT_MAX_MANIFEST_SEGMENTS
    min_segment_size: int = 1
    slo: bool = True


def info_path(base_path: str) -> str:
    """The path of ``/info`` on the server of a storage URL's path (``/v1/AUTH_x`` removed,
    so a proxy mounted under a path prefix keeps it)."""
    return _ACCOUNT_SUFFIX.sub("", base_path) + "/info"


def clear_cache() -> None:
    """Forget every cluster's ``/info`` (for a server restarted with another configuration)."""
    with _info_lock:
        _info_cache.clear()


async def cluster_info(session: SwiftSession) -> dict[str, Any]:
    """The cluster's ``/info`` (limits, middlewares), fetched once per cluster and process; {}
    when the cluster hides it or cannot be asked (callers then assume Swift's defaults)."""
    endpoint = session.endpoint
    target = info_path(endpoint.base_path)
    key = (endpoint.scheme, endpoint.host, endpoint.port, target)
    with _info_lock:
        cached = _info_cache.get(key)
    if cached is not None:
        return cached
    try:
        resp = await session.get_unauthenticated(target)
        info = json.loads(resp.body) if classify(resp.status) is Outcome.OK else {}
    except (ConnectionFailed, TLSFailure, ValueError) as exc:
        log.debug("could not read %s (%s); assuming defaults", target, type(exc).__name__)
        return {}
    document: dict[str, Any] = info if isinstance(info, dict) else {}
    with _info_lock:
        return _info_cache.setdefault(key, document)


def _section(info: dict[str, Any], name: str) -> dict[str, Any] | None:
    value = info.get(name)
    return value if isinstance(value, dict) else None


async def limits(session: SwiftSession) -> Limits:
    """The cluster's limits from ``/info`` (Swift's defaults when it is hidden).

    Without ``/info`` SLO is assumed present (it is in every default pipeline); with it, only
    when ``/info`` lists the ``slo`` middleware.
    """
    info = await cluster_info(session)
    swift = _section(info, "swift") or {}
    slo = _section(info, "slo")
    return Limits(
        max_file_size=int(swift.get("max_file_size", DEFAULT_MAX_FILE_SIZE)),
        max_manifest_segments=int(
            (slo or {}).get("max_manifest_segments", DEFAULT_MAX_MANIFEST_SEGMENTS)
        ),
        min_segment_size=int((slo or {}).get("min_segment_size", 1)),
        slo=slo is not None or not info,
    )


async def large_object_limits(session: SwiftSession, size: int) -> Limits | None:
    """The cluster's limits when a body of ``size`` bytes is too large for one PUT, else None.

    Bodies up to ``SMALL_ENOUGH`` never ask: no cluster refuses them, so the common write costs
    no lookup at all.
    """
    if size <= SMALL_ENOUGH:
        return None
    limit = await limits(session)
    return limit if size > limit.max_file_size else None


async def bulk_delete_limits(session: SwiftSession) -> int | None:
    """How many names one bulk-delete request may carry, or None when the cluster has no bulk
    middleware (deletes are then single DELETEs). Without ``/info`` the middleware is assumed
    (it is in every default pipeline) with its default limit."""
    info = await cluster_info(session)
    if not info:
        return DEFAULT_MAX_DELETES
    bulk = _section(info, "bulk_delete")
    if bulk is None:
        return None
    return max(1, int(bulk.get("max_deletes_per_request", DEFAULT_MAX_DELETES)))


async def storage_policies(session: SwiftSession) -> dict[str, str] | None:
    """The cluster's storage policies as ``name or alias -> name`` (case as /info spells it),
    or None when ``/info`` does not list them (hidden, or an old cluster)."""
    swift = _section(await cluster_info(session), "swift") or {}
    listed = swift.get("policies")
    if not isinstance(listed, list):
        return None
    names: dict[str, str] = {}
    for policy in listed:
        if isinstance(policy, dict) and isinstance(policy.get("name"), str):
            names[policy["name"]] = policy["name"]
            for alias in str(policy.get("aliases", "")).split(","):
                if alias.strip():
                    names[alias.strip()] = policy["name"]
    return names
