"""Faults cost time, never data: the real Swift behind a fault-injecting proxy.

Every test here sends its data through ``FaultProxy`` (statuses, resets, stalls, truncated and
corrupted bodies at known rates) and checks what came out through a clean connection to the
real server.
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time

import cloudpickle
import dask.array as da
import numpy as np
import pytest
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from swiftzarr_batch import IntegrityError, RetryPolicy, SwiftHTTPError, SwiftStore
from swiftzarr_batch.auth import V1Password
from swiftzarr_batch.testing.faultproxy import ALL_FAULTS, STATUS_FAULTS, FaultProxy

# Fast retries for tests: a stalled answer costs READ_TIMEOUT, Retry-After costs 1 s.
READ_TIMEOUT = 1.0
RETRY = RetryPolicy(attempts=12, base_delay=0.05, max_delay=1.0, budget=120)
PROTO = default_buffer_prototype()
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # dask workers can't import tests/


@pytest.fixture
def proxy(swift_server):
    with FaultProxy(
        swift_server.proxy_url, seed=1234, stall_seconds=READ_TIMEOUT + 1.5, retry_after=1
    ) as fp:
        yield fp


def faulty_store(
    server, fp: FaultProxy, container: str, *, retry: RetryPolicy = RETRY, token=None, **kw
) -> SwiftStore:
    """A store whose data path goes through ``fp`` (authenticated directly with the server)."""
    token = token or V1Password(server.auth_url, server.user, server.key).authenticate()
    return SwiftStore(
        container,
        preauthurl=fp.via(token.storage_url),
        preauthtoken=token.token,
        read_timeout=READ_TIMEOUT,
        retry=retry,
        **kw,
    )


def clean_store(server, container: str) -> SwiftStore:
    return SwiftStore(container, authurl=server.auth_url, user=server.user, key=server.key)


# -- one fault at a time ----------------------------------------------------------------------
@pytest.mark.parametrize("kind", [k for k in ALL_FAULTS if k not in ("truncate", "corrupt")])
def test_each_fault_on_a_write_costs_one_retry_and_no_data(
    swift_server, proxy, container_name, kind
):
    store = faulty_store(swift_server, proxy, container_name)
    payload = np.random.default_rng(1).bytes(50_000)
    sync(store.set("warmup", PROTO.buffer.from_bytes(b"w")))
    before = proxy.counts.get("requests", 0)
    proxy.inject(kind, 1, method="PUT")
    sync(store.set("k", PROTO.buffer.from_bytes(payload)))
    assert proxy.counts[kind] == 1
    assert proxy.counts["requests"] - before == 2  # the faulted try + one retry
    got = sync(clean_store(swift_server, container_name).get("k", PROTO))
    assert got is not None and got.to_bytes() == payload


def test_an_upload_damaged_on_the_way_is_refused_by_the_server_and_sent_again(
    swift_server, proxy, container_name
):
    """With the body's MD5 as ETag (the default) Swift answers 422 and the retry stores the
    right bytes; with ``verify_writes=False`` the damaged bytes are stored: the trade made."""
    payload = np.random.default_rng(5).bytes(70_000)
    clean = clean_store(swift_server, container_name)
    for verify, key in ((True, "checked"), (False, "unchecked")):
        store = faulty_store(swift_server, proxy, container_name, verify_writes=verify)
        sync(store.set("warmup", PROTO.buffer.from_bytes(b"w")))
        retries = store.counters["retries"]
        proxy.inject("corrupt-upload", 1, method="PUT", path_contains=key)
        sync(store.set(key, PROTO.buffer.from_bytes(payload)))
        stored = sync(clean.get(key, PROTO)).to_bytes()
        assert len(stored) == len(payload)
        if verify:
            assert stored == payload and store.counters["retries"] == retries + 1
        else:
            assert stored != payload and store.counters["retries"] == retries
    assert proxy.counts["corrupt-upload"] == 2


@pytest.mark.parametrize("kind", ["truncate", "corrupt", "reset-after-body", "504", "stall"])
def test_a_damaged_read_is_retried_and_never_handed_to_zarr(
    swift_server, proxy, container_name, kind
):
    clean = clean_store(swift_server, container_name)
    z = zarr.create_array(clean, name="a", shape=(64, 64), chunks=(32, 32), dtype="f8")
    data = np.random.default_rng(2).random((64, 64))
    z[:] = data
    store = faulty_store(swift_server, proxy, container_name, read_only=True)
    reader = zarr.open_array(store, path="a", mode="r")
    proxy.inject(kind, 1, method="GET", path_contains="/a/c/1/0")
    np.testing.assert_array_equal(reader[:], data)
    assert proxy.counts[kind] == 1
    assert store.counters["retries"] >= 1


def test_a_large_corrupted_read_is_retried_and_whole(swift_server, proxy, container_name):
    """A body hashed while it arrives: the mismatch is caught and the read retried."""
    clean = clean_store(swift_server, container_name)
    payload = np.random.default_rng(4).bytes(6 << 20)
    sync(clean.set("big", PROTO.buffer.from_bytes(payload)))
    store = faulty_store(swift_server, proxy, container_name, read_only=True)
    retries = store.counters["retries"]  # the session may be shared with earlier tests' stores
    corrupted = proxy.counts.get("corrupt", 0)
    proxy.inject("corrupt", 2, method="GET", path_contains="/big")
    assert sync(store.get("big", PROTO)).to_bytes() == payload
    assert proxy.counts["corrupt"] - corrupted == 2
    assert store.counters["retries"] - retries == 2


# 5 MiB: a body hashed while it arrives (swift.body_digest), not after
@pytest.mark.parametrize("size", [100_000, 5 << 20], ids=["small", "hashed-while-arriving"])
@pytest.mark.parametrize("kind", ["truncate", "corrupt"])
def test_without_retries_a_damaged_body_raises_instead_of_returning(
    swift_server, proxy, container_name, kind, size
):
    clean = clean_store(swift_server, container_name)
    payload = np.random.default_rng(3).bytes(size)
    sync(clean.set("blob", PROTO.buffer.from_bytes(payload)))
    store = faulty_store(
        swift_server, proxy, container_name, read_only=True, retry=RetryPolicy(attempts=1)
    )
    proxy.inject(kind, 1, method="GET", path_contains="/blob")
    with pytest.raises(SwiftHTTPError) as info:
        sync(store.get("blob", PROTO))
    if kind == "corrupt":  # same length, wrong bytes: only the MD5 check can tell
        assert isinstance(info.value, IntegrityError)
        assert "did not match its ETag" in str(info.value)
    else:  # the length check (Content-Length) fails first
        assert "no answer from the server" in str(info.value)
    assert sync(store.get("blob", PROTO)).to_bytes() == payload  # the next read is fine


# -- budgets: at 100 % faults the job fails, clearly and in bounded time ------------------------
@pytest.mark.parametrize(
    "kinds", [("503",), ("429-retry-after",), ("reset-before-body",), ("stall",), ALL_FAULTS]
)
def test_at_100_percent_faults_a_write_fails_clearly_within_the_budget(
    swift_server, proxy, container_name, kinds
):
    budget = RetryPolicy(attempts=4, base_delay=0.05, max_delay=0.2, budget=6)
    store = faulty_store(swift_server, proxy, container_name, retry=budget)
    proxy.configure(rate=1.0, kinds=kinds)
    started = time.monotonic()
    with pytest.raises(SwiftHTTPError) as info:
        z = zarr.create_array(store, name="a", shape=(8,), chunks=(4,), dtype="i4")
        z[:] = np.arange(8)
    elapsed = time.monotonic() - started
    # 4 tries, each at most READ_TIMEOUT (stall) or 1 s (Retry-After) plus short waits
    assert elapsed < 4 * (READ_TIMEOUT + 1.5) + 5, elapsed
    message = str(info.value)
    assert "attempts" in message and ("answered" in message or "no answer" in message), message
    assert info.value.attempts >= 2
    assert store.counters["errors"] >= 1 and store.counters["retries"] >= 1
    proxy.configure(rate=0.0)
    assert list(clean_store(swift_server, container_name).walk()) in ([], ["a/zarr.json"])


def test_at_100_percent_faults_reads_fail_and_never_look_missing(
    swift_server, proxy, container_name
):
    clean = clean_store(swift_server, container_name)
    z = zarr.create_array(clean, name="a", shape=(8,), chunks=(4,), dtype="i4", fill_value=-1)
    z[:] = np.arange(8)
    store = faulty_store(
        swift_server,
        proxy,
        container_name,
        read_only=True,
        retry=RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.1, budget=5),
    )
    reader = zarr.open_array(store, path="a", mode="r")
    proxy.configure(rate=1.0, kinds=STATUS_FAULTS)
    with pytest.raises(SwiftHTTPError):
        reader[:]  # never an array of fill values


# -- at scale: a dask job of >= 1000 chunks at 10 % faults of every kind --------------------------
@pytest.fixture(scope="module")
def dask_client():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=4,
            processes=True,
            dashboard_address=None,
            silence_logs=40,
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


def _worker_counters(client) -> dict[str, int]:
    from swiftzarr_batch.swift.session import process_counters

    total: dict[str, int] = {}
    for counters in client.run(process_counters).values():
        for k, v in counters.items():
            total[k] = total.get(k, 0) + v
    return total


def _write(darr, store, path):
    """issue 3's write_array when it exists, else dask's own to_zarr."""
    try:
        from swiftzarr_batch.jobs.write_array import write_array
    except ImportError:
        da.to_zarr(darr, store, component=path, overwrite=True, compute=True)
        return None
    return write_array(darr, store, path, retries=0)


def test_dask_write_of_1024_chunks_at_10_percent_faults_is_byte_identical(
    swift_server, proxy, container_name, dask_client
):
    darr = da.random.RandomState(7).random_sample((1024, 512), chunks=(32, 16))
    assert darr.npartitions == 1024
    expected = darr.compute()
    store = faulty_store(swift_server, proxy, container_name)
    before = _worker_counters(dask_client)
    proxy.configure(rate=0.10, kinds=ALL_FAULTS)
    _write(darr, store, "a")
    proxy.configure(rate=0.0)
    after = _worker_counters(dask_client)
    counts = proxy.counts
    injected = sum(counts.get(k, 0) for k in ALL_FAULTS)
    print("\nfault counts (write):", {k: v for k, v in sorted(counts.items())})
    assert counts["requests"] >= 1024 and 0.05 < injected / counts["requests"] < 0.15
    assert after["retries"] - before["retries"] >= injected // 2  # resets may be absorbed
    clean = clean_store(swift_server, container_name)
    chunks = [k for k in clean.walk("a") if "/c/" in k]
    assert len(chunks) == 1024
    np.testing.assert_array_equal(zarr.open_array(clean, path="a", mode="r")[:], expected)
    _verify_clean(clean)


def test_at_100_percent_faults_a_dask_write_fails_within_the_budget_and_claims_nothing(
    swift_server, proxy, container_name, dask_client
):
    from swiftzarr_batch.jobs.write_array import write_array

    budget = RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.2, budget=5)
    store = faulty_store(swift_server, proxy, container_name, retry=budget)
    darr = da.ones((64, 64), chunks=(16, 16))
    job = write_array(darr, store, "a", retries=0, compute=False)  # metadata now, data later
    proxy.configure(rate=1.0, kinds=ALL_FAULTS)
    started = time.monotonic()
    with pytest.raises(SwiftHTTPError, match="attempts"):
        dask_client.compute(job).result()
    assert time.monotonic() - started < 60
    proxy.configure(rate=0.0)
    from swiftzarr_batch.transfer.verify import verify_store

    report = verify_store(clean_store(swift_server, container_name), "a")
    assert not report.ok and report.missing_chunks > 0  # verify tells the job did not finish


def test_dask_read_of_1024_chunks_at_10_percent_faults_is_byte_identical(
    swift_server, proxy, container_name, dask_client
):
    clean = clean_store(swift_server, container_name)
    darr = da.random.RandomState(8).random_sample((1024, 512), chunks=(32, 16))
    expected = darr.compute()
    zarr.create_array(clean, name="a", shape=expected.shape, chunks=(32, 16), dtype="f8")[:] = (
        expected
    )
    store = faulty_store(swift_server, proxy, container_name, read_only=True)
    proxy.configure(rate=0.10, kinds=ALL_FAULTS)
    got = da.from_zarr(zarr.open_array(store, path="a", mode="r")).compute()
    proxy.configure(rate=0.0)
    counts = proxy.counts
    print("\nfault counts (read):", {k: v for k, v in sorted(counts.items())})
    assert counts.get("truncate", 0) >= 1 and counts.get("corrupt", 0) >= 1
    np.testing.assert_array_equal(got, expected)


def _verify_clean(store: SwiftStore, path: str = "") -> None:
    """verify_store: every chunk present, every object's content matching its MD5."""
    from swiftzarr_batch.transfer.verify import verify_store

    report = verify_store(store, path)
    assert report.ok and report.content_checked and report.objects_read == report.keys, (
        report.format()
    )


