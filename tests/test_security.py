"""Nobody let in, nothing leaked: secrets, accounts, public containers, TLS and bad input."""

from __future__ import annotations

import logging
import pickle
import secrets
import shutil
import ssl
import subprocess
import time

import numpy as np
import pytest
import zarr
from zarr.abc.store import OffsetByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync
from zarr.storage import MemoryStore

from swiftzarr_batch import (
    AuthenticationError,
    ConfigurationError,
    InvalidNameError,
    PermissionDeniedError,
    ReadOnlyError,
    RetryPolicy,
    SwiftHTTPError,
    SwiftStore,
    TokenExpiredError,
)
from swiftzarr_batch.auth import EnvironmentCredentials, V1Password
from swiftzarr_batch.testing.faultproxy import FaultProxy
from swiftzarr_batch.testing.processes import free_ports as _free_ports
from swiftzarr_batch.testing.swift_server import LocalSwift

PROTO = default_buffer_prototype()
LOGGERS = (
    "",
    "swiftzarr_batch",
    "aiohttp",
    "aiohttp.client",
    "aiohttp.access",
    "urllib3",
    "requests",
    "swiftclient",
    "asyncio",
    "distributed",
    "tenacity",
)


# -- a server whose keys are random, so a leak cannot hide in ordinary words --------------------
@pytest.fixture(scope="module")
def secret_server():
    keys = {"sec:alice": "k-" + secrets.token_hex(12), "sec2:bob": "k-" + secrets.token_hex(12)}
    with LocalSwift(users=keys, admins=list(keys)) as server:
        yield server


def _leaks(text: str, secrets_: list[str]) -> list[str]:
    found = [s for s in secrets_ if s and s in text]
    for prefix in ("AUTH_tk", "AUTH_ftk"):  # TempAuth's tokens (memcached / fernet) start so
        if prefix in text:
            found.append(prefix + "...")
    return found


def _tamper(token: str) -> str:
    """The token with one character in its middle changed (appending to a fernet token does
    not invalidate it: base64 decoding ignores the excess)."""
    i = len(token) // 2
    return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]


