"""A python-swiftclient ``Connection`` on a session's storage URL, token, trust and proxy.

For the CLI-like operations users know (``store.conn.get_container``...); the data path never
uses it. Built here, from the session alone, so it sees the same site as the data path: the
same CA bundle (or none) and the same forward proxy.
"""

from __future__ import annotations

from typing import Any

from swiftzarr_batch.swift.proxy import route_swiftclient
from swiftzarr_batch.swift.session import SwiftSession

__all__ = ["swiftclient_connection"]


def swiftclient_connection(session: SwiftSession) -> Any:
    """A new ``swiftclient.client.Connection`` (3 retries) through ``session``'s token."""
    from swiftclient.client import Connection

    conn = Connection(
        preauthurl=session.token.storage_url,
        preauthtoken=session.token.token,
        retries=3,
        **session.trust.swiftclient_options(),  # the data path's trust
    )
    route_swiftclient(conn, session.options.proxy)  # ... and its proxy
    return conn