# -- copies of a hierarchy --------------------------------------------------------------------------
def _hierarchy(store: SwiftStore) -> dict[str, np.ndarray]:
    """A group with two arrays (400 chunks) and consolidated metadata, written cleanly."""
    rng = np.random.default_rng(5)
    arrays = {"x": rng.random((200, 300)), "sub/y": rng.integers(0, 1000, (100, 100))}
    root = zarr.open_group(store, mode="w", attributes={"title": "fault test"})
    root.create_array("x", shape=(200, 300), chunks=(10, 20), dtype="f8")[:] = arrays["x"]
    root.create_group("sub").create_array("y", shape=(100, 100), chunks=(10, 10), dtype="i8")[:] = (
        arrays["sub/y"]
    )
    zarr.consolidate_metadata(store)
    return arrays


def _same_hierarchy(store: SwiftStore, arrays: dict[str, np.ndarray]) -> None:
    root = zarr.open_group(store, mode="r")
    assert root.attrs["title"] == "fault test"
    for path, data in arrays.items():
        np.testing.assert_array_equal(root[path][:], data)


@pytest.mark.parametrize("server_side", [False, True], ids=["through-client", "server-side"])
def test_copy_of_a_hierarchy_at_10_percent_faults_is_byte_identical(
    swift_server, proxy, container_name, dask_client, server_side
):
    from swiftzarr_batch.transfer.copy import copy_store

    src_name, dst_name = f"{container_name}-src", f"{container_name}-dst"
    arrays = _hierarchy(clean_store(swift_server, src_name))
    token = V1Password(swift_server.auth_url, swift_server.user, swift_server.key).authenticate()
    source = faulty_store(swift_server, proxy, src_name, read_only=True, token=token)
    dest = faulty_store(swift_server, proxy, dst_name, token=token)  # same token: server-side OK
    proxy.configure(rate=0.10, kinds=ALL_FAULTS)
    summary = copy_store(source, dest, server_side=server_side)
    proxy.configure(rate=0.0)
    counts = proxy.counts
    print(
        f"\nfault counts (copy, {'server-side' if server_side else 'through client'}):",
        {k: v for k, v in sorted(counts.items())},
    )
    assert summary.keys_failed == 0 and summary.verified is True
    assert summary.keys_copied == summary.keys_total > 400
    assert summary.keys_server_side == (summary.keys_total if server_side else 0)
    assert sum(counts.get(k, 0) for k in ALL_FAULTS) > 20 and summary.retried > 0
    clean_dest = clean_store(swift_server, dst_name)
    _same_hierarchy(clean_dest, arrays)
    _verify_clean(clean_dest)


