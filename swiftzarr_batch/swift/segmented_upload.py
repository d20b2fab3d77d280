"""A Static Large Object written as its bytes arrive: segments first, the manifest last.

Why not ``large_objects.put_large``: that one splits a body it already holds. A file written
through ``open("wb")`` or copied from a local disk arrives a block at a time and may be far
larger than memory, so here each segment is written as soon as it is complete (a few at once)
and forgotten, and only the manifest (a list of names, sizes and ETags) is kept until the end.

Same conventions as ``put_large`` (segments in ``<container>_segments`` under
``<name>/slo/<time>/...``, the whole body's MD5 as ``BODY_MD5_HEADER``, the old segments of a
replaced large object deleted once the new manifest is in place), so ``delete_large``,
``copy_large`` and the ``swift`` CLI understand these objects. Until ``complete`` writes the
manifest nothing is visible under the object's name; ``abort`` (and a failed ``complete``)
deletes the segments written so far. A writer killed before either leaves its segments in
``<container>_segments`` under ``<name>/slo/`` (no manifest points at them).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from swiftzarr_batch.errors import ConfigurationError
from swiftzarr_batch.swift.capabilities import Limits
from swiftzarr_batch.swift.checksums import md5_hex
from swiftzarr_batch.swift.container import SwiftContainer
from swiftzarr_batch.swift.large_objects import (
    delete_paths,
    delete_segments_quietly,
    put_manifest,
    segment_container,
    segments_of,
)
from swiftzarr_batch.swift.names import MAX_OBJECT_NAME_BYTES
from swiftzarr_batch.swift.status import PRECONDITION_FAILED

__all__ = ["SegmentedUpload"]

log = logging.getLogger(__name__)


@dataclass
class _Segment:
    name: str
    md5: str = ""
    size: int = 0


@dataclass
class SegmentedUpload:
    """Segments of one object in the making (see the module docstring).

    ``add`` may run concurrently for different indexes; ``complete`` after all of them.
    """

    container: SwiftContainer
    name: str
    limit: Limits
    segments: list[_Segment] = field(default_factory=list)
    _base: str = ""
    _store: SwiftContainer | None = None

    async def start(self) -> None:
        """Check the cluster can take a large object and create the containers (cached)."""
        if not self.limit.slo:
            raise ConfigurationError(
                f"{self.name}: larger than the cluster's max_file_size "
                f"({self.limit.max_file_size}) and the cluster has no SLO middleware (its /info "
                "lists no 'slo') to store it as a large object"
            )
        self._base = f"{self.name}/slo/{time.time():.6f}/stream/"
        if len((self._base + "00000000").encode("utf-8")) > MAX_OBJECT_NAME_BYTES:
            raise ConfigurationError(
                f"{self.name[:60]!r}...: too long a name for large-object segments"
            )
        self._store = SwiftContainer(
            self.container.session, segment_container(self.container.name), self.container.writes
        )
        await self.container.ensure_exists()
        await self._store.ensure_exists()

    async def add(self, index: int, part: bytes | memoryview) -> None:
        """Write segment ``index`` (0, 1, ...) with its MD5, so the server checks it."""
        assert self._store is not None, "start() first"
        if index >= self.limit.max_manifest_segments:
            raise ConfigurationError(
                f"{self.name}: more than the cluster's max_manifest_segments "
                f"({self.limit.max_manifest_segments}) segments; use a larger block size"
            )
        while len(self.segments) <= index:
            self.segments.append(_Segment(f"{self._base}{len(self.segments):08d}"))
        segment = self.segments[index]
        segment.md5, segment.size = await md5_hex(part), len(part)  # hashed in a thread
        await self._store.put(segment.name, part, headers={"ETag": segment.md5})

    async def complete(
        self, body_md5: str, *, content_type: str, if_none_match: bool = False
    ) -> bool:
        """Write the manifest (the object appears); False only when ``if_none_match`` found
        an object there (the segments are deleted then). Deletes the segments on failure."""
        assert self._store is not None, "start() first"
        session = self.container.session
        try:
            old = await segments_of(self.container, self.name)
            status = await put_manifest(
                self.container,
                self.name,
                [(f"/{self._store.name}/{s.name}", s.md5, s.size) for s in self.segments],
                body_md5=body_md5,
                content_type=content_type,
                if_none_match=if_none_match,
            )
        except BaseException:
            await self.abort()
            raise
        if status == PRECONDITION_FAILED:
            await self.abort()
            return False
        ours = {f"/{self._store.name}/{s.name}" for s in self.segments}
        stale = [p for p in old if p not in ours]
        if stale:
            await delete_paths(session, stale)
        log.debug("wrote %s/%s as %d segments", self.container.name, self.name, len(ours))
        return True

    async def abort(self) -> None:
        """Delete the segments written so far (a failure is logged, never raised)."""
        if self._store is not None and self.segments:
            await delete_segments_quietly(self._store, [s.name for s in self.segments])