def test_no_secret_in_logs_reprs_errors_or_pickles_over_a_whole_workflow(
    secret_server, container_name, caplog, monkeypatch
):
    users = secret_server.users
    alice_key, bob_key = users["sec:alice"], users["sec2:bob"]
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    texts: list[str] = []
    tokens: list[str] = []

    def keep(*objs: object) -> None:
        texts.extend(repr(o) for o in objs)
        texts.extend(str(o) for o in objs)

    store = SwiftStore(
        container_name, authurl=secret_server.auth_url, user="sec:alice", key=alice_key
    )
    z = zarr.create_array(store, name="a", shape=(16,), chunks=(4,), dtype="i4")
    z[:] = np.arange(16)
    assert (zarr.open_array(store, path="a", mode="r")[:] == np.arange(16)).all()
    store.listdir(), store.walk()
    session = store.session
    tokens.append(session.token.token)
    keep(store, session, session.token, session.provider, store.counters)
    blob = pickle.dumps(store)
    assert alice_key.encode() not in blob  # the default pickle: URL + token, never the key

    # a rejected token renewed with the key (401 -> re-auth), logged at DEBUG
    stale = SwiftStore(
        container_name,
        authurl=secret_server.auth_url,
        user="sec:alice",
        key=alice_key,
        preauthurl=store.storage_url,
        preauthtoken="AUTH_tkbogus",
    )
    assert stale.listdir() == ["a", "zarr.json"]
    tokens.append(stale.session.token.token)
    keep(stale, stale.session)

    failures: list[BaseException] = []
    attempts = [
        lambda: SwiftStore(
            "c", authurl=secret_server.auth_url, user="sec:alice", key=alice_key + "x"
        ).listdir(),  # wrong key
        lambda: SwiftStore(
            container_name, preauthurl=store.storage_url, preauthtoken=_tamper(tokens[0])
        ).listdir(),  # bad, no renewal
        lambda: SwiftStore(
            container_name,
            authurl=secret_server.auth_url,
            user="sec2:bob",
            key=bob_key,
            preauthurl=store.storage_url,
        ).listdir(),  # 403
        lambda: SwiftStore(
            "c", authurl="http://127.0.0.1:1/auth/v1.0", user="sec:alice", key=alice_key
        ).listdir(),  # unreachable
        lambda: SwiftStore(
            container_name, preauthurl=store.storage_url, anonymous=True
        ).listdir(),  # not public
        lambda: pickle.dumps(V1Password(secret_server.auth_url, "sec:alice", alice_key)),
    ]
    for attempt in attempts:
        with pytest.raises((AuthenticationError, PermissionDeniedError, TypeError)) as info:
            attempt()
        failures.append(info.value)
    with FaultProxy(secret_server.proxy_url) as fp:  # a job that fails under 100 % faults
        doomed = SwiftStore(
            container_name,
            preauthurl=fp.via(store.storage_url),
            preauthtoken=tokens[0],
            retry=RetryPolicy(attempts=2, base_delay=0),
        )
        fp.configure(rate=1.0, kinds=("503", "500", "reset-after-body"))
        with pytest.raises(SwiftHTTPError) as info:
            zarr.open_array(doomed, path="a", mode="r")[:]
        failures.append(info.value)
        keep(fp, doomed)
    monkeypatch.setenv("ST_AUTH", secret_server.auth_url)
    monkeypatch.setenv("ST_USER", "sec:alice")
    monkeypatch.setenv("ST_KEY", alice_key)
    travelling = SwiftStore(container_name, credential_provider=EnvironmentCredentials())
    travelling.listdir()
    assert alice_key.encode() not in pickle.dumps(travelling)
    keep(travelling, *failures)
    for exc in failures:
        texts.append("".join(__import__("traceback").format_exception(exc)))

    everything = [
        *texts,
        *(r.getMessage() for r in caplog.records),
        *(r.exc_text or "" for r in caplog.records),
        caplog.text,
    ]
    assert len(caplog.records) > 10  # the DEBUG logs were captured, third parties' too
    # auth and data both go over the project's own client (no urllib3 since issue 27): the
    # auth, retry and asyncio loggers are the ones that saw the secrets' requests
    assert {"asyncio", "swiftzarr_batch.auth.v1", "swiftzarr_batch.swift.session"} <= {
        r.name for r in caplog.records
    }
    leaks = {t[:120]: _leaks(t, [alice_key, bob_key, *tokens]) for t in everything}
    assert {t: found for t, found in leaks.items() if found} == {}


# -- accounts: 403 is "denied", never "missing" ------------------------------------------------------
def test_another_account_cannot_read_or_list_through_the_store(swift_server, container_name):
    owner = SwiftStore(
        container_name, authurl=swift_server.auth_url, user="test:tester", key="testing"
    )
    zarr.create_array(owner, name="a", shape=(4,), chunks=(2,), dtype="i4")[:] = 1
    intruder = SwiftStore(
        container_name,
        authurl=swift_server.auth_url,
        user="test2:tester2",
        key="testing2",
        preauthurl=swift_server.storage_url("test"),
        read_only=True,
    )
    for attempt in (
        lambda: sync(intruder.get("a/zarr.json", PROTO)),
        lambda: sync(intruder.exists("a/zarr.json")),
        intruder.listdir,
        lambda: zarr.open_array(intruder, path="a", mode="r"),
    ):
        with pytest.raises(PermissionDeniedError, match="403.*not 'missing'"):
            attempt()
    writer = intruder.with_read_only(False)
    with pytest.raises(PermissionDeniedError):
        sync(writer.set("a/c/0", PROTO.buffer.from_bytes(b"evil")))
    assert (zarr.open_array(owner, path="a", mode="r")[:] == 1).all()