def test_an_outage_longer_than_the_budget_fails_the_copy_and_a_rerun_resumes(
    swift_server, proxy, container_name, dask_client
):
    from swiftzarr_batch.transfer.copy import CopyError, copy_store

    src_name, dst_name = f"{container_name}-src", f"{container_name}-dst"
    arrays = _hierarchy(clean_store(swift_server, src_name))
    short = RetryPolicy(attempts=3, base_delay=0.05, max_delay=0.2, budget=3)
    source = faulty_store(swift_server, proxy, src_name, read_only=True, retry=short)
    dest = faulty_store(swift_server, proxy, dst_name, retry=short)
    stop = threading.Event()

    def outage_after_some_puts() -> None:  # the Swift proxy goes down mid-copy, and stays down
        while not stop.is_set() and proxy.counts.get("forwarded PUT", 0) < 150:
            time.sleep(0.01)
        if not stop.is_set():
            swift_server.stop_proxy()

    watcher = threading.Thread(target=outage_after_some_puts)
    watcher.start()
    try:
        with pytest.raises(CopyError, match="Re-run to resume") as info:
            copy_store(source, dest, server_side=False, batch_size=50, concurrency=4)
    finally:
        stop.set()
        watcher.join()
        if not swift_server.running:
            swift_server.start_proxy()  # same port, same data: the outage is over
    first = info.value.summary
    assert first.keys_failed > 0 and 0 < first.keys_copied < first.keys_total
    assert proxy.counts["upstream-errors"] > 0  # the fault proxy saw the real outage
    clean_dest = clean_store(swift_server, dst_name)
    assert not any(k.endswith("zarr.json") for k in clean_dest.walk())  # no metadata yet
    before = proxy.counts.get("forwarded PUT", 0)
    second = copy_store(source, dest, server_side=False)
    puts = proxy.counts.get("forwarded PUT", 0) - before
    assert second.verified is True and second.keys_failed == 0
    assert second.keys_skipped >= first.keys_copied  # verified keys are not sent again
    assert second.keys_copied + second.keys_skipped == second.keys_total
    assert puts == second.keys_copied  # exactly the missing keys went over the wire
    _same_hierarchy(clean_dest, arrays)
    _verify_clean(clean_dest)


