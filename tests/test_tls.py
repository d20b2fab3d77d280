"""A site's own CA: the local Swift behind TLS (FaultProxy with a certificate of a CA that the
tests make with ``trustme``), trusted each way it can be given, by auth, data and ``store.conn``
alike (``swift.tls``); without it a clear, typed error that is not retried; ``--insecure`` and
``insecure = true`` work and warn once per host."""

from __future__ import annotations

import json
import logging
import os
import pickle
import ssl
import subprocess
import sys

import numpy as np
import pytest
import zarr

from swiftzarr_batch import AuthenticationError, ConfigurationError, SwiftHTTPError, SwiftStore
from swiftzarr_batch.auth import V1Password, auth_calls
from swiftzarr_batch.auth.keystone import load_cloud
from swiftzarr_batch.swift.tls import Trust, resolve_trust
from swiftzarr_batch.testing.faultproxy import FaultProxy
from swiftzarr_batch.workflows.mirror import run_from_config as mirror

trustme = pytest.importorskip("trustme")

TRUST_VARS = ("OS_CACERT", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")
OFF = "TLS certificate verification is OFF"


@pytest.fixture(scope="module")
def site_ca(tmp_path_factory):
    """A CA of our own, its bundle on disk, and a server context with a certificate it signed."""
    ca = trustme.CA()
    bundle = tmp_path_factory.mktemp("ca") / "site-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    return bundle, server


@pytest.fixture(autouse=True)
def _no_ambient_trust(monkeypatch):
    """This machine sets REQUESTS_CA_BUNDLE, SSL_CERT_FILE ... to the system bundle: without
    our CA in it, they are what "not given" means."""
    for name in TRUST_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def https(swift_server, site_ca):
    with FaultProxy(swift_server.proxy_url, ssl_context=site_ca[1]) as proxy:
        yield proxy


def _v1(https, swift_server, **kw) -> dict:
    return {
        "authurl": https.url + "/auth/v1.0",
        "user": swift_server.user,
        "key": swift_server.key,
        **kw,
    }


def _roundtrip(store: SwiftStore) -> None:
    data = np.arange(12, dtype="i2").reshape(3, 4)
    zarr.create_array(store, name="a", shape=(3, 4), chunks=(2, 2), dtype="i2")[:] = data
    np.testing.assert_array_equal(zarr.open_array(store, path="a", mode="r")[:], data)


@pytest.mark.parametrize("way", ["cacert=", "OS_CACERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"])
def test_the_site_ca_given_each_way_serves_auth_data_and_conn(
    swift_server, site_ca, https, container_name, monkeypatch, way
):
    bundle = str(site_ca[0])
    if way == "cacert=":
        store = SwiftStore(container_name, **_v1(https, swift_server, cacert=bundle))
    else:
        monkeypatch.setenv(way, bundle)
        store = SwiftStore(container_name, **_v1(https, swift_server))
    _roundtrip(store)
    assert store.storage_url.startswith(https.url)  # the data went through TLS too
    assert store.session.trust == Trust(bundle, True, way)
    assert https.counts["forwarded"] >= 5  # auth, container PUT, chunks, metadata
    headers = store.conn.head_container(container_name)  # python-swiftclient: same trust
    assert int(headers["x-container-object-count"]) >= 2


def test_precedence_is_the_same_documented_order(site_ca, tmp_path, monkeypatch):
    bundle = str(site_ca[0])
    other = tmp_path / "other.pem"
    other.write_bytes(site_ca[0].read_bytes())
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other))
    assert resolve_trust().source == "REQUESTS_CA_BUNDLE"
    site = Trust(bundle, True, "cacert of cloud 'lab'")
    assert resolve_trust(site=site).source == "cacert of cloud 'lab'"
    monkeypatch.setenv("OS_CACERT", str(other))
    assert resolve_trust(site=site).source == "OS_CACERT"
    assert resolve_trust(bundle, site=site) == Trust(bundle, True, "cacert=")
    assert resolve_trust(site=site, env={}).source == "cacert of cloud 'lab'"  # OS_CACERT: env's
    assert not resolve_trust(verify_tls=False).verify
    with pytest.raises(ConfigurationError, match="contradict"):
        resolve_trust(bundle, verify_tls=False)


def test_clouds_yaml_cacert_and_verify_reach_keystone_and_the_store(
    site_ca, https, tmp_path, monkeypatch
):
    """No Keystone here (test_keystone has the real one): the TLS handshake with the https
    front succeeding (it is Swift, so no token comes back) shows the cloud's CA was used."""
    bundle = str(site_ca[0])
    clouds = tmp_path / "clouds.yaml"

    def cloud(extra: str) -> None:
        clouds.write_text(
            f"clouds:\n  lab:\n{extra}    auth:\n      auth_url: {https.url}/v3\n"
            "      username: u\n      password: p\n      project_name: x\n"
        )

    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    cloud(f"    cacert: {bundle}\n")
    provider = load_cloud("lab")
    assert provider.trust.cacert == bundle and "cacert of cloud 'lab'" in provider.trust.source
    with pytest.raises(AuthenticationError) as info:
        provider.authenticate()
    assert "TLS" not in str(info.value)  # got through TLS: refused by a server that is no Keystone
    store = SwiftStore("c", credential_provider=provider)
    assert store._options.trust == provider.trust  # the storage URL is trusted like Keystone
    cloud("    verify: false\n")
    assert load_cloud("lab").trust.verify is False
    cloud("")
    with pytest.raises(AuthenticationError, match=r"TLS verification failed .*127\.0\.0\.1"):
        load_cloud("lab").authenticate()
    cloud(f"    cacert: {tmp_path / 'missing.pem'}\n")
    with pytest.raises(ConfigurationError, match="missing.pem"):
        load_cloud("lab")


