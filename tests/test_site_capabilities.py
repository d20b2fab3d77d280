"""What a cluster offers, on real local Swifts: a site without the bulk and SLO middlewares and
with a second storage policy (one extra ``LocalSwift``, started once for this module), and object
expiry (``delete_after``) on the shared one."""

from __future__ import annotations

import asyncio
import logging
import pickle
import time

import numpy as np
import pytest
import zarr
from swiftclient.client import ClientException, Connection
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from swiftzarr_batch import ConfigurationError, SwiftStore
from swiftzarr_batch.swift import capabilities, large_objects
from swiftzarr_batch.testing.swift_server import LocalSwift
from swiftzarr_batch.transfer.copy import copy_store
from swiftzarr_batch.workflows.common import location_keys, open_location

PROTO = default_buffer_prototype()
LIMIT = 2 * 1024 * 1024  # max_file_size of the plain site: above SMALL_ENOUGH, so it is looked up


@pytest.fixture(scope="module")
def plain_site():
    """A Swift as some sites run it: no bulk middleware, no SLO, two storage policies."""
    capabilities.clear_cache()
    with LocalSwift(without={"bulk", "slo"}, second_policy="cold", max_file_size=LIMIT) as s:
        yield s
    capabilities.clear_cache()  # its port may serve another cluster later


@pytest.fixture
def plain_conn(plain_site):
    conn = Connection(authurl=plain_site.auth_url, user=plain_site.user, key=plain_site.key)
    yield conn
    conn.close()


def _store(server, container, prefix="", **kw) -> SwiftStore:
    return SwiftStore(
        container, prefix, authurl=server.auth_url, user=server.user, key=server.key, **kw
    )


def _names(conn, container, prefix=""):
    try:
        return [
            e["name"] for e in conn.get_container(container, prefix=prefix, full_listing=True)[1]
        ]
    except ClientException as exc:
        if exc.http_status == 404:
            return []
        raise


def _since(server, mark: int) -> list[str]:
    return server.access_log_lines()[mark:]


def _write_dataset(store: zarr.abc.store.Store) -> list[str]:
    root = zarr.group(store, overwrite=True)
    root.create_array("a", shape=(8, 8), chunks=(2, 4), dtype="i2")[:] = np.ones((8, 8))
    root.attrs["made"] = "here"

    async def keys() -> list[str]:
        return sorted([k async for k in store.list()])

    return sync(keys())


# -- no bulk middleware, no SLO -------------------------------------------------------------------
def test_without_bulk_deletes_are_parallel_single_deletes(
    plain_site, plain_conn, container_name, monkeypatch, cli, capsys
):
    assert "bulk_delete" not in sync(capabilities.cluster_info(_store(plain_site, "x").session))
    store = _store(plain_site, container_name, "ds")
    keys = _write_dataset(store)
    plain_conn.put_object(container_name, "ds/v/", b"", content_type="application/directory")
    container = sync(store.swift_container())
    mark = len(plain_site.access_log_lines())
    names = [f"ds/{k}" for k in keys if k.startswith("a/c/")]
    assert sync(container.bulk_delete([*names, "ds/never-there"])) == len(names)  # 404 uncounted
    lines = _since(plain_site, mark)
    assert not any("bulk-delete" in ln for ln in lines)
    assert sum(" DELETE " in ln for ln in lines) == len(names) + 1

    _write_dataset(store)  # zarr's overwrite=True (delete_dir) works here too
    sync(store.clear())
    assert _names(plain_conn, container_name) == []

    keys = _write_dataset(store)
    for name, value in plain_site.env.items():
        monkeypatch.setenv(name, value)
    assert cli("rm", "-y", f"swift://{container_name}/ds") == 0
    assert f"deleted {len(keys)} objects" in capsys.readouterr().out
    assert _names(plain_conn, container_name) == []


def test_without_slo_a_value_above_max_file_size_fails_before_any_byte(
    plain_site, plain_conn, container_name
):
    store = _store(plain_site, container_name)
    sync(store.set("small", PROTO.buffer.from_bytes(b"x" * (LIMIT - 10))))  # fits: one PUT
    mark, sent = len(plain_site.access_log_lines()), store.counters["bytes_sent"]
    with pytest.raises(ConfigurationError, match=r"max_file_size \(2097152\).*no SLO"):
        sync(store.set("big", PROTO.buffer.from_bytes(b"y" * (LIMIT + 1))))
    assert store.counters["bytes_sent"] == sent
    assert not any(" PUT " in ln for ln in _since(plain_site, mark))
    assert _names(plain_conn, container_name) == ["small"]
    assert _names(plain_conn, f"{container_name}_segments") == []


def test_info_is_read_once_per_cluster(plain_site, container_name):
    capabilities.clear_cache()
    mark = len(plain_site.access_log_lines())
    users = {"test:tester": "testing", "test2:tester2": "testing2"}
    for user, key in users.items():  # two accounts, two tokens, two sessions: one cluster
        store = SwiftStore(container_name, authurl=plain_site.auth_url, user=user, key=key)
        sync(store.set("k", PROTO.buffer.from_bytes(b"v")))
        sync(store.delete_dir(""))
    assert sum(" GET /info " in ln for ln in _since(plain_site, mark)) == 1


