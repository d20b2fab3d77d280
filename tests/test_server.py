"""Tests of swiftzarr_batch.testing.swift_server: a real Swift on 127.0.0.1, driven by real clients."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from swiftclient import client as sc
from swiftclient.exceptions import ClientException

from swiftzarr_batch.testing import swift_server as server_mod
from swiftzarr_batch.testing.swift_server import (
    DEFAULT_USERS,
    PROBE_USER_AGENT,
    LocalSwift,
    ServerError,
)


@pytest.fixture(scope="module")
def swift():
    with LocalSwift() as srv:
        yield srv


def _auth(srv: LocalSwift, user: str | None = None) -> tuple[str, str]:
    user = user or srv.user
    return sc.get_auth(srv.auth_url, user, srv.users[user], auth_version="1")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_properties_and_env(swift: LocalSwift) -> None:
    assert swift.running
    port = swift.proxy_url.rsplit(":", 1)[1]
    assert swift.proxy_url == f"http://127.0.0.1:{port}"
    assert swift.auth_url == f"http://127.0.0.1:{port}/auth/v1.0"
    assert swift.storage_url() == f"http://127.0.0.1:{port}/v1/AUTH_test"
    assert swift.storage_url("test2") == f"http://127.0.0.1:{port}/v1/AUTH_test2"
    assert (swift.user, swift.key) == ("test:tester", "testing")
    assert swift.users == dict(DEFAULT_USERS)
    assert swift.env == {"ST_AUTH": swift.auth_url, "ST_USER": "test:tester", "ST_KEY": "testing"}
    lines = swift.export_lines().splitlines()
    assert lines == [
        f"export ST_AUTH={swift.auth_url}",
        "export ST_USER=test:tester",
        "export ST_KEY=testing",
    ]
    assert swift.proxy_log_path == swift.data_dir / "logs" / "proxy.log"
    assert set(swift.pids) >= {"account", "container", "object", "proxy"}
    text = repr(swift)
    assert swift.proxy_url in text
    assert all(key not in text for key in DEFAULT_USERS.values())


def test_every_user_authenticates(swift: LocalSwift) -> None:
    for user, account in (
        ("test:tester", "test"),
        ("test2:tester2", "test2"),
        ("test:reader", "test"),
    ):
        url, token = _auth(swift, user)
        assert url == swift.storage_url(account)
        assert token.startswith("AUTH_")
    with pytest.raises(ClientException) as err:
        sc.get_auth(swift.auth_url, "test:tester", "wrong", auth_version="1")
    assert err.value.http_status == 401


def test_object_roundtrip_with_swiftclient(swift: LocalSwift) -> None:
    url, token = _auth(swift)
    sc.put_container(url, token, "roundtrip")
    etag = sc.put_object(url, token, "roundtrip", "a/b.bin", b"\x00hello")
    assert etag == hashlib.md5(b"\x00hello").hexdigest()
    headers, body = sc.get_object(url, token, "roundtrip", "a/b.bin")
    assert body == b"\x00hello" and headers["content-length"] == "6"
    sc.delete_object(url, token, "roundtrip", "a/b.bin")
    with pytest.raises(ClientException) as err:
        sc.get_object(url, token, "roundtrip", "a/b.bin")
    assert err.value.http_status == 404


def test_swift_cli_lists_containers(swift: LocalSwift) -> None:
    cli = Path(sys.executable).with_name("swift")
    if not cli.exists():
        pytest.skip(f"no swift CLI next to {sys.executable}")
    url, token = _auth(swift)
    sc.put_container(url, token, "cli-visible")
    out = subprocess.run(
        [str(cli), "-A", swift.auth_url, "-U", swift.user, "-K", swift.key, "list"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "cli-visible" in out.stdout.split()


def test_accounts_are_isolated(swift: LocalSwift) -> None:
    url, token = _auth(swift)
    sc.put_container(url, token, "private")
    url2, token2 = _auth(swift, "test2:tester2")
    assert url2 == swift.storage_url("test2")
    sc.get_account(url2, token2)  # its own account: fine (auto-created)
    with pytest.raises(ClientException) as err:
        sc.get_account(url, token2)
    assert err.value.http_status == 403
    reader_url, reader_token = _auth(swift, "test:reader")
    with pytest.raises(ClientException) as err:  # not .admin and no ACL grants it anything
        sc.get_container(reader_url, reader_token, "private")
    assert err.value.http_status == 403
    with pytest.raises(ClientException) as err:
        sc.put_object(reader_url, reader_token, "private", "x", b"x")
    assert err.value.http_status == 403


def test_token_expires_header_is_seconds_left(swift: LocalSwift) -> None:
    r = requests.get(
        swift.auth_url, headers={"X-Auth-User": swift.user, "X-Auth-Key": swift.key}, timeout=10
    )
    assert r.status_code == 200
    assert 86400 - 5 <= int(r.headers["X-Auth-Token-Expires"]) <= 86400


def test_proxy_access_log_has_request_lines(swift: LocalSwift) -> None:
    url, token = _auth(swift)
    sc.put_container(url, token, "logged-container")
    deadline = time.monotonic() + 5
    while True:
        lines = swift.proxy_log_path.read_text().splitlines()
        if any("PUT /v1/AUTH_test/logged-container" in ln for ln in lines):
            break
        assert time.monotonic() < deadline, lines[-5:]
        time.sleep(0.1)
    auth_lines = [ln for ln in lines if " GET /auth/v1.0 " in ln]
    assert any(" 200 " in ln for ln in auth_lines)
    assert any(" 401 " in ln for ln in auth_lines)  # the wrong key tried above
    probes = [ln for ln in auth_lines if PROBE_USER_AGENT in ln]
    assert probes  # start()'s readiness probe authenticates once
    ours = [ln for ln in swift.access_log_lines() if " GET /auth/v1.0 " in ln]
    assert len(ours) == len(auth_lines) - len(probes)
    assert len(swift.access_log_lines(include_probes=True)) >= len(lines)
    assert not any("testing" in ln for ln in lines)  # keys are never logged


def test_bulk_delete(swift: LocalSwift) -> None:
    url, token = _auth(swift)
    sc.put_container(url, token, "bulk")
    names = [f"o{i}" for i in range(3)]
    for name in names:
        sc.put_object(url, token, "bulk", name, b"data")
    sc.put_container(url, token, "bulk-nonempty")
    sc.put_object(url, token, "bulk-nonempty", "keep", b"data")
    body = "\n".join([*(f"/bulk/{n}" for n in names), "/bulk/missing", "/bulk-nonempty"])
    r = requests.delete(
        f"{url}?bulk-delete",
        data=body.encode(),
        timeout=30,
        headers={"X-Auth-Token": token, "Content-Type": "text/plain", "Accept": "application/json"},
    )
    assert r.status_code == 200  # even though one delete failed
    result = json.loads(r.text)
    assert result["Number Deleted"] == 3
    assert result["Number Not Found"] == 1
    assert result["Response Status"] == "400 Bad Request"  # the body tells of the failure
    assert result["Errors"] == [["/bulk-nonempty", "409 Conflict"]]
    assert sc.get_container(url, token, "bulk")[1] == []


def test_s3api_and_max_file_size() -> None:
    with LocalSwift(s3api=True, max_file_size=1024) as srv:
        info = requests.get(srv.proxy_url + "/info", timeout=10).json()
        assert info["swift"]["max_file_size"] == 1024 and "s3api" in info
        url, token = _auth(srv)
        sc.put_container(url, token, "s3-bucket")
        sc.put_object(url, token, "s3-bucket", "small", b"x" * 1024)
        with pytest.raises(ClientException) as err:
            sc.put_object(url, token, "s3-bucket", "big", b"x" * 1025)
        assert err.value.http_status == 413
        date = email.utils.formatdate(usegmt=True)
        to_sign = f"GET\n\n\n{date}\n/"
        sig = base64.b64encode(hmac.new(srv.key.encode(), to_sign.encode(), "sha1").digest())
        r = requests.get(
            srv.proxy_url + "/",
            timeout=10,
            headers={"Date": date, "Authorization": f"AWS {srv.user}:{sig.decode()}"},
        )
        assert r.status_code == 200, r.text
        assert "<Name>s3-bucket</Name>" in r.text
        bad = requests.get(
            srv.proxy_url + "/",
            timeout=10,
            headers={"Date": date, "Authorization": f"AWS {srv.user}:AAAA"},
        )
        assert bad.status_code == 403 and "SignatureDoesNotMatch" in bad.text


def test_short_token_life_expires_and_stop_cleans_up() -> None:
    srv = LocalSwift(token_life=3, memcached=False)
    with srv:
        assert "memcached" not in srv.pids
        r = requests.get(
            srv.auth_url, headers={"X-Auth-User": srv.user, "X-Auth-Key": srv.key}, timeout=10
        )
        assert int(r.headers["X-Auth-Token-Expires"]) <= 3
        url, token = r.headers["X-Storage-Url"], r.headers["X-Auth-Token"]
        sc.head_account(url, token)
        time.sleep(4.5)  # fernet time stamps are whole seconds: expired after 3 to 4 s
        with pytest.raises(ClientException) as err:
            sc.head_account(url, token)
        assert err.value.http_status == 401
        pids, data_dir = srv.pids, srv.data_dir
        assert data_dir.is_dir()
        # without the cache filter tempauth's complaint about it is filtered out of the log
        assert "swift.cache" not in (data_dir / "logs" / "proxy-server.log").read_text()
    assert not srv.running
    assert not any(_alive(pid) for pid in pids.values())
    assert not data_dir.exists()
    srv.stop()  # idempotent


def test_restart_proxy_keeps_data_and_tokens(swift: LocalSwift) -> None:
    url, token = _auth(swift)
    sc.put_container(url, token, "survivor")
    sc.put_object(url, token, "survivor", "obj", b"still here")
    proxy_url, old_pid = swift.proxy_url, swift.pids["proxy"]
    swift.stop_proxy()
    assert not _alive(old_pid) and not swift.running
    with pytest.raises(requests.ConnectionError):
        requests.get(swift.proxy_url + "/healthcheck", timeout=5)
    swift.start_proxy()
    swift.restart_proxy()
    assert swift.proxy_url == proxy_url and swift.pids["proxy"] != old_pid and swift.running
    assert sc.get_object(url, token, "survivor", "obj")[1] == b"still here"  # same fernet key


def test_given_data_dir_is_kept_and_reused(tmp_path: Path) -> None:
    data = tmp_path / "swiftdata"
    with LocalSwift(data, memcached=False) as srv:
        url, token = _auth(srv)
        sc.put_container(url, token, "persist")
        sc.put_object(url, token, "persist", "obj", b"kept")
        assert (data / "etc" / "swift.conf").exists() and srv.data_dir == data.resolve()
    assert (data / "srv" / "node" / "d1").is_dir()
    with LocalSwift(data, memcached=False) as srv:  # new ports, same hash prefix: same data
        url, token = _auth(srv)
        assert sc.get_object(url, token, "persist", "obj")[1] == b"kept"


def test_server_dying_at_start_raises_with_its_log(monkeypatch: pytest.MonkeyPatch) -> None:
    from swiftzarr_batch.testing import swift_configs as _swift_configs

    good = _swift_configs.proxy_server_conf
    monkeypatch.setattr(
        _swift_configs,
        "proxy_server_conf",
        lambda s: good(s).replace("use = egg:swift#tempurl", "use = egg:swift#no_such_filter"),
    )
    srv = LocalSwift(memcached=False)
    with pytest.raises(ServerError, match="(?s)exited during start.*no_such_filter"):
        srv.start()
    assert not srv.pids and not srv.running
    assert srv._data_dir is None  # the temp dir is gone again


def _module_env() -> dict[str, str]:
    root = Path(server_mod.__file__).resolve().parent.parent
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(root), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }


def test_install_and_run_subcommands() -> None:
    env = _module_env()
    out = subprocess.run(
        [sys.executable, "-m", "swiftzarr_batch.testing.swift_server", "install"],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    assert Path(out.stdout.strip()).name == "python"
    script = "import os, sys; print(os.environ['ST_AUTH'], os.environ['ST_USER']); sys.exit(7)"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "swiftzarr_batch.testing.swift_server",
            "run",
            "--no-memcached",
            "--",
            sys.executable,
            "-c",
            script,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 7, done.stderr
    auth_url, user = done.stdout.split()
    assert auth_url.startswith("http://127.0.0.1:") and auth_url.endswith("/auth/v1.0")
    assert user == "test:tester"


def test_serve_prints_exports_and_stops_on_sigterm() -> None:
    env = _module_env()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "swiftzarr_batch.testing.swift_server",
            "--token-life",
            "77",
            "--no-memcached",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        exports = dict(
            proc.stdout.readline().strip().removeprefix("export ").split("=", 1) for _ in range(3)
        )
        assert set(exports) == {"ST_AUTH", "ST_USER", "ST_KEY"}
        r = requests.get(
            exports["ST_AUTH"],
            timeout=10,
            headers={"X-Auth-User": exports["ST_USER"], "X-Auth-Key": exports["ST_KEY"]},
        )
        assert r.status_code == 200 and int(r.headers["X-Auth-Token-Expires"]) <= 77
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with pytest.raises(requests.ConnectionError):
        requests.get(exports["ST_AUTH"], timeout=5)


def test_failed_install_reports_pip_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWIFTZARR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(server_mod, "SWIFT_REQUIREMENT", str(tmp_path / "no-such-swift.whl"))
    with pytest.raises(ServerError, match="no-such-swift"):
        server_mod.ensure_swift_installed()
    assert not list((tmp_path / "cache").glob("*/.swiftzarr-installed"))


def test_invalid_user_names_are_refused() -> None:
    with pytest.raises(ValueError):
        LocalSwift(users={"no_colon": "k"})
    with pytest.raises(ValueError):
        LocalSwift(users={"acc:us er": "k"})