def test_without_the_ca_a_clear_tls_error_that_is_not_retried(swift_server, https, container_name):
    calls = auth_calls()
    with pytest.raises(AuthenticationError, match=r"127\.0\.0\.1.*cacert=, OS_CACERT") as auth:
        SwiftStore(container_name, **_v1(https, swift_server)).listdir()
    assert auth_calls() - calls == 1  # one try: a certificate does not get better
    assert "system's CA store" in str(auth.value)
    token = V1Password(**_v1_plain(swift_server)).authenticate()
    store = SwiftStore(
        container_name, preauthurl=https.via(token.storage_url), preauthtoken=token.token
    )
    with pytest.raises(SwiftHTTPError, match=r"127\.0\.0\.1.*OS_CACERT") as data:
        store.listdir()
    assert data.value.attempts == 1 and store.counters["requests"] == 1
    assert https.counts.get("forwarded", 0) == 0


def test_a_bad_ca_bundle_is_a_configuration_error_before_any_request(
    swift_server, https, container_name, tmp_path, monkeypatch
):
    calls = auth_calls()
    missing = tmp_path / "nowhere.pem"
    with pytest.raises(ConfigurationError, match=f"CA bundle {missing} .*cacert=.* not exist"):
        SwiftStore(container_name, **_v1(https, swift_server, cacert=missing))
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    monkeypatch.setenv("OS_CACERT", str(junk))
    with pytest.raises(ConfigurationError, match=f"{junk} \\(from OS_CACERT\\)"):
        SwiftStore(container_name, **_v1(https, swift_server))
    assert auth_calls() == calls and https.counts.get("requests", 0) == 0


def test_insecure_cli_and_workflow_work_and_warn_once_per_host(
    swift_server, https, container_name, tmp_path, monkeypatch, caplog
):
    plain = SwiftStore(container_name, **_v1_plain(swift_server))
    _roundtrip(plain)
    env = {k: v for k, v in os.environ.items() if k not in TRUST_VARS and not k.startswith("ST_")}
    env.update(ST_AUTH=https.url + "/auth/v1.0", ST_USER=swift_server.user, ST_KEY=swift_server.key)
    run = [sys.executable, "-m", "swiftzarr_batch.cli", "ls", f"swift://{container_name}"]
    refused = subprocess.run(run, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and "TLS verification failed" in refused.stderr
    done = subprocess.run([*run, "--insecure"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "zarr.json" in done.stdout.split()
    warnings = [line for line in done.stderr.splitlines() if OFF in line]
    assert len(warnings) == 2, done.stderr  # the auth URL's and the storage URL's, once each
    assert all("127.0.0.1" in line for line in warnings)

    for name, value in env.items():
        if name.startswith("ST_"):
            monkeypatch.setenv(name, value)
    cfg = tmp_path / "mirror.toml"
    cfg.write_text(
        f'[source]\nurl = "swift://{container_name}"\ninsecure = true\n'
        f'[target]\nurl = "{tmp_path / "copy"}"\n[output]\nsummary = "{tmp_path / "m.json"}"\n'
    )
    with caplog.at_level(logging.WARNING, logger="swiftzarr_batch"):
        assert mirror(cfg) == 0
    summary = json.loads((tmp_path / "m.json").read_text())
    assert summary["status"] == "ok", summary
    off = [r for r in caplog.records if OFF in r.getMessage()]
    assert len(off) == 2 and all(r.levelno == logging.WARNING for r in off)
    np.testing.assert_array_equal(
        zarr.open_array(str(tmp_path / "copy"), path="a", mode="r")[:],
        np.arange(12, dtype="i2").reshape(3, 4),
    )


def _v1_plain(swift_server) -> dict:
    return {"authurl": swift_server.auth_url, "user": swift_server.user, "key": swift_server.key}


def test_a_store_with_cacert_pickles_as_a_path_and_works_in_a_worker_process(
    swift_server, site_ca, https, container_name
):
    distributed = pytest.importorskip("distributed")
    bundle = str(site_ca[0])
    store = SwiftStore(container_name, **_v1(https, swift_server, cacert=bundle))
    _roundtrip(store)

    def read_in_worker(store: SwiftStore) -> tuple[int, str | None]:  # pickled by value
        arr = zarr.open_array(store, path="a", mode="r")
        return int(arr[:].sum()), store.session.trust.cacert

    state = pickle.dumps(store)
    assert bundle.encode() in state and b"BEGIN CERTIFICATE" not in state
    with (
        distributed.LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        assert client.run(lambda: os.environ.get("OS_CACERT")) == {
            w: None for w in client.scheduler_info()["workers"]
        }
        total, trusted = client.submit(read_in_worker, store).result(timeout=60)
    assert total == int(np.arange(12).sum()) and trusted == bundle