def test_a_granted_read_acl_lets_the_other_account_read(swift_server, swift_conn, container_name):
    owner = SwiftStore(
        container_name, authurl=swift_server.auth_url, user="test:tester", key="testing"
    )
    zarr.create_array(owner, name="a", shape=(4,), chunks=(2,), dtype="i4")[:] = 3
    swift_conn.post_container(container_name, {"X-Container-Read": "test2:tester2"})
    friend = SwiftStore(
        container_name,
        authurl=swift_server.auth_url,
        user="test2:tester2",
        key="testing2",
        preauthurl=swift_server.storage_url("test"),
        read_only=True,
    )
    assert (zarr.open_array(friend, path="a", mode="r")[:] == 3).all()
    with pytest.raises(PermissionDeniedError):  # a read ACL gives no write
        sync(friend.with_read_only(False).set("a/c/0", PROTO.buffer.from_bytes(b"x")))


def test_a_public_container_is_readable_without_credentials(
    swift_server, swift_conn, container_name
):
    owner = SwiftStore(
        container_name, authurl=swift_server.auth_url, user=swift_server.user, key=swift_server.key
    )
    data = np.arange(20, dtype="f4").reshape(4, 5)
    zarr.create_array(owner, name="a", shape=(4, 5), chunks=(2, 5), dtype="f4")[:] = data
    url = swift_server.storage_url("test")
    anon = SwiftStore(container_name, preauthurl=url, anonymous=True)
    assert anon.read_only
    with pytest.raises(PermissionDeniedError, match="anonymous"):  # not public yet
        zarr.open_array(anon, path="a", mode="r")
    swift_conn.post_container(container_name, {"X-Container-Read": ".r:*,.rlistings"})
    np.testing.assert_array_equal(zarr.open_array(anon, path="a", mode="r")[:], data)
    assert anon.listdir() == ["a", "zarr.json"]
    with pytest.raises(ReadOnlyError):
        sync(anon.set("a/c/0/0", PROTO.buffer.from_bytes(b"x")))
    with pytest.raises(ConfigurationError, match="anonymous"):
        SwiftStore(container_name, preauthurl=url, preauthtoken="t", anonymous=True)
    with pytest.raises(ConfigurationError, match="anonymous"):
        SwiftStore(container_name, anonymous=True)
    assert pickle.loads(pickle.dumps(anon)).__getstate__()["token"].token == ""


# -- TLS ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tls_context(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.fail("openssl is needed to make a self-signed certificate for the TLS tests")
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(d / "key.pem"),
            "-out",
            str(d / "cert.pem"),
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(d / "cert.pem", d / "key.pem")
    return ctx


def test_tls_verification_is_on_by_default_and_refuses_a_self_signed_server(
    swift_server, tls_context, container_name
):
    token = V1Password(swift_server.auth_url, swift_server.user, swift_server.key).authenticate()
    with FaultProxy(swift_server.proxy_url, ssl_context=tls_context) as https:
        assert https.url.startswith("https://")
        store = SwiftStore(
            container_name, preauthurl=https.via(token.storage_url), preauthtoken=token.token
        )
        assert store._options.verify_tls is True
        started = time.monotonic()
        with pytest.raises(SwiftHTTPError, match="TLS verification") as info:
            store.listdir()
        assert info.value.attempts == 1 and time.monotonic() - started < 5  # not retried
        with pytest.raises(AuthenticationError, match="TLS verification failed"):
            SwiftStore(
                container_name,
                authurl=https.url + "/auth/v1.0",
                user=swift_server.user,
                key=swift_server.key,
            ).listdir()
        assert https.counts.get("forwarded", 0) == 0  # nothing got through