# -- storage policies -----------------------------------------------------------------------------
def test_a_new_container_gets_the_storage_policy(plain_site, plain_conn, container_name):
    store = _store(plain_site, container_name, storage_policy="COLD")  # names are case-blind
    sync(store.set("k", PROTO.buffer.from_bytes(b"v")))
    assert plain_conn.head_container(container_name)["x-storage-policy"] == "cold"
    clone = pickle.loads(pickle.dumps(store))  # dask workers create containers the same way
    sync(clone.set("k2", PROTO.buffer.from_bytes(b"v")))
    other = clone.with_prefix("p")  # and so do stores derived from it
    sync(other.set("k3", PROTO.buffer.from_bytes(b"v")))
    assert plain_conn.head_container(container_name)["x-storage-policy"] == "cold"
    plain = _store(plain_site, f"{container_name}-default")
    sync(plain.set("k", PROTO.buffer.from_bytes(b"v")))
    assert plain_conn.head_container(plain.container)["x-storage-policy"] == "Policy-0"


def test_an_unknown_policy_names_the_offered_ones(plain_site, plain_conn, container_name):
    store = _store(plain_site, container_name, storage_policy="gold")
    with pytest.raises(ConfigurationError, match=r"'gold'.*Policy-0, cold"):
        zarr.group(store)
    assert _names(plain_conn, container_name) == []
    with pytest.raises(ClientException):
        plain_conn.head_container(container_name)  # never created


def test_an_existing_container_keeps_its_policy_with_one_warning(
    plain_site, plain_conn, container_name, caplog
):
    plain_conn.put_container(container_name)  # the default policy
    caplog.set_level(logging.WARNING, "swiftzarr_batch")
    store = _store(plain_site, container_name, storage_policy="cold")
    again = _store(plain_site, container_name, storage_policy="cold")
    for each in (store, pickle.loads(pickle.dumps(store)), again):  # one process: one warning
        zarr.group(each, overwrite=True)
    warned = [r for r in caplog.records if "storage policy" in r.getMessage()]
    assert len(warned) == 1 and "Policy-0, not cold" in warned[0].getMessage()
    assert plain_conn.head_container(container_name)["x-storage-policy"] == "Policy-0"
    assert _names(plain_conn, container_name) == ["zarr.json"]


def test_cli_copy_and_workflow_targets_take_policy_and_expiry(
    plain_site, plain_conn, container_name, monkeypatch, cli, tmp_path
):
    local = tmp_path / "src.zarr"
    keys = _write_dataset(zarr.storage.LocalStore(local))
    for name, value in plain_site.env.items():
        monkeypatch.setenv(name, value)
    url = f"swift://{container_name}/ds"
    assert cli("copy", str(local), url, "--storage-policy", "cold", "--delete-after", "600") == 0
    assert plain_conn.head_container(container_name)["x-storage-policy"] == "cold"
    for key in keys:
        assert "x-delete-at" in plain_conn.head_object(container_name, f"ds/{key}")

    section = {k: default for k, (_, default) in location_keys().items()}
    target = open_location({**section, "url": f"{url}2", "storage_policy": "cold"})
    assert isinstance(target, SwiftStore)
    zarr.group(target)
    assert plain_conn.head_container(container_name)["x-storage-policy"] == "cold"
    local_target = {**section, "url": str(tmp_path / "t"), "delete_after": 60}
    with pytest.raises(ConfigurationError, match="only for swift://"):
        open_location(local_target)


# -- expiry ---------------------------------------------------------------------------------------
def test_delete_after_goes_on_every_object_written(swift_server, swift_conn, container_name):
    store = _store(swift_server, container_name, "ds", delete_after=3600)
    started = time.time()
    keys = _write_dataset(pickle.loads(pickle.dumps(store)))  # what dask workers write
    container = sync(store.swift_container())
    limit = sync(large_objects.limits(container.session))
    body = bytes(range(256)) * 12 * 1024  # 3 MiB as three 1 MiB segments and a manifest
    sync(large_objects.put_large(container, "ds/big", body, limit, segment_size=1024 * 1024))
    copied = _store(swift_server, container_name, "copy", delete_after=7200)
    assert copy_store(store, copied).keys_copied == len(keys) + 1  # server-side copies

    def delete_at(container: str, name: str) -> float:
        return float(swift_conn.head_object(container, name)["x-delete-at"])

    for key in [*keys, "big"]:
        assert started + 3590 < delete_at(container_name, f"ds/{key}") < time.time() + 3610
        assert started + 7190 < delete_at(container_name, f"copy/{key}") < time.time() + 7210
    segments = _names(swift_conn, f"{container_name}_segments")
    assert len(segments) == 6  # the copy's segments are copies too (segment by segment)
    for name in segments:
        expiry = 7210 if name.startswith("copy/") else 3610
        assert expiry - 20 < delete_at(f"{container_name}_segments", name) - started < expiry


def test_expired_objects_are_no_longer_served(swift_server, swift_conn, container_name):
    store = _store(swift_server, container_name, delete_after=2)
    sync(store.set("scratch", PROTO.buffer.from_bytes(b"gone soon")))
    assert sync(store.get("scratch", PROTO)).to_bytes() == b"gone soon"
    expires = float(swift_conn.head_object(container_name, "scratch")["x-delete-at"])
    asyncio.run(asyncio.sleep(max(0.0, expires - time.time()) + 1.1))
    assert sync(store.get("scratch", PROTO)) is None  # the proxy answers 404 by itself
    assert not sync(store.exists("scratch"))
    assert list(store.walk()) == ["scratch"]  # still listed: no object-expirer runs here
