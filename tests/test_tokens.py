"""Token lifecycle: expiry is known and checked, long jobs renew with a travelling provider,
and without one they fail loudly (TokenExpiredError), never with silent fill values."""

from __future__ import annotations

import os
import pickle
import sys
import time
import warnings

import cloudpickle
import dask.array as da
import numpy as np
import pytest
import zarr
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from swiftzarr_batch import SwiftStore, TokenExpiredError
from swiftzarr_batch.auth import (
    CredentialsFile,
    EnvironmentCredentials,
    V1Password,
    check_token_lifetime,
)
from swiftzarr_batch.errors import ConfigurationError, TokenLifetimeWarning
from swiftzarr_batch.swift.session import process_counters
from swiftzarr_batch.testing.swift_server import LocalSwift

TOKEN_LIFE = 3
PROTO = default_buffer_prototype()
cloudpickle.register_pickle_by_value(sys.modules[__name__])  # dask workers can't import tests/


# -- expiry is read and checked (the session server: 1-day tokens) ------------------------------
def test_token_expiry_is_read_from_v1_auth_and_exposed(creds, container_name):
    fresh = V1Password(creds["authurl"], creds["user"], creds["key"]).authenticate()
    assert 86400 - 60 < fresh.seconds_left() <= 86400  # the server's token_life, as it said
    store = SwiftStore(container_name, **creds)  # (its token may be cached from earlier)
    assert 0 < store.token_expires_at - time.time() <= 86400
    assert store.token_expires_at == store.session.token.expires_at


def test_check_token_lifetime_warns_or_raises_when_the_token_is_too_short(creds, container_name):
    store = SwiftStore(container_name, **creds)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_token_lifetime(store, 3600) > 3600  # plenty: no warning
    with pytest.warns(TokenLifetimeWarning, match=r"expires in \d+ s but the job needs"):
        check_token_lifetime(store, 2 * 86400)
    with pytest.raises(TokenExpiredError, match="EnvironmentCredentials"):
        check_token_lifetime(store, 2 * 86400, strict=True)


def test_check_token_lifetime_is_quiet_when_workers_can_renew(
    swift_server, container_name, monkeypatch
):
    for name, value in swift_server.env.items():
        monkeypatch.setenv(name, value)
    store = SwiftStore(container_name, credential_provider=EnvironmentCredentials())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_token_lifetime(store, 2 * 86400, strict=True) > 0


def test_travelling_providers_pickle_without_secrets(swift_server, tmp_path, monkeypatch):
    for name, value in swift_server.env.items():
        monkeypatch.setenv(name, value)
    rc = tmp_path / "swift.rc"
    rc.write_text("".join(f"export {k}='{v}'\n" for k, v in swift_server.env.items()))
    rc.chmod(0o600)
    for provider in (EnvironmentCredentials(), CredentialsFile(rc)):
        blob = pickle.dumps(provider)
        assert swift_server.key.encode() not in blob
        assert pickle.loads(blob).authenticate().token
    with pytest.raises(TypeError, match="travels=True"):
        pickle.dumps(V1Password(swift_server.auth_url, swift_server.user, swift_server.key))
    travelling = V1Password(
        swift_server.auth_url, swift_server.user, swift_server.key, travels=True
    )
    assert pickle.loads(pickle.dumps(travelling)).authenticate().token  # the user's choice


def test_credentials_file_errors_name_the_line_not_the_value(tmp_path):
    bad = tmp_path / "bad.rc"
    bad.write_text("ST_AUTH=http://127.0.0.1:1/auth/v1.0\nthis is not an assignment s3cr3t\n")
    with pytest.raises(ConfigurationError, match="line 2") as info:
        CredentialsFile(bad).authenticate()
    assert "s3cr3t" not in str(info.value)
    with pytest.raises(ConfigurationError, match="cannot read"):
        CredentialsFile(tmp_path / "missing.rc").authenticate()


# -- a server whose tokens live 3 seconds -------------------------------------------------------
@pytest.fixture(scope="module")
def short_server():
    with LocalSwift(token_life=TOKEN_LIFE) as server:
        yield server


@pytest.fixture(scope="module")
def short_client(short_server):
    """Dask workers that inherited the short server's ST_* variables (as batch jobs export)."""
    from distributed import Client, LocalCluster

    saved = {k: os.environ.get(k) for k in short_server.env}
    os.environ.update(short_server.env)
    try:
        cluster = LocalCluster(
            n_workers=2,
            threads_per_worker=2,
            processes=True,
            dashboard_address=None,
            silence_logs=40,
        )
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    with cluster, Client(cluster) as client:
        yield client


