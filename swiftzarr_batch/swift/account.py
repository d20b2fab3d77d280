"""Operations on a whole account: the listing of its containers.

The account is the storage URL itself (``GET /v1/AUTH_x``), so these take a ``SwiftSession``
rather than a container; the listing pages with ``marker`` exactly as container listings do.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from swiftzarr_batch.swift.session import SwiftSession

__all__ = ["list_containers"]


async def list_containers(session: SwiftSession) -> AsyncIterator[dict[str, Any]]:
    """Every container of the account (``name``, ``count``, ``bytes``...), page by page."""
    marker = ""
    while True:
        params = {"format": "json", **({"marker": marker} if marker else {})}
        resp = await session.request("GET", "", params=params)
        page = json.loads(resp.body) if resp.body else []
        if not isinstance(page, list) or not page:
            return
        for entry in page:
            yield entry
        marker = str(page[-1]["name"])
