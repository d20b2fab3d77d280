"""The dataset lock when renewals fail: ``check()`` must not keep saying "ours" after the lock
may have expired, and ``release()`` must not delete a lock close to its end (Swift has no
conditional delete: that delete could hit the lock of a run that took it over)."""

from __future__ import annotations

import time

import pytest

from swiftzarr_batch import SwiftStore
from swiftzarr_batch.workflows.lock import DatasetLock, LockLostError


def _store(swift_server, container: str) -> SwiftStore:
    return SwiftStore(
        container, "ds", authurl=swift_server.auth_url, user=swift_server.user, key=swift_server.key
    )


def test_a_lock_not_renewed_in_time_is_reported_lost_and_left_to_expire(
    swift_server, swift_conn, container_name
):
    lock = DatasetLock(_store(swift_server, container_name), "etl", ttl=4, renew=False, settle=0.2)
    lock.acquire()
    lock.check()  # fresh: ours
    assert swift_conn.head_object(container_name, "ds/.swiftzarr/locks/etl")
    time.sleep(4 - min(4 / 6, 60) - 0.2 + 0.3)  # past the safety margin, before the end
    with pytest.raises(LockLostError, match="could not be renewed in time"):
        lock.check()  # no renewal succeeded: another run may take it any moment
    lock.release()  # too close to its end to delete safely: it expires by itself
    assert swift_conn.head_object(container_name, "ds/.swiftzarr/locks/etl")


def test_a_renewed_lock_stays_ours_and_is_released(swift_server, swift_conn, container_name):
    lock = DatasetLock(_store(swift_server, container_name), "etl", ttl=4, settle=0.2)
    lock.acquire()  # renewed in the background every ttl/3
    time.sleep(4.5)  # longer than the ttl: only renewals keep it
    lock.check()
    lock.release()
    _, listing = swift_conn.get_container(container_name, prefix="ds/.swiftzarr/locks/")
    assert listing == []
