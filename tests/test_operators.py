"""Swift as operators run it (issue 26): three replicas with a node down, listings that lag,
rate limits. Every part is real Swift (``LocalSwift(replicas=3 | deferred_listings=S |
ratelimit_writes=N)``) and every job runs on a real multi-process dask ``LocalCluster``; what the
server holds is read back independently (direct object-server GETs, python-swiftclient, the
proxy's access log).
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

import dask.array as da
import numpy as np
import pytest
import swiftclient
import zarr

from swiftzarr_batch import SwiftStore, write_array
from swiftzarr_batch.swift.concurrency import AdaptiveLimit
from swiftzarr_batch.testing import LocalSwift
from swiftzarr_batch.transfer.copy import copy_store
from swiftzarr_batch.transfer.verify import verify_store

distributed = pytest.importorskip("distributed")
pytestmark = [
    pytest.mark.filterwarnings("ignore::zarr.errors.ZarrUserWarning"),
    pytest.mark.timeout(420),
]

# 256 chunks of 16 x 32 int32 (2 KiB each), written by 16 tasks of 16 chunks.
DATA = np.arange(256 * 512, dtype="<i4").reshape(256, 512)
BLOCKS, CHUNKS = (64, 128), (16, 32)


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=2,
            processes=True,
            host="127.0.0.1",
            dashboard_address="127.0.0.1:0",
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


def _store(server: LocalSwift, container: str, **options: object) -> SwiftStore:
    return SwiftStore(
        container, authurl=server.auth_url, user=server.user, key=server.key, **options
    )


def _conn(server: LocalSwift) -> swiftclient.Connection:
    return swiftclient.Connection(server.auth_url, server.user, server.key, retries=0)


def _direct_get(url: str) -> bytes | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return bytes(resp.read())
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def _chunk_names(conn: swiftclient.Connection, container: str, prefix: str) -> list[str]:
    return [o["name"] for o in conn.get_container(container, prefix=prefix, full_listing=True)[1]]


# -- a node down -------------------------------------------------------------------------------
def test_object_server_stopped_mid_write_then_restarted_and_replicated(client) -> None:
    with LocalSwift(replicas=3) as server:
        store = _store(server, "replicated")
        darr = da.from_array(DATA, chunks=(32, 128)).map_blocks(_slowly, dtype=DATA.dtype)
        stopped = threading.Event()

        def stop_node_soon() -> None:
            time.sleep(1.0)
            server.stop_object_server(1)
            stopped.set()

        stopper = threading.Thread(target=stop_node_soon)
        stopper.start()
        result = write_array(darr, store, "a", chunks=CHUNKS, retries=0)
        stopper.join()
        assert stopped.is_set() and result.chunks == 256
        # Node 1 is still down: every read is served by the two others, byte-identical.
        np.testing.assert_array_equal(
            zarr.open_array(_store(server, "replicated"), path="a")[:], DATA
        )
        report = verify_store(_store(server, "replicated"), "a")
        assert report.ok and report.objects_read == report.keys, report.format()
        conn = _conn(server)
        names = _chunk_names(conn, "replicated", "a/c/")
        assert len(names) == 256
        node1 = server.data_dir / "srv" / "node2" / "d2" / "objects"
        on_node1 = len(list(node1.rglob("*.data")))
        assert on_node1 < 256  # node 1 really missed writes (it was down for most of them)
        # Node 1 back: the replicators push what it missed; each replica equals the proxy's.
        server.start_object_server(1)
        deadline = time.monotonic() + 120
        pending = list(names)
        while pending and time.monotonic() < deadline:
            pending = [
                n
                for n in pending
                if _direct_get(server.direct_object_urls("replicated", n)[1]) is None
            ]
            time.sleep(1)
        assert not pending, f"{len(pending)} objects never replicated to node 1"
        for name in names[::16]:
            body = conn.get_object("replicated", name)[1]
            for url in server.direct_object_urls("replicated", name):
                assert _direct_get(url) == body
        np.testing.assert_array_equal(
            zarr.open_array(_store(server, "replicated"), path="a")[:], DATA
        )


def _slowly(block: np.ndarray) -> np.ndarray:
    time.sleep(0.5)  # spread the writes over a few seconds: the node goes down among them
    return block


# -- listings that lag ---------------------------------------------------------------------------
def test_copy_right_after_a_write_misses_nothing_while_listings_lag(client) -> None:
    with LocalSwift(deferred_listings=600) as server:  # no replay during the test
        src = _store(server, "lagging-src")
        write_array(da.from_array(DATA, chunks=BLOCKS), src, "a", chunks=CHUNKS)
        conn = _conn(server)
        listed = _chunk_names(conn, "lagging-src", "a/c/")
        assert len(listed) < 256 and server.async_pending_count() > 0  # the listing lags
        report = verify_store(_store(server, "lagging-src"), "a")
        assert report.unlisted_chunks == 256 - len(listed) and report.missing_chunks == 0
        assert report.unlisted_probes == 256 - len(listed), report.format()
        assert "NOT YET LISTED" in report.format()

        # The array's path: its zarr.json is read by name, so its grid says what can exist.
        summary = copy_store(
            _store(server, "lagging-src"),
            _store(server, "lagging-dst"),
            source_path="a",
            dest_path="a",
        )
        assert summary.verified is True and summary.keys_failed == 0
        assert summary.keys_unlisted >= 256 - len(listed)  # chunks, maybe metadata too
        for i in range(256 // (512 // 32)):
            for j in range(512 // 32):
                name = f"a/c/{i}/{j}"
                assert (
                    conn.get_object("lagging-dst", name)[1]
                    == conn.get_object("lagging-src", name)[1]
                )
        # A chunk really removed is still told apart from one not yet listed.
        conn.delete_object("lagging-src", "a/c/0/0")
        again = verify_store(_store(server, "lagging-src"), "a", check_content=False)
        assert again.missing_chunks == 1 and not again.ok
        assert again.arrays[0].missing == ["a/c/0/0"]


# -- rate limits --------------------------------------------------------------------------------
def test_rate_limited_job_completes_with_bounded_refusals(client) -> None:
    rate = 20.0
    with LocalSwift(ratelimit_writes=rate) as server:
        conn = _conn(server)
        conn.put_container("limited")
        conn.put_object("limited", "first", b"1")  # Swift leaves an empty container unlimited
        time.sleep(2.5)  # container info (with its object count) is re-read every 2 s
        store = _store(server, "limited")
        started = time.monotonic()
        result = write_array(da.from_array(DATA, chunks=BLOCKS), store, "a", chunks=CHUNKS)
        seconds = time.monotonic() - started
        assert result.chunks == 256
        np.testing.assert_array_equal(zarr.open_array(_store(server, "limited"), path="a")[:], DATA)
        lines = [ln for ln in server.access_log_lines() if " /v1/AUTH_test/limited/a/" in ln]
        refused = sum(" 498 " in ln for ln in lines)
        assert refused == result.counters["refused"]  # the server's count is ours
        assert refused <= 256  # bounded: at most one refusal per chunk on average
        assert 256 / seconds <= rate * 1.5  # the limit was real (a 1 s burst allowed)


def test_adaptive_limit_halves_on_refusal_and_grows_back() -> None:
    import asyncio

    limit = AdaptiveLimit("test", ceiling=64, initial=32)

    async def run() -> None:
        for _ in range(8):
            await limit.acquire()
        limit.release(refused=True)  # 8 in flight: cut to 4
        assert limit.limit == 4 and limit.cuts == 1
        limit.release(refused=True)  # same episode (cool-down): no second cut
        assert limit.limit == 4
        for _ in range(6):
            limit.release(seconds=0.01)
        assert limit.in_flight == 0
        for _ in range(40):  # good answers with the window full: about +1 per window
            for _ in range(4):
                await limit.acquire()
            for _ in range(4):
                limit.release(seconds=0.01)
        assert 5 < limit.limit < 32

    asyncio.run(run())