def test_turning_tls_verification_off_is_explicit_and_logged(
    swift_server, tls_context, container_name, caplog
):
    with FaultProxy(swift_server.proxy_url, ssl_context=tls_context) as https:
        with caplog.at_level(logging.WARNING, logger="swiftzarr_batch"):
            store = SwiftStore(
                container_name,
                authurl=https.url + "/auth/v1.0",
                user=swift_server.user,
                key=swift_server.key,
                verify_tls=False,
            )
            zarr.create_group(store)
            assert store.listdir() == ["zarr.json"]
        assert store.storage_url.startswith(https.url)  # data went through TLS as well
        off = [r for r in caplog.records if "TLS certificate verification is OFF" in r.message]
        assert {r.levelno for r in off} == {logging.WARNING}
        assert any("auth URL" in r.message for r in off)
        assert any(https.url in r.message and "/v1/" in r.message for r in off)


# -- bad input: a clear error and nothing half-written --------------------------------------------
@pytest.mark.parametrize("name", ["a" * 257, "bad\x00name", "/lead", "..", "a/b", ""])
def test_invalid_container_names_are_refused_before_any_request(creds, name):
    with pytest.raises(InvalidNameError, match="container name"):
        SwiftStore(name, **creds)


@pytest.mark.parametrize(
    "key", ["/lead/zarr.json", "a/../b", "a/./b", "a//b", "nul\x00key", "k" * 1100]
)
def test_invalid_keys_are_refused_and_nothing_is_written(creds, container_name, key):
    store = SwiftStore(container_name, **creds)
    sync(store.set("ok", PROTO.buffer.from_bytes(b"1")))
    with pytest.raises(InvalidNameError):
        sync(store.set(key, PROTO.buffer.from_bytes(b"x")))
    with pytest.raises(InvalidNameError):
        sync(store.get(key, PROTO))
    assert list(store.walk()) == ["ok"]


@pytest.mark.parametrize("prefix", ["/abs", "a/../b", "x\x00"])
def test_invalid_prefixes_are_refused(creds, container_name, prefix):
    with pytest.raises(InvalidNameError, match="prefix"):
        SwiftStore(container_name, prefix, **creds)


def test_wrong_credentials_are_a_clear_authentication_error(swift_server, container_name):
    with pytest.raises(AuthenticationError, match="test:tester.*refused") as info:
        SwiftStore(
            container_name, authurl=swift_server.auth_url, user="test:tester", key="wrong-key-123"
        ).listdir()
    assert "wrong-key-123" not in str(info.value)
    with pytest.raises(ConfigurationError, match="missing: key"):
        SwiftStore(container_name, authurl=swift_server.auth_url, user="test:tester")


def test_an_unreachable_auth_url_fails_fast_and_clearly(container_name):
    port = _free_ports(1)[0]
    started = time.monotonic()
    with pytest.raises(AuthenticationError, match=f"could not reach auth URL .*:{port}"):
        SwiftStore(
            container_name, authurl=f"http://127.0.0.1:{port}/auth/v1.0", user="a:b", key="c"
        ).listdir()
    assert time.monotonic() - started < 15


def test_writes_to_a_read_only_store_are_refused_and_nothing_changes(creds, container_name):
    store = SwiftStore(container_name, **creds)
    sync(store.set("k", PROTO.buffer.from_bytes(b"v")))
    ro = SwiftStore(container_name, **creds, read_only=True)
    for attempt in (
        lambda: sync(ro.set("k", PROTO.buffer.from_bytes(b"w"))),
        lambda: sync(ro.set_if_not_exists("n", PROTO.buffer.from_bytes(b"w"))),
        lambda: sync(ro.delete("k")),
        lambda: sync(ro.delete_dir("")),
        lambda: zarr.create_array(ro, name="z", shape=(1,), dtype="i1"),
    ):
        with pytest.raises((ReadOnlyError, ValueError), match="read-only|read only"):
            attempt()
    assert list(store.walk()) == ["k"] and sync(store.get("k", PROTO)).to_bytes() == b"v"


