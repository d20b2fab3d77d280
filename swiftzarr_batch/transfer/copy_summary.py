"""What a copy did, and the errors that carry it: ``CopySummary``, ``CopyError``.

A module of its own because both the public ``copy_store`` and the streaming run behind it
(``copy_run``) fill and raise them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from swiftzarr_batch.errors import SwiftZarrError
from swiftzarr_batch.jobs.counters import cluster_counters, counters_delta
from swiftzarr_batch.jobs.runner import format_bytes

__all__ = ["MAX_PROBLEMS_KEPT", "CopyConflictError", "CopyError", "CopySummary"]

log = logging.getLogger("swiftzarr_batch.transfer.copy")  # the summary line copies always logged

MAX_PROBLEMS_KEPT = 50


@dataclass
class CopySummary:
    """What a copy did (or, with ``dry_run``, would do). ``as_dict()`` is JSON-ready."""

    source: str
    dest: str
    dry_run: bool = False
    server_side: bool = False
    keys_total: int = 0
    keys_copied: int = 0
    keys_server_side: int = 0
    keys_skipped: int = 0
    keys_conflicting: int = 0
    keys_deleted: int = 0
    keys_vanished: int = 0
    keys_failed: int = 0
    keys_unlisted: int = 0  # at the source, found by HEAD of the zarr grid, not by its listing
    unlisted_probes: int = 0  # HEADs sent for grid keys the source listing lacked (the cost)
    bytes_copied: int = 0
    bytes_through_client: int = 0
    requests: int = 0
    retried: int = 0
    refused: int = 0  # 498/429 answers (rate limited) among the requests
    seconds: float = 0.0
    verified: bool | None = None
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """Every field by name, for the JSON summary (``--summary``) and job reports."""
        return asdict(self)

    def line(self) -> str:
        """One human line: what was copied, skipped, left, deleted or failed (the CLI's final
        message and the log line of workflows)."""
        what = "would copy" if self.dry_run else "copied"
        how = f" ({self.keys_server_side} server-side)" if self.keys_server_side else ""
        text = (
            f"{what} {self.keys_copied}/{self.keys_total} keys{how}, "
            f"{format_bytes(self.bytes_copied)}; skipped {self.keys_skipped} matching"
        )
        if self.keys_conflicting:
            text += f", left {self.keys_conflicting} differing"
        if self.keys_deleted:
            text += f", {'would delete' if self.dry_run else 'deleted'} {self.keys_deleted}"
        if self.keys_vanished:
            text += f", {self.keys_vanished} vanished at the source"
        if self.keys_unlisted:
            text += f", {self.keys_unlisted} present at the source but not yet listed"
        if self.keys_failed:
            text += f", {self.keys_failed} FAILED"
        verified = {None: "", True: "; verified", False: "; NOT verified"}[self.verified]
        refused = f" ({self.refused} rate-limited)" if self.refused else ""
        return f"{text}; {self.retried} retries{refused}; {self.seconds:.1f} s{verified}"

    def record_run(self, counters_before: dict[int, dict[str, int]], started: float) -> None:
        """Fill in the request, retry and time figures of a finished (or failed) run.

        Copies and conversions both end this way, so their summaries read alike."""
        delta = counters_delta(counters_before, cluster_counters())
        self.requests, self.retried = delta.get("requests", 0), delta.get("retries", 0)
        self.refused = delta.get("refused", 0)
        self.seconds = round(time.monotonic() - started, 3)

    def raise_if_unverified(self, what: str, error: type[CopyError]) -> None:
        """Log the summary line; raise ``error`` when verification found problems."""
        log.info("%s -> %s: %s", self.source, self.dest, self.line())
        if self.verified is False:
            raise error(
                f"{what} {self.source} -> {self.dest} did not verify: "
                + "; ".join(self.problems[:3]),
                self,
            )


class CopyError(SwiftZarrError, RuntimeError):
    """The copy did not complete or did not verify; ``summary`` says what was done."""

    def __init__(self, message: str, summary: CopySummary) -> None:
        super().__init__(message)
        self.summary = summary


class CopyConflictError(CopyError):
    """``if_exists="fail"`` and keys exist at the destination with other content."""
