"""Deleting what a listing streams, as it streams: no list of every name, bounded in flight.

Why: ``delete_dir``, ``clear``, ``swiftzarr rm`` and ``copy_store(delete_extra=True)`` used to
collect every name first (a million names is ~100 MB of Python strings). Here names go from
the listing into batches of ``BATCH`` names; each full batch is handed to the one bulk-delete
call (``SwiftContainer.bulk_delete``: requests of <= 1 000 names, 10 at a time) while the next
batch fills from the listing, and at most ``IN_FLIGHT`` batches are being deleted at once. So
memory is a few batches and listing pages whatever the number of objects, and listing and
deleting overlap.

Deleting names behind the listing's marker is safe: Swift pages by ``marker`` (the last name
seen), not by offset, so removing names already listed never makes the listing skip one.
Large objects (SLO manifests) are deleted one by one with their segments, as they come.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, AsyncIterator

from swiftzarr_batch.errors import SwiftHTTPError
from swiftzarr_batch.swift.container import SwiftContainer, is_marker
from swiftzarr_batch.swift.large_objects import delete_large, is_large

__all__ = ["BATCH", "IN_FLIGHT", "delete_streamed", "listed_for_delete"]

log = logging.getLogger(__name__)

BATCH = 10_000
"""Names per hand-over to ``bulk_delete`` (which splits them into requests of 1 000)."""
IN_FLIGHT = 1
"""Batches being deleted while the next one fills (1: delete one, list the next)."""
BATCH_ATTEMPTS = 3
"""Tries of a batch whose bulk result reports server errors (5xx) for some of its names."""


async def _bulk_delete(container: SwiftContainer, names: list[str]) -> int:
    """One batch to the bulk middleware. It answers 200 and lists per-object failures; an
    overloaded object server fails some deletes with 503. Those are sent again (the whole
    batch: names already deleted come back "not found", which is fine), twice at most."""
    for attempt in range(1, BATCH_ATTEMPTS + 1):
        try:
            return await container.bulk_delete(names)
        except SwiftHTTPError as exc:
            if attempt == BATCH_ATTEMPTS or not (exc.status is None or exc.status >= 500):
                raise
            log.warning("bulk delete in %s: %s; sending the batch again", container.name, exc)
            await asyncio.sleep(0.5 * attempt)
    raise AssertionError("unreachable")  # pragma: no cover


async def listed_for_delete(
    container: SwiftContainer, prefix: str, *, only_markers: bool = False
) -> AsyncIterator[tuple[str, bool]]:
    """``(object name, is a large object)`` for everything the listing of ``prefix`` shows,
    directory markers included (deleting a prefix removes its empty "folders" too); only the
    markers with ``only_markers``."""
    async for page in container.list_pages(prefix, markers=True):
        for entry in page:
            if not only_markers or is_marker(entry):
                yield entry["name"], is_large(entry)


async def delete_streamed(
    container: SwiftContainer,
    names: AsyncIterable[tuple[str, bool]],
    *,
    batch: int | None = None,
    in_flight: int | None = None,
) -> int:
    """Delete every ``(name, large)`` of ``names`` as it arrives; returns how many the server
    deleted. The first failure cancels the batches still in flight and propagates."""
    batch = BATCH if batch is None else batch  # read now: a site (or a test) may lower them
    in_flight = IN_FLIGHT if in_flight is None else in_flight
    if batch < 1 or in_flight < 1:
        raise ValueError("batch and in_flight must be >= 1")
    running: list[asyncio.Task[int]] = []
    deleted = 0
    todo: list[str] = []

    async def hand_over() -> None:
        nonlocal deleted, todo
        running.append(asyncio.ensure_future(_bulk_delete(container, todo)))
        todo = []
        while len(running) > in_flight:
            deleted += await running.pop(0)

    try:
        async for name, large in names:
            if large:  # with its segments, now: its manifest name need not wait in a batch
                deleted += int(await delete_large(container, name))
                continue
            todo.append(name)
            if len(todo) >= batch:
                await hand_over()
        if todo:
            await hand_over()
        while running:
            deleted += await running.pop(0)
    finally:
        for task in running:  # only after a failure
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)
    log.debug("deleted %d objects in %s", deleted, container.name)
    return deleted