def test_byte_ranges_negative_are_errors_oversized_match_zarrs_memory_store(creds, container_name):
    store = SwiftStore(container_name, **creds)
    memory = MemoryStore()
    value = PROTO.buffer.from_bytes(b"0123456789")
    sync(store.set("k", value))
    sync(memory.set("k", value))
    for bad in (
        RangeByteRequest(-1, 5),
        RangeByteRequest(5, 2),
        OffsetByteRequest(-3),
        SuffixByteRequest(-1),
    ):
        with pytest.raises(ValueError, match="invalid|must be"):
            sync(store.get("k", PROTO, bad))
    for big in (
        RangeByteRequest(3, 10**12),
        RangeByteRequest(50, 60),
        OffsetByteRequest(10**9),
        SuffixByteRequest(10**9),
        OffsetByteRequest(10),
    ):
        got = sync(store.get("k", PROTO, big))
        want = sync(memory.get("k", PROTO, big))
        assert got.to_bytes() == want.to_bytes(), big


def test_an_expired_or_bogus_token_without_credentials_is_token_expired(
    swift_server, container_name
):
    store = SwiftStore(
        container_name,
        preauthurl=swift_server.storage_url("test"),
        preauthtoken="AUTH_tk" + "0" * 32,
    )
    with pytest.raises(TokenExpiredError, match="401") as info:
        store.listdir()
    assert "AUTH_tk" not in str(info.value)


# -- the command line -------------------------------------------------------------------------------
def _cli(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    import os
    import sys

    clean = {k: v for k, v in os.environ.items() if not k.startswith(("ST_", "OS_"))}
    done = subprocess.run(
        [sys.executable, "-m", "swiftzarr_batch.cli.main", *args],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.returncode, done.stdout + done.stderr


def test_cli_output_shows_no_secret_except_the_token_commands_own_exports(
    secret_server, container_name
):
    users = secret_server.users
    key, other_key = users["sec:alice"], users["sec2:bob"]
    env = {"ST_AUTH": secret_server.auth_url, "ST_USER": "sec:alice", "ST_KEY": key}
    store = SwiftStore(container_name, authurl=secret_server.auth_url, user="sec:alice", key=key)
    zarr.create_array(store, name="a", shape=(8,), chunks=(4,), dtype="i4")[:] = 5
    token = store.session.token.token
    loc = f"swift://{container_name}"
    bad_token = _tamper(token)
    runs = {
        "ls": (["--debug", "ls", "-l", loc], env, 0),
        "tree": (["--debug", "tree", loc], env, 0),
        "du": (["--debug", "du", loc], env, 0),
        "verify": (["--debug", "verify", loc], env, 0),
        "copy": (["--debug", "copy", loc, f"{loc}-copy"], env, 0),
        "wrong key": (["--debug", "ls", loc], {**env, "ST_KEY": key + "x"}, 1),
        "other account": (
            ["--debug", "ls", loc],
            {
                "OS_STORAGE_URL": store.storage_url,
                "OS_AUTH_TOKEN": SwiftStore(
                    "x", authurl=secret_server.auth_url, user="sec2:bob", key=other_key
                ).session.token.token,
            },
            1,
        ),
        "bad token": (
            ["--debug", "verify", loc],
            {"OS_STORAGE_URL": store.storage_url, "OS_AUTH_TOKEN": bad_token},
            1,
        ),
    }
    for name, (args, run_env, expected) in runs.items():
        code, out = _cli(args, run_env)
        assert code == expected, (name, out[-2000:])
        assert _leaks(out, [key, other_key, token, bad_token]) == [], (name, out[-2000:])
    code, out = _cli(["token"], env)
    assert code == 0 and key not in out
    exports = [line for line in out.splitlines() if line.startswith("export OS_AUTH_TOKEN=")]
    assert len(exports) == 1 and "AUTH_" in exports[0]
    others = [line for line in out.splitlines() if line not in exports]
    assert _leaks("\n".join(others), [key, other_key]) == []
