"""Keystone v3 against a real Keystone (sqlite, fernet) in front of the real Swift proxy.

The Swift proxy here runs keystonemiddleware's ``authtoken`` + Swift's ``keystoneauth`` (accounts
``KEY_<project_id>``) next to TempAuth. It is this module's own server: with ``authtoken`` in
the pipeline every TempAuth request is first asked of Keystone, which would slow other tests.
The first run installs Keystone into a cached venv (~40 s here) and every run bootstraps it
(~20 s).
"""

from __future__ import annotations

import logging
import pickle
import time
import warnings

import numpy as np
import pytest
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from swiftzarr_batch import (
    AuthenticationError,
    ConfigurationError,
    PermissionDeniedError,
    SwiftStore,
)
from swiftzarr_batch.auth import check_token_lifetime, resolve_credentials
from swiftzarr_batch.auth.keystone import KeystoneApplicationCredential, KeystonePassword
from swiftzarr_batch.errors import TokenLifetimeWarning
from swiftzarr_batch.testing.keystone_server import LocalKeystone
from swiftzarr_batch.testing.swift_server import LocalSwift

PROTO = default_buffer_prototype()
ALICE, ALICE_PW, PROJECT = "alice", "pw-alice-6f1c9e", "zarr"
BOB, BOB_PW, OTHER = "bob", "pw-bob-0d27aa", "other"


@pytest.fixture(scope="module")
def cloud():
    with (
        LocalKeystone(token_expiration=3600) as ks,
        LocalSwift(keystone=ks.authtoken_settings()) as swift,
    ):
        ks.register_swift(swift.proxy_url)
        alice = ks.add_user(ALICE, ALICE_PW, PROJECT)
        ks.add_user(BOB, BOB_PW, OTHER)
        cred_id, cred_secret = ks.create_application_credential(ALICE, ALICE_PW, PROJECT, "job")
        yield {
            "ks": ks,
            "swift": swift,
            "project_id": alice["project_id"],
            "cred_id": cred_id,
            "cred_secret": cred_secret,
        }


def alice(cloud, **kw) -> KeystonePassword:
    return KeystonePassword(cloud["ks"].auth_url, ALICE, ALICE_PW, project_name=PROJECT, **kw)


def _roundtrip(store: SwiftStore) -> None:
    data = np.arange(12, dtype="i2").reshape(3, 4)
    zarr.create_array(store, name="a", shape=data.shape, chunks=(2, 2), dtype="i2", overwrite=True)[
        :
    ] = data
    np.testing.assert_array_equal(zarr.open_array(store, path="a", mode="r")[:], data)


def test_password_auth_picks_the_object_store_endpoint_and_reads_the_expiry(cloud, container_name):
    store = SwiftStore(container_name, credential_provider=alice(cloud))
    _roundtrip(store)
    assert store.storage_url == f"{cloud['swift'].proxy_url}/v1/KEY_{cloud['project_id']}"
    assert 3600 - 120 < store.token_expires_at - time.time() <= 3600
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_token_lifetime(store, 1800)
    with pytest.warns(TokenLifetimeWarning):
        check_token_lifetime(store, 2 * 3600)


def test_application_credential_auth(cloud, container_name):
    provider = KeystoneApplicationCredential(
        cloud["ks"].auth_url, cloud["cred_id"], cloud["cred_secret"]
    )
    store = SwiftStore(container_name, credential_provider=provider)
    _roundtrip(store)
    assert store.storage_url.endswith(f"/KEY_{cloud['project_id']}")


def test_os_environment_variables_are_in_the_credentials_chain(cloud, container_name, monkeypatch):
    for k, v in cloud["ks"].env(ALICE, ALICE_PW, PROJECT).items():
        monkeypatch.setenv(k, v)
    _roundtrip(SwiftStore(container_name))  # no arguments at all
    auth = resolve_credentials(
        authurl=None, user=None, key=None, preauthurl=None, preauthtoken=None
    )
    assert auth.source == "OS_AUTH_URL" and isinstance(auth.provider, KeystonePassword)
    # Keystone credentials (renewable) win over a bare token ...
    monkeypatch.setenv("OS_STORAGE_URL", "http://127.0.0.1:1/v1/KEY_x")
    monkeypatch.setenv("OS_AUTH_TOKEN", "not-used")
    assert SwiftStore(container_name).storage_url.endswith(cloud["project_id"])
    # ... ST_* v1 credentials win over both
    swift = cloud["swift"]
    for k, v in swift.env.items():
        monkeypatch.setenv(k, v)
    assert SwiftStore(container_name).storage_url == swift.storage_url("test")


def test_cli_token_from_keystone_and_lifetime_only_for_v1(
    cloud, container_name, monkeypatch, capsys, cli
):
    """``swiftzarr token`` exports Keystone's token as it is; ``--lifetime`` is a v1 request
    (X-Auth-Lifetime), so with Keystone it is a clear error, not a silent no-op."""
    for k, v in cloud["ks"].env(ALICE, ALICE_PW, PROJECT).items():
        monkeypatch.setenv(k, v)
    assert cli("token") == 0
    out = capsys.readouterr().out
    exports = dict(
        line.removeprefix("export ").split("=", 1)
        for line in out.splitlines()
        if line.startswith("export OS_")
    )
    assert exports["OS_STORAGE_URL"].endswith(f"/v1/KEY_{cloud['project_id']}")
    assert ALICE_PW not in out
    assert cli("token", "--lifetime", "3600") == 1
    assert "--lifetime needs v1 auth" in capsys.readouterr().err


