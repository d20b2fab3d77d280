"""Sharing a dataset with people who have no account: public read on/off, signed links (temp
URLs) opened with no credentials, their expiry, and a dask read by link. All against the real
local Swift (tempurl middleware with SHA-256/512, TempAuth ACLs)."""

from __future__ import annotations

import json
import logging
import os
import pickle
import subprocess
import sys
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import xarray as xr
from swiftclient.client import Connection

from swiftzarr_batch import (
    ConfigurationError,
    ListingNotAllowedError,
    PermissionDeniedError,
    SwiftStore,
    TokenExpiredError,
    share_public,
    temp_url,
    unshare_public,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore::zarr.errors.ZarrUserWarning"),
    pytest.mark.filterwarnings("ignore::RuntimeWarning"),  # xarray: "failed to open consolidated"
    pytest.mark.timeout(300),
]


def _dataset() -> xr.Dataset:
    t = np.arange(6)
    return xr.Dataset(
        {
            "temp": (("t", "x"), np.arange(24, dtype="f4").reshape(6, 4)),
            "sparse": (("t", "x"), np.zeros((6, 4), dtype="i2")),  # all fill: no chunk stored
        },
        coords={"t": t, "x": np.arange(4)},
    ).chunk({"t": 2})


def _owner(swift_server, container: str, prefix: str = "", user: str | None = None) -> SwiftStore:
    user = user or swift_server.user
    return SwiftStore(
        container,
        prefix,
        authurl=swift_server.auth_url,
        user=user,
        key=swift_server.users[user],
    )


def _write(store: SwiftStore, zarr_format: int, consolidated: bool = True) -> xr.Dataset:
    ds = _dataset()
    ds.to_zarr(store, mode="w", zarr_format=zarr_format, consolidated=consolidated)
    return ds


def _read_acl(conn: Connection, container: str) -> str:
    return conn.head_container(container).get("x-container-read", "")


def test_public_on_and_off_keeps_other_acl_entries(
    swift_server, swift_conn, container_name, swift_env, capsys, cli
):
    ds = _write(_owner(swift_server, container_name, "ds"), zarr_format=3)
    swift_conn.put_object(container_name, "notes/readme.txt", b"private")
    swift_conn.post_container(container_name, {"X-Container-Read": "test:reader"})
    store = _owner(swift_server, container_name, "ds")

    with pytest.raises(ConfigurationError, match=r"per container.*notes/"):
        share_public(store)  # another prefix in the container: refused, nothing changed
    assert _read_acl(swift_conn, container_name) == "test:reader"
    with pytest.raises(PermissionDeniedError):  # a non-admin user may not set ACLs
        share_public(
            _owner(swift_server, container_name, "ds", "test:reader"), whole_container=True
        )

    url = share_public(store, whole_container=True)
    assert _read_acl(swift_conn, container_name) == "test:reader,.r:*,.rlistings"
    assert "?" not in url and url.endswith(f"/{container_name}/ds/")
    anon = SwiftStore.from_url(url)
    assert anon.read_only and not anon.signed_link
    xr.testing.assert_identical(xr.open_zarr(anon).load(), ds.compute())
    share_public(store, whole_container=True)  # idempotent
    assert _read_acl(swift_conn, container_name) == "test:reader,.r:*,.rlistings"

    assert cli("share", "--revoke", f"swift://{container_name}") == 0  # the CLI takes it back
    assert _read_acl(swift_conn, container_name) == "test:reader"
    with pytest.raises(PermissionDeniedError, match="anonymous"):
        xr.open_zarr(SwiftStore.from_url(url)).load()

    # ... and gives it again, without listings (the dataset is consolidated)
    assert (
        cli(
            "share",
            "--public",
            "--no-listings",
            "--whole-container",
            f"swift://{container_name}/ds",
        )
        == 0
    )
    assert capsys.readouterr().out.strip() == url
    assert _read_acl(swift_conn, container_name) == "test:reader,.r:*"
    xr.testing.assert_identical(xr.open_zarr(SwiftStore.from_url(url)).load(), ds.compute())
    assert unshare_public(store) == ["test:reader"]

    # a signed link from the command line: one line on stdout; the key only with --create-key
    assert cli("share", f"swift://{container_name}/ds", "--expires", "1h") == 1
    assert cli("share", f"swift://{container_name}/ds", "--expires", "1h", "--create-key") == 0
    link = capsys.readouterr().out.strip()
    assert "temp_url_sig=" in link and "temp_url_prefix=ds/" in link
    xr.testing.assert_identical(xr.open_zarr(SwiftStore.from_url(link)).load(), ds.compute())


