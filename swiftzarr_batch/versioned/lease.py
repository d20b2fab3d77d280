"""The single-writer lease of a branch: who may move its head, with a fencing number.

Swift has no compare-and-swap (``If-None-Match: *`` PUTs in flight together can both get 201),
so the lease is built from what it does guarantee: a PUT is atomic and the newest replica is
readable (``X-Newest``). The lease object ``refs/lease.<branch>.json`` holds
``{holder, owner, fence, expires_at}`` and is never deleted (a release clears the holder and
keeps the fence), so fencing numbers only grow:

- **take**: read the lease; if a live holder is there, ``LeaseHeldError``. Otherwise PUT ours
  with ``fence + 1``, wait ``settle`` seconds so racing PUTs land, read it back: only the
  writer whose id is there holds it (racing takers wrote the same fence; one of them wins).
- **renew**: a heartbeat thread re-PUTs it every ``ttl/3`` seconds after checking it is still
  ours; if it is not, the session is marked lost and its commit refuses to move the head.
- **fence check**, right before a head moves: the lease is still ours, with our fence, with at
  least ``ttl/3`` left; the head's own fence is not newer than ours.

What remains possible (and is tested): a writer that stalls for longer than its lease *between*
the fence check and its head PUT can overwrite the head of a writer that took the lease after
it. Both snapshots stay intact (content-addressed, never rewritten); each writer reads the head
back after its PUT, so the overwritten one learns it (``CommitLostError``) unless the stall also
covers that read-back. Expiry uses the writers' clocks: they must agree to well within ``ttl``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from swiftzarr_batch.versioned.errors import LeaseHeldError, LeaseLostError
from swiftzarr_batch.versioned.records import decode, encode, lease_key

log = logging.getLogger(__name__)

ReadNewest = Callable[[str], Awaitable[bytes | bytearray | None]]
Write = Callable[[str, bytes], Awaitable[None]]
Run = Callable[[Any], Any]  # runs a coroutine to completion from a plain thread


def owner_name() -> str:
    """``host:pid`` of this process: what lease and head records show as their writer, so an
    operator can find who holds a branch. Not an identity check (the lease's random id is)."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class LeaseState:
    holder: str | None
    owner: str
    fence: int
    expires_at: float

    def live(self, now: float) -> bool:
        """Held by someone and not yet expired at ``now`` (the writers' clocks must agree to well
        within the ttl)."""
        return self.holder is not None and self.expires_at > now


def parse_lease(body: bytes | bytearray | None, what: str) -> LeaseState | None:
    """The lease record in ``body`` (None: no lease object yet). A body that is JSON but not a lease
    counts as held forever, never as free; invalid JSON raises ``CorruptRecordError``."""
    if body is None:
        return None
    doc = decode(body, what)
    try:
        holder = doc["holder"]
        return LeaseState(
            None if holder is None else str(holder),
            str(doc.get("owner", "?")),
            int(doc["fence"]),
            float(doc["expires_at"]),
        )
    except (KeyError, TypeError, ValueError):
        # never treated as free: it could be someone's live lease
        return LeaseState("unreadable", "an unreadable lease object", 0, float("inf"))


class BranchLease:
    """The lease of one branch for one writable session (see the module docstring)."""

    def __init__(
        self,
        branch: str,
        read_newest: ReadNewest,
        write: Write,
        run: Run,
        *,
        ttl: float,
        settle: float,
    ) -> None:
        if ttl < 2:
            raise ValueError(f"lease ttl must be at least 2 seconds, got {ttl}")
        self.branch, self.key, self.ttl, self.settle = branch, lease_key(branch), ttl, settle
        self._read_newest, self._write, self._run = read_newest, write, run
        self.id = uuid.uuid4().hex
        self.owner = owner_name()
        self.fence = 0
        self._lost: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"BranchLease({self.branch!r}, fence={self.fence}, owner={self.owner!r})"

    @property
    def lost(self) -> str | None:
        """Why the heartbeat found the lease lost (None while it is held)."""
        return self._lost

    async def read(self) -> LeaseState | None:
        """The lease as the newest replica holds it (``X-Newest``), or None if the branch never had
        one."""
        return parse_lease(await self._read_newest(self.key), self.key)

    def _body(self, holder: str | None) -> bytes:
        return encode(
            {
                "holder": holder,
                "owner": self.owner,
                "fence": self.fence,
                "expires_at": time.time() + self.ttl if holder else 0.0,
            }
        )

    async def take(self, floor_fence: int = 0) -> None:
        """Take the lease (``floor_fence``: the branch head's fence, which ours must pass)."""
        current = await self.read()
        now = time.time()
        if current is not None and current.live(now):
            raise LeaseHeldError(
                f"branch {self.branch!r} is being written by {current.owner} (lease expires in "
                f"{current.expires_at - now:.0f} s unless renewed); only one writable session "
                "per branch at a time"
            )
        if current is not None and current.holder is not None:
            log.warning(
                "lease of branch %s held by %s expired; taking it over", self.branch, current.owner
            )
        self.fence = max(current.fence if current else 0, floor_fence) + 1
        await self._write(self.key, self._body(self.id))
        await asyncio.sleep(self.settle)  # let takers racing with us land their PUTs
        after = await self.read()
        if after is None or after.holder != self.id:
            who = "nobody" if after is None else after.owner
            raise LeaseHeldError(
                f"branch {self.branch!r}: another writer took the lease at the same moment "
                f"({who}); only one writable session per branch at a time"
            )

    async def check(self) -> None:
        """The fence check before a head moves: ours, our fence, at least ttl/3 left."""
        if self._lost:
            raise LeaseLostError(self._lost)
        current = await self.read()
        now = time.time()
        if current is None or current.holder != self.id or current.fence != self.fence:
            who = "nobody" if current is None else current.owner
            self._lost = (
                f"the lease of branch {self.branch!r} was taken over (now {who}, fencing number "
                f"{current.fence if current else '?'}, ours {self.fence}); nothing was committed"
            )
            raise LeaseLostError(self._lost)
        if current.expires_at - now < self.ttl / 3:
            raise LeaseLostError(
                f"the lease of branch {self.branch!r} has {current.expires_at - now:.1f} s left "
                f"(< ttl/3): too close to expiry to move the head safely; nothing was committed"
            )

    async def renew(self) -> None:
        """Push the expiry out by ``ttl`` if the lease is still ours with our fence; otherwise mark
        it lost and raise ``LeaseLostError`` (the commit then refuses to move the head)."""
        current = await self.read()
        if current is None or current.holder != self.id or current.fence != self.fence:
            self._lost = f"the lease of branch {self.branch!r} was lost while writing"
            raise LeaseLostError(self._lost)
        if current.expires_at - time.time() < self._margin:  # a takeover may land any moment:
            self._lost = (  # writing now could overwrite it with our lower fence
                f"the lease of branch {self.branch!r} was not renewed in time (it ends in "
                f"{current.expires_at - time.time():.1f} s); nothing more is committed"
            )
            raise LeaseLostError(self._lost)
        await self._write(self.key, self._body(self.id))

    @property
    def _margin(self) -> float:
        """How close to its end the lease is no longer written by us: Swift has no conditional
        PUT, so a read-then-write near expiry could overwrite a new holder's lease (and its
        higher fence) with ours."""
        return min(self.ttl / 6, 60.0) + self.settle

    async def release(self) -> None:
        """Clear the holder (keeping the fence, so fencing numbers only grow) if the lease is still
        ours and well inside its life; a lease someone else holds, or ours near its end, is left
        alone (it expires by itself)."""
        current = await self.read()
        if current is None or current.holder != self.id:
            return
        if current.expires_at - time.time() < self._margin:
            log.info("lease of branch %s ends by itself (too close to expiry)", self.branch)
            return  # clearing it now could overwrite a takeover with our lower fence
        await self._write(self.key, self._body(None))

    # -- heartbeat --------------------------------------------------------------------------
    def start_heartbeat(self) -> None:
        """Renew every ``ttl/3`` seconds from a daemon thread until ``stop_heartbeat``; a lost lease
        stops it and is reported by ``lost`` and by the next ``check``."""
        self._thread = threading.Thread(target=self._beat, daemon=True, name=f"lease-{self.branch}")
        self._thread.start()

    def stop_heartbeat(self) -> None:
        """Stop renewing (waits up to 10 s for a renewal in flight); call it before ``release``."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self._run(self.renew())
            except LeaseLostError as exc:
                log.error("%s", exc)
                return
            except Exception as exc:
                log.warning("could not renew the lease of branch %s: %s", self.branch, exc)
