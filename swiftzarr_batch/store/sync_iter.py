"""Blocking iteration over an async stream of pages: ``store.walk()`` and other sync APIs.

Why pages: each step from sync code into zarr's event loop (``zarr.core.sync.sync``) is a
thread hand-off (~50 us); one per listing page (10 000 names) costs nothing next to the
listing, one per name would double it. Only the current page is held here.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import TypeVar

from zarr.core.sync import sync

__all__ = ["iterate_pages"]

T = TypeVar("T")


async def _next_page(pages: AsyncIterator[Sequence[T]]) -> Sequence[T] | None:
    return await anext(pages, None)


def iterate_pages(pages: AsyncIterator[Sequence[T]]) -> Iterator[T]:
    """Every item of every page, a page at a time; closing the iterator early (``break``,
    garbage collection) closes the async stream too, so no prefetched request is left."""
    try:
        while (page := sync(_next_page(pages))) is not None:
            yield from page
    finally:
        aclose = getattr(pages, "aclose", None)
        if aclose is not None:
            sync(aclose())
