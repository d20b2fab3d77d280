"""The shard-index cache on SwiftStore's read path (store/read_cache.py), on the real Swift.

Requests are counted with the session's own counters (``store.counters["requests"]``), so what
is asserted is what went over the wire.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import zarr
from zarr.abc.store import RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import cpu, default_buffer_prototype

from swiftzarr_batch import ConfigurationError, SwiftStore
from swiftzarr_batch.store.read_cache import DEFAULT_CACHE_BYTES, StaleReadError

PROTO = default_buffer_prototype()
SHAPE, CHUNKS, SHARDS = (64, 64), (8, 8), (32, 32)  # 4 shards of 16 chunks


def _store(swift_server, container, **kw) -> SwiftStore:
    return SwiftStore(
        container,
        "ds",
        authurl=swift_server.auth_url,
        user=swift_server.user,
        key=swift_server.key,
        **kw,
    )


def _write(store: SwiftStore, values: np.ndarray) -> None:
    """A sharded zarr 3 array, zstd: the index's offsets depend on the values."""
    arr = zarr.create_array(
        store,
        name="a",
        shape=SHAPE,
        chunks=CHUNKS,
        shards=SHARDS,
        dtype="f8",
        compressors=zarr.codecs.ZstdCodec(level=1),
        overwrite=True,
    )
    arr[:] = values


def _chunk(arr: zarr.Array, i: int, j: int) -> np.ndarray:
    return np.asarray(arr[i * 8 : (i + 1) * 8, j * 8 : (j + 1) * 8])


# two chunks in each of the 4 shards, one chunk per read
PICKS = [(0, 0), (1, 2), (0, 5), (3, 7), (5, 1), (6, 3), (4, 4), (7, 6)]


def _requests(store: SwiftStore) -> int:
    return store.counters["requests"]


def test_sharded_reads_pay_one_index_get_per_shard(swift_server, container_name):
    rng = np.random.default_rng(1)
    values = rng.random(SHAPE)
    _write(_store(swift_server, container_name), values)
    counted = {}
    for option in (None, False):  # read-only default (on), then off
        ro = _store(swift_server, container_name, read_only=True, read_cache=option)
        arr = zarr.open_array(ro, path="a", mode="r")
        before = _requests(ro)
        for _ in range(2):
            for i, j in PICKS:
                np.testing.assert_array_equal(
                    _chunk(arr, i, j), values[i * 8 : (i + 1) * 8, j * 8 : (j + 1) * 8]
                )
        counted[option] = _requests(ro) - before, ro.read_cache.stats()
    cached, stats = counted[None]
    uncached, off_stats = counted[False]
    assert uncached == 2 * 2 * len(PICKS)  # index + chunk, every read
    assert cached == 4 + 2 * len(PICKS)  # one index GET per shard, then the chunks
    assert stats["misses"] == 4 and stats["hits"] == 2 * len(PICKS) - 4
    assert stats["entries"] == 4 and 0 < stats["bytes"] <= DEFAULT_CACHE_BYTES
    assert off_stats["entries"] == 0 and off_stats["hits"] == off_stats["misses"] == 0


def test_writable_store_default_off_and_bad_option(swift_server, container_name):
    rw = _store(swift_server, container_name)
    asyncio_run(rw.set("k", cpu.Buffer.from_bytes(b"0123456789")))
    before = _requests(rw)
    for _ in range(2):
        got = asyncio_run(rw.get("k", PROTO, SuffixByteRequest(4)))
        assert got.to_bytes() == b"6789"
    assert _requests(rw) - before == 2 and rw.read_cache.stats()["entries"] == 0
    for bad in (-1, 1.5, "yes"):
        with pytest.raises(ConfigurationError, match="read_cache"):
            _store(swift_server, container_name, read_cache=bad)


def test_rewrite_through_the_same_store_is_never_served_stale(swift_server, container_name):
    rng = np.random.default_rng(2)
    first, second = np.ones(SHAPE), rng.random(SHAPE)  # compressed sizes differ a lot
    rw = _store(swift_server, container_name, read_cache=True)
    _write(rw, first)
    # zarr's mode="r" makes a read-only copy: it caches, and shares the cache with ``rw``
    reader = zarr.open_array(rw, path="a", mode="r")
    direct = zarr.open_array(rw, path="a", mode="r+")
    for i, j in PICKS:
        np.testing.assert_array_equal(_chunk(reader, i, j), 1.0)
        np.testing.assert_array_equal(_chunk(direct, i, j), 1.0)
    assert rw.read_cache.stats()["entries"] == 4
    direct[:] = second  # through rw: every shard rewritten, its entry dropped
    assert rw.read_cache.stats()["entries"] == 0
    for i, j in PICKS:
        want = second[i * 8 : (i + 1) * 8, j * 8 : (j + 1) * 8]
        np.testing.assert_array_equal(_chunk(reader, i, j), want)
        np.testing.assert_array_equal(_chunk(direct, i, j), want)
    assert rw.read_cache.stats()["stale"] == 0  # nothing stale was even looked at

    # store level: set, delete and delete_dir drop the entry once they have finished
    key, suffix = "a/c/0/0", SuffixByteRequest(20)
    for write in ("set", "delete", "delete_dir"):
        asyncio_run(rw.set(key, cpu.Buffer.from_bytes(b"x" * 40 + write.encode())))
        assert asyncio_run(rw.get(key, PROTO, suffix)).to_bytes().endswith(write.encode())
        if write == "set":
            asyncio_run(rw.set(key, cpu.Buffer.from_bytes(b"y" * 40)))
            assert asyncio_run(rw.get(key, PROTO, suffix)).to_bytes() == b"y" * 20
        elif write == "delete":
            asyncio_run(rw.delete(key))
            assert asyncio_run(rw.get(key, PROTO, suffix)) is None
        else:
            asyncio_run(rw.delete_dir("a"))
            assert asyncio_run(rw.get(key, PROTO, suffix)) is None