READER = """
import json, sys, warnings
warnings.simplefilter("ignore")
import xarray as xr
from swiftzarr_batch import SwiftStore
out = {}
for url in sys.argv[1:]:
    ds = xr.open_zarr(SwiftStore.from_url(url)).load()
    out[url] = {name: ds[name].values.tolist() for name in ("temp", "sparse")}
print(json.dumps(out))
"""


def test_signed_links_open_consolidated_datasets_without_credentials(
    swift_server, swift_conn, container_name, caplog
):
    caplog.set_level(logging.DEBUG, logger="swiftzarr_batch")
    owner = _owner(swift_server, container_name)
    ds = _write(owner.with_prefix("v2"), zarr_format=2)
    _write(owner.with_prefix("v3"), zarr_format=3)
    _write(owner.with_prefix("raw"), zarr_format=3, consolidated=False)
    with pytest.raises(ConfigurationError, match="Temp-URL-Key"):  # no key, none made
        temp_url(owner.with_prefix("v2"))
    links = [
        temp_url(owner.with_prefix("v2"), expires="1h", create_key=True),
        temp_url(owner.with_prefix("v3"), expires=3600, digest="sha512"),
    ]
    key = swift_conn.head_container(container_name)["x-container-meta-temp-url-key"]
    assert key
    _, names = swift_conn.get_container(container_name, prefix="v3/sparse/c/")
    assert names == []  # all fill value: no chunk stored, so the link reads 404s

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ST_", "OS_"))}
    done = subprocess.run(
        [sys.executable, "-c", READER, *links],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    for got in json.loads(done.stdout).values():
        assert got["temp"] == ds["temp"].values.tolist()
        assert got["sparse"] == np.zeros((6, 4), dtype="i2").tolist()  # 404: fill value

    signed = SwiftStore.from_url(links[1])
    assert signed.read_only and signed.signed_link
    copy = pickle.loads(pickle.dumps(signed))
    assert copy.signed_link  # the link travels with the pickle
    np.testing.assert_array_equal(xr.open_zarr(copy)["temp"].values, ds["temp"].values)
    with pytest.raises(ListingNotAllowedError, match="cannot list.*consolidate"):
        signed.listdir()
    raw = temp_url(owner.with_prefix("raw"), expires="1h")  # warns: not consolidated
    with pytest.raises(ListingNotAllowedError, match="swiftzarr consolidate"):
        xr.open_zarr(SwiftStore.from_url(raw)).load()

    # a key outside the signed prefix: refused by Swift (401), never "missing"
    outside = signed.with_prefix("v2")
    with pytest.raises(PermissionDeniedError, match="outside the prefix"):
        xr.open_zarr(outside).load()
    with pytest.raises(PermissionDeniedError, match="outside the prefix"):
        SwiftStore.from_url(links[1].replace("/v3/?", "/v2/?"))
    object_url = links[1].replace("/v3/?", "/raw/zarr.json?")
    with pytest.raises(urllib.error.HTTPError) as http:
        urllib.request.urlopen(object_url, timeout=10)
    assert http.value.code == 401

    # the key is nowhere: not in links, reprs, errors or logs
    shown = [*links, raw, repr(signed), str(signed), repr(copy), caplog.text]
    assert not [s for s in shown if key in s]
    assert "temp_url_sig" not in repr(signed) + caplog.text


def test_an_expired_link_fails_clearly(swift_server, container_name):
    owner = _owner(swift_server, container_name, "ds")
    ds = _write(owner, zarr_format=3)
    link = temp_url(owner, expires="2s", create_key=True)
    store = SwiftStore.from_url(link)
    xr.testing.assert_identical(xr.open_zarr(store).load(), ds.compute())
    time.sleep(max(0.0, float(link.split("temp_url_expires=")[1].split("&")[0]) - time.time()) + 1)
    with pytest.raises(TokenExpiredError, match=r"expired at \d{4}-\d\d-\d\dT"):
        xr.open_zarr(SwiftStore.from_url(link)).load()
    with pytest.raises(TokenExpiredError, match="expired at"):
        xr.open_zarr(store).load()  # the store opened before expiry: no fill values either


def test_a_dask_read_by_link_on_a_local_cluster(swift_server, container_name):
    distributed = pytest.importorskip("distributed")
    owner = _owner(swift_server, container_name, "ds")
    ds = _write(owner, zarr_format=2)
    link = temp_url(owner, expires="10m", create_key=True)
    with (
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=2,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        lazy = xr.open_zarr(SwiftStore.from_url(link))
        assert lazy["temp"].chunks is not None
        got = client.compute(lazy["temp"].sum()).result()
        assert float(got) == float(ds["temp"].sum())


def test_public_alone_then_revoked_leaves_no_acl(
    swift_server, swift_conn, container_name, swift_env, cli, capsys
):
    """The common case: public read and nothing else, then revoked. The server must hold no
    read ACL afterwards (read with python-swiftclient) and anonymous reads must fail at once,
    through the library and through the CLI."""
    ds = _write(_owner(swift_server, container_name, "ds"), zarr_format=3)
    store = _owner(swift_server, container_name, "ds")
    url = share_public(store)
    assert _read_acl(swift_conn, container_name) == ".r:*,.rlistings"
    xr.testing.assert_identical(xr.open_zarr(SwiftStore.from_url(url)).load(), ds.compute())

    assert unshare_public(store) == []
    assert _read_acl(swift_conn, container_name) == ""
    with pytest.raises(PermissionDeniedError):
        xr.open_zarr(SwiftStore.from_url(url)).load()

    assert cli("share", "--public", f"swift://{container_name}/ds") == 0
    assert _read_acl(swift_conn, container_name) == ".r:*,.rlistings"
    capsys.readouterr()
    assert cli("share", "--revoke", f"swift://{container_name}") == 0
    assert "read ACL at the server now ''" in capsys.readouterr().err
    assert _read_acl(swift_conn, container_name) == ""
    with pytest.raises(PermissionDeniedError):
        xr.open_zarr(SwiftStore.from_url(url)).load()


def test_revoke_keeps_referrer_entries_and_their_listings(swift_server, swift_conn, container_name):
    """A referrer entry still needs ``.rlistings``: revoking public read keeps both."""
    _write(_owner(swift_server, container_name, "ds"), zarr_format=2)
    swift_conn.post_container(container_name, {"X-Container-Read": ".r:.example.com,.rlistings"})
    store = _owner(swift_server, container_name, "ds")
    share_public(store)
    assert _read_acl(swift_conn, container_name) == ".r:.example.com,.rlistings,.r:*"
    assert unshare_public(store) == [".r:.example.com", ".rlistings"]
    assert _read_acl(swift_conn, container_name) == ".r:.example.com,.rlistings"


def test_a_change_the_server_did_not_make_raises(
    swift_server, swift_conn, container_name, cli, capsys, monkeypatch
):
    """A server (here a fault proxy that drops the ACL headers) that answers 204 to the POST
    but keeps the ACL: the revoke raises, naming the container and both values, and the CLI
    exits 1 instead of printing "removed"."""
    from swiftzarr_batch import ChangeNotAppliedError
    from swiftzarr_batch.testing.faultproxy import FaultProxy

    _write(_owner(swift_server, container_name, "ds"), zarr_format=3)
    swift_conn.post_container(container_name, {"X-Container-Read": ".r:*,.rlistings"})
    dropped = ("X-Container-Read", "X-Remove-Container-Read")
    with FaultProxy(swift_server.proxy_url, drop_request_headers=dropped) as proxy:
        store = SwiftStore(
            container_name,
            "ds",
            preauthurl=proxy.via(swift_conn.get_auth()[0]),
            preauthtoken=swift_conn.get_auth()[1],
        )
        with pytest.raises(ChangeNotAppliedError) as caught:
            unshare_public(store)
        assert container_name in str(caught.value)
        assert (caught.value.wanted, caught.value.held) == ("", ".r:*,.rlistings")
        monkeypatch.setenv("OS_STORAGE_URL", proxy.via(swift_conn.get_auth()[0]))
        monkeypatch.setenv("OS_AUTH_TOKEN", swift_conn.get_auth()[1])
        assert cli("share", "--revoke", f"swift://{container_name}") == 1
        err = capsys.readouterr().err
        assert "was not changed by the server" in err and "removed" not in err
    assert _read_acl(swift_conn, container_name) == ".r:*,.rlistings"  # still public: said so


def test_a_new_temp_url_key_the_server_did_not_keep_raises(
    swift_server, swift_conn, container_name
):
    """``create_key=True`` reads the new key back: a server that drops it is an error that
    names the container and shows no key, not a link that can never work."""
    from swiftzarr_batch import ChangeNotAppliedError
    from swiftzarr_batch.testing.faultproxy import FaultProxy

    _write(_owner(swift_server, container_name, "ds"), zarr_format=3)
    with FaultProxy(
        swift_server.proxy_url, drop_request_headers=("X-Container-Meta-Temp-URL-Key",)
    ) as proxy:
        url, token = swift_conn.get_auth()
        store = SwiftStore(container_name, "ds", preauthurl=proxy.via(url), preauthtoken=token)
        with pytest.raises(ChangeNotAppliedError, match=container_name) as caught:
            temp_url(store, expires="1h", create_key=True)
        assert (caught.value.wanted, caught.value.held) == ("a new key", "no key")
    assert "x-container-meta-temp-url-key" not in swift_conn.head_container(container_name)