def _slowly(block):
    time.sleep(0.25)  # 96 blocks / 4 threads * 0.25 s = 6 s: outlives a 3 (to 4) s token
    return block


def _long_job_array():
    darr = da.random.RandomState(11).random_sample((96, 64), chunks=(8, 8))
    return darr, darr.map_blocks(_slowly, dtype=darr.dtype)


def _reauths(client) -> int:
    return sum(c["reauths"] for c in client.run(process_counters).values())


def _write(darr, store, path):
    from swiftzarr_batch.jobs.write_array import write_array

    return write_array(darr, store, path, retries=0)


def test_token_life_is_short_on_the_short_server(short_server, container_name):
    store = SwiftStore(
        container_name, authurl=short_server.auth_url, user=short_server.user, key=short_server.key
    )
    assert 0 < store.token_expires_at - time.time() <= TOKEN_LIFE
    with pytest.warns(TokenLifetimeWarning):
        check_token_lifetime(store, 60)


@pytest.mark.parametrize("how", ["environment", "file", "travelling key"])
def test_a_job_that_outlives_its_token_completes_with_a_travelling_provider(
    short_server, short_client, container_name, tmp_path, monkeypatch, how
):
    if how == "environment":  # resolved in each process (client, workers) from its environment
        for name, value in short_server.env.items():
            monkeypatch.setenv(name, value)
        provider = EnvironmentCredentials()
    elif how == "file":
        rc = tmp_path / "creds.rc"
        rc.write_text("".join(f"{k}={v}\n" for k, v in short_server.env.items()))
        rc.chmod(0o600)
        provider = CredentialsFile(rc)
    else:
        provider = V1Password(
            short_server.auth_url, short_server.user, short_server.key, travels=True
        )
    store = SwiftStore(container_name, credential_provider=provider)
    expected, slow = _long_job_array()
    before = _reauths(short_client)
    started = time.monotonic()
    _write(slow, store, "a")
    assert time.monotonic() - started > TOKEN_LIFE + 1  # the job did outlive the first token
    assert _reauths(short_client) > before  # ... and the workers renewed it
    fresh = SwiftStore(
        container_name,
        authurl=short_server.auth_url,
        user=short_server.user,
        key=short_server.key,
        read_only=True,
    )
    np.testing.assert_array_equal(zarr.open_array(fresh, path="a", mode="r")[:], expected.compute())


def test_without_a_provider_a_long_job_fails_with_token_expired(
    short_server, short_client, container_name
):
    # The key stays on the client: workers get the token only, and cannot renew it.
    store = SwiftStore(
        container_name, authurl=short_server.auth_url, user=short_server.user, key=short_server.key
    )
    _, slow = _long_job_array()
    with pytest.warns(TokenLifetimeWarning):
        check_token_lifetime(store, 60)  # what a caller would see before launching
    with pytest.raises(TokenExpiredError, match="401"):
        _write(slow, store, "a")


def test_a_bare_token_has_an_unknown_expiry_and_fails_loudly_too(
    short_server, short_client, container_name
):
    token = V1Password(short_server.auth_url, short_server.user, short_server.key).authenticate()
    store = SwiftStore(container_name, preauthurl=token.storage_url, preauthtoken=token.token)
    assert check_token_lifetime(store, 60) is None  # Swift cannot tell a bare token's expiry
    _, slow = _long_job_array()
    with pytest.raises(TokenExpiredError, match="401"):
        _write(slow, store, "a")


def test_an_expired_token_never_reads_as_missing(short_server, container_name):
    writer = SwiftStore(
        container_name, authurl=short_server.auth_url, user=short_server.user, key=short_server.key
    )
    z = zarr.create_array(writer, name="a", shape=(4,), chunks=(2,), dtype="i4", fill_value=-7)
    z[:] = np.arange(4)
    token = V1Password(short_server.auth_url, short_server.user, short_server.key).authenticate()
    # (other options than the writer's: a token minted in the same second may be the same
    # string, and a same-token store of this process would share the writer's session)
    reader = SwiftStore(
        container_name,
        preauthurl=token.storage_url,
        preauthtoken=token.token,
        read_only=True,
        max_connections=7,
    )
    arr = zarr.open_array(reader, path="a", mode="r")
    time.sleep(TOKEN_LIFE + 2)  # TempAuth honours a token up to ~1 s past its stated expiry
    with pytest.raises(TokenExpiredError):
        arr[:]  # not [-7, -7, -7, -7]
    with pytest.raises(TokenExpiredError):
        sync(reader.get("a/zarr.json", PROTO))
    with pytest.raises(TokenExpiredError):
        sync(reader.exists("a/zarr.json"))