def test_swift_proxy_restart_in_the_middle_of_a_copy(swift_server, container_name, dask_client):
    from swiftzarr_batch.transfer.copy import copy_store

    src_name, dst_name = f"{container_name}-src", f"{container_name}-dst"
    patient = RetryPolicy(attempts=40, base_delay=0.1, max_delay=1.0, budget=120)
    arrays = _hierarchy(clean_store(swift_server, src_name))
    creds = dict(
        authurl=swift_server.auth_url,
        user=swift_server.user,
        key=swift_server.key,
        retry=patient,
        read_timeout=5,
    )
    source = SwiftStore(src_name, read_only=True, **creds)
    dest = SwiftStore(dst_name, **creds)
    source.listdir(), dest.listdir()  # token cached before the outage
    with proxy_outage(swift_server, after=0.3, downtime=2.0) as restarted:
        summary = copy_store(source, dest, server_side=False, batch_size=20, concurrency=2)
    assert restarted.is_set() and summary.verified is True and summary.keys_failed == 0
    assert summary.retried > 0
    _same_hierarchy(clean_store(swift_server, dst_name), arrays)
    _verify_clean(clean_store(swift_server, dst_name))


# -- the proxy restarts in the middle of a job ------------------------------------------------------
def test_swift_proxy_restart_in_the_middle_of_a_dask_write(
    swift_server, container_name, dask_client
):
    darr = da.random.RandomState(9).random_sample((256, 512), chunks=(16, 16))
    expected = darr.compute()
    patient = RetryPolicy(attempts=40, base_delay=0.1, max_delay=1.0, budget=120)
    store = SwiftStore(
        container_name,
        authurl=swift_server.auth_url,
        user=swift_server.user,
        key=swift_server.key,
        retry=patient,
        read_timeout=5,
    )
    zarr.create_group(store)  # container exists, token cached before the outage
    before = _worker_counters(dask_client)
    with proxy_outage(swift_server, after=1.0, downtime=2.0) as restarted:
        _write(darr.map_blocks(_slowly, dtype=darr.dtype), store, "a")
    assert restarted.is_set()
    assert _worker_counters(dask_client)["retries"] > before["retries"]
    clean = clean_store(swift_server, container_name)
    np.testing.assert_array_equal(zarr.open_array(clean, path="a", mode="r")[:], expected)
    _verify_clean(clean)


@contextlib.contextmanager
def proxy_outage(server, *, after: float, downtime: float):
    """Restart the real Swift proxy ``after`` seconds into the block, down for ``downtime``;
    yields an Event set once it is back (the block's job must have survived it)."""
    restarted = threading.Event()

    def outage() -> None:
        time.sleep(after)
        server.restart_proxy(downtime=downtime)
        restarted.set()

    thread = threading.Thread(target=outage)
    thread.start()
    try:
        yield restarted
    finally:
        thread.join()


def _slowly(block):
    time.sleep(0.05)  # spread 512 blocks over a few seconds, so the outage hits mid-job
    return block
