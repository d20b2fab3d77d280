"""A lock object next to a dataset, so two scheduled runs never write it at once.

Taking the lock is a create with ``If-None-Match: *``: a PUT that arrives after another one
completed gets 412. Swift does not serialise PUTs that are in flight at the same moment,
though: both get 201 and the later timestamp wins. So the creator waits ``settle`` seconds
(longer than a small PUT takes) and reads the lock back (``X-Newest``); only the run whose id
is there holds it. A run that dies must not block the dataset forever, so the lock expires:
- on Swift the lock object carries ``X-Delete-After``: once it is past, the object server treats
  it as gone, and the next create succeeds (no clock of ours involved);
- the lock also records ``expires_at``; a lock found past it (any store, or a Swift whose
  expiry did not apply) is taken over through a one-time "steal" marker named after the expired
  lock's id, so of several runs finding the same dead lock only one replaces it.
While held, a background thread renews the lock every ``ttl/3`` seconds; if it finds the lock
taken over, ``check()`` raises, and the holder stops before committing anything. ``check()``
also raises when no renewal has succeeded for so long that the lock may have expired (renewals
failing on network errors): another run could have taken it without any renewal seeing it.
``release()`` deletes the lock only while it is ours and well inside its life: Swift has no
conditional delete, so a delete racing an expiry and another run's take-over is avoided by not
deleting a lock close to its end (it expires by itself).

The Swift parts (newest-replica reads, ``X-Delete-After``) are the store's object-level extras
(``store.objects.swift_objects``); any other store gets the same protocol through zarr's ABC.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
import uuid
from typing import Any

from zarr.abc.store import Store
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from swiftzarr_batch.errors import SwiftZarrError
from swiftzarr_batch.store.keys import LOCKS_DIR, join
from swiftzarr_batch.store.objects import swift_objects
from swiftzarr_batch.workflows.common import LockHeldError

log = logging.getLogger(__name__)

PROTO = default_buffer_prototype()


class LockLostError(SwiftZarrError):
    """The lock expired and another run took it while we held it."""


class DatasetLock:
    """``with DatasetLock(store, "ingest", ttl=3600): ...`` — raises LockHeldError if held."""

    def __init__(
        self,
        store: Store,
        name: str,
        *,
        ttl: float = 3600.0,
        path: str = "",
        renew: bool = True,
        settle: float = 1.0,
    ) -> None:
        if ttl < 2:
            raise ValueError(f"lock ttl must be at least 2 seconds, got {ttl}")
        self.store, self.name, self.ttl, self.renew_in_background = store, name, ttl, renew
        self.settle = settle
        self._swift = swift_objects(store)  # newest-replica reads, expiring objects
        self._delete_after = int(ttl + 1)
        self.key = join(path, LOCKS_DIR, name)
        self.id = uuid.uuid4().hex
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lost: str | None = None
        #: until when our last successful write keeps the lock ours (0: not held)
        self._held_until = 0.0

    def __repr__(self) -> str:
        return f"DatasetLock({self.key!r}, owner={self.owner!r})"

    # -- the lock document ------------------------------------------------------------------
    def _doc(self) -> bytes:
        now = time.time()
        return json.dumps(
            {"id": self.id, "owner": self.owner, "acquired_at": now, "expires_at": now + self.ttl}
        ).encode()

    @property
    def _margin(self) -> float:
        """How long before the lock's end it is treated as possibly gone: a write in flight,
        clocks and the settle pause must fit in it."""
        return min(self.ttl / 6, 60.0) + self.settle

    async def _read(self, key: str | None = None) -> dict[str, Any] | None:
        key = key or self.key
        body: bytes | bytearray | None
        if self._swift is not None:  # the newest replica, not any replica
            body = await self._swift.read_newest(key)
        else:
            buf = await self.store.get(key, PROTO)
            body = None if buf is None else buf.to_bytes()
        if body is None:
            return None
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            return doc
        return {  # never treated as expired: it could be someone's live lock
            "id": "unreadable",
            "owner": "an unreadable lock object (remove it by hand if no run is active)",
            "expires_at": float("inf"),
        }

    async def _create(self, key: str, body: bytes) -> bool:
        """Create ``key`` if absent; True only if it is ours once concurrent creates settled."""
        if self._swift is not None:
            if not await self._swift.put_expiring(
                key, body, delete_after=self._delete_after, if_none_match=True
            ):
                return False
            await asyncio.sleep(self.settle)  # let PUTs that raced with ours land
        else:
            await self.store.set_if_not_exists(key, PROTO.buffer.from_bytes(body))
        current = await self._read(key)  # who won?
        return current is not None and json.loads(body)["id"] == current.get("id")

    async def _write(self) -> None:
        started = time.time()
        body = self._doc()
        if self._swift is not None:
            await self._swift.put_expiring(self.key, body, delete_after=self._delete_after)
        else:
            await self.store.set(self.key, PROTO.buffer.from_bytes(body))
        self._held_until = started + self.ttl

    # -- acquire / renew / release ----------------------------------------------------------
    def acquire(self) -> None:
        """Take the lock or raise ``LockHeldError`` (an expired lock is taken over by one run only);
        then renew it in the background unless ``renew=False``."""
        sync(self._acquire())
        log.info("took lock %s (expires in %.0f s unless renewed)", self.key, self.ttl)
        if self.renew_in_background:
            self._thread = threading.Thread(
                target=self._renew_loop, daemon=True, name=f"lock-{self.name}"
            )
            self._thread.start()

    async def _acquire(self) -> None:
        for _ in range(3):
            started = time.time()
            if await self._create(self.key, self._doc()):
                self._held_until = started + self.ttl
                return
            held = await self._read()
            if held is None:
                continue  # released or expired in between: try again
            if held.get("expires_at", 0) > time.time():
                left = held["expires_at"] - time.time()
                raise LockHeldError(
                    f"{self.key} is held by {held.get('owner', '?')} (expires in {left:.0f} s "
                    "unless renewed); another run is in progress"
                )
            # Expired but still there: take it over, once for all runs that found it.
            marker = f"{self.key}.steal.{held.get('id', 'unknown')}"
            if not await self._create(marker, self._doc()):
                raise LockHeldError(f"{self.key} expired and another run is taking it over")
            current = await self._read()
            if current is not None and current.get("id") == held.get("id"):
                log.warning("lock %s of %s expired; taking it over", self.key, held.get("owner"))
                await self.store.delete(self.key)
            await self.store.delete(marker)
        raise LockHeldError(f"could not take {self.key}: other runs keep taking it")

    def check(self) -> None:
        """Raise LockLostError if the background renewal found the lock taken over, or if no
        renewal has succeeded for so long that the lock may have expired (and been taken)."""
        if self._lost:
            raise LockLostError(self._lost)
        if self._held_until and time.time() >= self._held_until - self._margin:
            raise LockLostError(
                f"lock {self.key} could not be renewed in time (it expires "
                f"{time.strftime('%H:%M:%S', time.localtime(self._held_until))}); another run "
                "may hold it now: stopped before committing anything"
            )

    def renew(self) -> None:
        """Extend the lock by ``ttl`` from now; raises ``LockLostError`` if it is no longer ours
        (taken over, or gone)."""
        sync(self._renew())

    async def _renew(self) -> None:
        held = await self._read()
        if held is None or held.get("id") != self.id:
            who = "nobody" if held is None else held.get("owner", "?")
            self._lost = (
                f"lock {self.key} was lost (now held by {who}); stopped before committing anything"
            )
            raise LockLostError(self._lost)
        await self._write()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            try:
                self.renew()
            except LockLostError as exc:
                log.error("%s", exc)
                return
            except Exception as exc:
                log.warning("could not renew lock %s: %s", self.key, exc)

    def release(self) -> None:
        """Stop renewing and delete the lock if it is still ours. Never raises: a lock that cannot
        be deleted expires by itself."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            held = sync(self._read())
            if held is None or held.get("id") != self.id:
                return
            if time.time() >= self._held_until - self._margin:  # too close to its end: a
                log.info("lock %s ends by itself (too close to expiry to delete)", self.key)
                return  # delete now could remove the lock of a run that took it over
            sync(self.store.delete(self.key))
            log.info("released lock %s", self.key)
        except Exception as exc:
            log.warning("could not release lock %s (it expires by itself): %s", self.key, exc)

    def __enter__(self) -> DatasetLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