def test_application_credential_from_the_environment(cloud, container_name, monkeypatch):
    monkeypatch.setenv("OS_AUTH_URL", cloud["ks"].auth_url)
    monkeypatch.setenv("OS_APPLICATION_CREDENTIAL_ID", cloud["cred_id"])
    monkeypatch.setenv("OS_APPLICATION_CREDENTIAL_SECRET", cloud["cred_secret"])
    monkeypatch.setenv("OS_AUTH_TYPE", "v3applicationcredential")
    store = SwiftStore(container_name)
    assert isinstance(store._provider, KeystoneApplicationCredential)
    _roundtrip(store)


def test_clouds_yaml_with_secure_yaml(cloud, container_name, tmp_path, monkeypatch):
    (tmp_path / "clouds.yaml").write_text(
        "clouds:\n  lab:\n    region_name: RegionOne\n    interface: public\n    auth:\n"
        f"      auth_url: {cloud['ks'].auth_url}\n      username: {ALICE}\n"
        f"      project_name: {PROJECT}\n      user_domain_name: Default\n"
        "      project_domain_name: Default\n"
    )
    (tmp_path / "secure.yaml").write_text(
        f"clouds:\n  lab:\n    auth:\n      password: {ALICE_PW}\n"
    )
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(tmp_path / "clouds.yaml"))
    monkeypatch.setenv("OS_CLOUD", "lab")
    _roundtrip(SwiftStore(container_name))
    monkeypatch.setenv("OS_CLOUD", "nowhere")
    with pytest.raises(ConfigurationError, match="OS_CLOUD='nowhere' is not in any clouds.yaml"):
        SwiftStore(container_name)


def test_incomplete_os_variables_say_what_is_missing(cloud, container_name, monkeypatch):
    monkeypatch.setenv("OS_AUTH_URL", cloud["ks"].auth_url)
    monkeypatch.setenv("OS_USERNAME", ALICE)
    with pytest.raises(ConfigurationError, match="missing password, project_name"):
        SwiftStore(container_name)


def test_wrong_password_and_unknown_region_are_clear_errors(cloud, container_name):
    ks = cloud["ks"]
    with pytest.raises(AuthenticationError, match="refused user 'alice' .project 'zarr'.") as e:
        KeystonePassword(ks.auth_url, ALICE, "wrong-pw-91b2", project_name=PROJECT).authenticate()
    assert "wrong-pw-91b2" not in str(e.value)
    with pytest.raises(
        ConfigurationError, match="no object-store endpoint .* region 'Mars'.*public@RegionOne"
    ):
        alice(cloud, region="Mars").authenticate()
    assert (
        alice(cloud, interface="internal").authenticate().storage_url.endswith(cloud["project_id"])
    )


def test_another_project_is_denied_not_missing(cloud, container_name):
    owner = SwiftStore(container_name, credential_provider=alice(cloud))
    _roundtrip(owner)
    bob = KeystonePassword(cloud["ks"].auth_url, BOB, BOB_PW, project_name=OTHER)
    token = bob.authenticate()
    intruder = SwiftStore(
        container_name, preauthurl=owner.storage_url, preauthtoken=token.token, read_only=True
    )
    with pytest.raises(PermissionDeniedError, match="403"):
        sync(intruder.get("a/zarr.json", PROTO))
    with pytest.raises(PermissionDeniedError):
        intruder.listdir()


def test_keystone_secrets_never_leak(cloud, container_name, caplog):
    for name in ("", "swiftzarr_batch", "urllib3", "requests", "aiohttp"):
        caplog.set_level(logging.DEBUG, logger=name)
    provider = alice(cloud)
    app = KeystoneApplicationCredential(
        cloud["ks"].auth_url, cloud["cred_id"], cloud["cred_secret"]
    )
    store = SwiftStore(container_name, credential_provider=provider)
    _roundtrip(store)
    tokens = [store.session.token.token, app.authenticate().token]
    texts = [
        repr(provider),
        str(provider),
        repr(app),
        repr(store),
        repr(store.session.token),
        repr(pickle.loads(pickle.dumps(store)).__getstate__()["provider"]),
    ]
    for bad in (
        lambda: KeystonePassword(
            cloud["ks"].auth_url, ALICE, ALICE_PW + "x", project_name=PROJECT
        ).authenticate(),
        lambda: pickle.dumps(provider),
        lambda: pickle.dumps(app),
    ):
        with pytest.raises((AuthenticationError, TypeError)) as info:
            bad()
        texts.append(str(info.value))
    blob = pickle.dumps(store)
    assert ALICE_PW.encode() not in blob and cloud["cred_secret"].encode() not in blob
    everything = "\n".join([*texts, caplog.text, *(r.getMessage() for r in caplog.records)])
    # Keystone is reached over the project's own client: its and asyncio's DEBUG logs were seen
    assert {"asyncio", "swiftzarr_batch.auth.keystone"} <= {r.name for r in caplog.records}
    for secret in (ALICE_PW, cloud["cred_secret"], *tokens):
        assert secret not in everything


def test_a_travelling_keystone_provider_is_the_users_explicit_choice(cloud, container_name):
    travelling = alice(cloud, travels=True)
    copy = pickle.loads(pickle.dumps(travelling))
    assert copy.authenticate().storage_url.endswith(cloud["project_id"])
    store = SwiftStore(container_name, credential_provider=travelling)
    _roundtrip(store)
    assert pickle.loads(pickle.dumps(store)).__getstate__()["provider"] is not None