def test_read_only_store_and_a_rewrite_by_someone_else(swift_server, container_name):
    rng = np.random.default_rng(3)
    first, second = np.ones(SHAPE), rng.random(SHAPE)
    writer = _store(swift_server, container_name)
    _write(writer, first)
    old = zarr.open_array(_store(swift_server, container_name, read_only=True), path="a", mode="r")
    np.testing.assert_array_equal(_chunk(old, 0, 0), 1.0)  # shard (0, 0)'s index cached
    _write(writer, second)  # another store: ``old`` cannot know

    new = zarr.open_array(_store(swift_server, container_name, read_only=True), path="a", mode="r")
    np.testing.assert_array_equal(_chunk(new, 1, 1), second[8:16, 8:16])

    # the old store's cached index is caught by the chunk read's ETag, not served
    with pytest.raises(BaseException) as caught:
        _chunk(old, 1, 1)
    assert _raised(caught.value, StaleReadError), repr(caught.value)
    assert old.store.read_cache.stats()["stale"] == 1
    np.testing.assert_array_equal(_chunk(old, 1, 1), second[8:16, 8:16])  # index re-read


def test_byte_cap_holds_and_lru_order(swift_server, container_name):
    cap = 4096  # entries of at most cap // 4 bytes
    rw = _store(swift_server, container_name)
    for n in range(10):
        asyncio_run(rw.set(f"o{n}", cpu.Buffer.from_bytes(bytes([n]) * 2000)))
    ro = _store(swift_server, container_name, read_only=True, read_cache=cap)
    for n in range(10):
        got = asyncio_run(ro.get(f"o{n}", PROTO, SuffixByteRequest(1000)))
        assert got.to_bytes() == bytes([n]) * 1000
        assert ro.read_cache.stats()["bytes"] <= cap
    stats = ro.read_cache.stats()
    assert stats["entries"] == 4 and stats["evictions"] == 6 and stats["bytes"] == 4000
    before = _requests(ro)
    asyncio_run(ro.get("o9", PROTO, SuffixByteRequest(1000)))  # the newest: kept
    assert _requests(ro) == before
    asyncio_run(ro.get("o0", PROTO, SuffixByteRequest(1000)))  # the oldest: evicted
    assert _requests(ro) == before + 1
    # too big for one entry, and what is not a suffix read: never cached
    asyncio_run(ro.get("o1", PROTO, SuffixByteRequest(1500)))
    asyncio_run(ro.get("o1", PROTO, RangeByteRequest(0, 100)))
    asyncio_run(ro.get("o1", PROTO))
    assert ro.read_cache.stats()["bytes"] == 4000


def test_pickling_drops_the_cache_and_keeps_the_option(swift_server, container_name):
    sentinel = b"SHARD-INDEX-SENTINEL" * 4
    rw = _store(swift_server, container_name)
    asyncio_run(rw.set("k", cpu.Buffer.from_bytes(b"head" + sentinel)))
    ro = _store(swift_server, container_name, read_only=True, read_cache=1 << 20)
    assert asyncio_run(ro.get("k", PROTO, SuffixByteRequest(len(sentinel)))).to_bytes() == sentinel
    assert ro.read_cache.stats()["entries"] == 1
    data = pickle.dumps(ro)
    assert b"SENTINEL" not in data
    clone = pickle.loads(data)
    assert clone.read_cache is not ro.read_cache and clone.read_cache.stats()["entries"] == 0
    before = _requests(clone)
    for _ in range(2):
        got = asyncio_run(clone.get("k", PROTO, SuffixByteRequest(len(sentinel))))
        assert got.to_bytes() == sentinel
    assert _requests(clone) == before + 1  # the option travelled: the clone caches too
    off = pickle.loads(
        pickle.dumps(_store(swift_server, container_name, read_only=True, read_cache=False))
    )
    asyncio_run(off.get("k", PROTO, SuffixByteRequest(4)))
    assert off.read_cache.stats()["entries"] == 0


def _raised(exc: BaseException, kind: type[BaseException]) -> bool:
    """``kind`` itself, or inside the ExceptionGroup zarr's concurrent range reads raise."""
    if isinstance(exc, BaseExceptionGroup):
        return any(_raised(e, kind) for e in exc.exceptions)
    return isinstance(exc, kind)


def asyncio_run(coro):
    """zarr's own loop, as zarr's sync API uses it (the store's session lives there)."""
    from zarr.core.sync import sync

    return sync(coro)
