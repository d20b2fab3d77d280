"""Forward proxies (``swift.proxy``): a real ``tinyproxy`` on 127.0.0.1 shows in its own log that
auth and chunk PUTs/GETs went through it (absolute form for http://, ``CONNECT`` with TLS inside
for https://); ``NO_PROXY`` bypasses it; an explicit ``proxy=`` wins over the environment; a
proxy that refuses (407, 502) or is not there gives a clear, typed error naming the proxy and
never its password."""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from swiftzarr_batch import AuthenticationError, SwiftHTTPError, SwiftStore
from swiftzarr_batch.errors import ProxyError
from swiftzarr_batch.swift.proxy import Proxy, proxy_for, requests_proxies
from swiftzarr_batch.swift.retry import RetryPolicy
from swiftzarr_batch.swift.session import TransportOptions
from swiftzarr_batch.testing.faultproxy import FaultProxy

PROXY_VARS = [f"{n}_proxy" for n in ("http", "https", "all", "no")]
PROXY_VARS += [n.upper() for n in PROXY_VARS]
SECRET = "pr0xy-s3cret"
FAST = RetryPolicy(attempts=2, base_delay=0.05, max_delay=0.1, budget=5.0)


@pytest.fixture(autouse=True)
def _no_ambient_proxies(monkeypatch):
    for name in [*PROXY_VARS, "REQUEST_METHOD"]:
        monkeypatch.delenv(name, raising=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Tinyproxy:
    """Debian's tinyproxy with its own config and log, on a free 127.0.0.1 port."""

    def __init__(self, tmp: Path, connect_ports: list[int]) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp / "tinyproxy.log"
        conf = tmp / "tinyproxy.conf"
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Timeout 30",
            f'LogFile "{self.log}"',
            "LogLevel Info",
            "MaxClients 64",
            "Allow 127.0.0.1",
            "DisableViaHeader Yes",
            *(f"ConnectPort {p}" for p in connect_ports),
        ]
        if os.getuid() == 0:  # it would switch to "nobody", who cannot write our log
            lines += ["User root", "Group root"]
        conf.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(
            ["tinyproxy", "-d", "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"tinyproxy did not start: {self.lines()[-5:]}") from None
                time.sleep(0.05)

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def requests(self, what: str) -> list[str]:
        """The log's request lines naming ``what`` (``PUT http://...``, ``CONNECT host``)."""
        return [
            line for line in self.lines() if "Request (file descriptor" in line and what in line
        ]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def tinyproxy(tmp_path):
    """A factory: ``tinyproxy(connect_ports)``; each started one is stopped by its pid."""
    if shutil.which("tinyproxy") is None:
        pytest.skip("tinyproxy is not installed (scripts/setup_system.sh installs it as root)")
    started: list[Tinyproxy] = []

    def start(connect_ports: list[int] | None = None) -> Tinyproxy:
        where = tmp_path / f"tinyproxy{len(started)}"
        where.mkdir()
        started.append(Tinyproxy(where, connect_ports or []))
        return started[-1]

    yield start
    for proxy in started:
        proxy.stop()


def _fresh(creds: dict[str, str], container_name: str) -> dict[str, str]:
    """``creds`` with an auth URL of its own (a query TempAuth ignores), so that the process's
    token cache does not spare the auth request whose route a test looks at."""
    return {**creds, "authurl": f"{creds['authurl']}?for={container_name}"}


def _roundtrip(store: SwiftStore) -> None:
    data = np.arange(12, dtype="i2").reshape(3, 4)
    zarr.create_array(store, name="a", shape=(3, 4), chunks=(2, 2), dtype="i2")[:] = data
    np.testing.assert_array_equal(zarr.open_array(store, path="a", mode="r")[:], data)


def test_environment_is_read_as_requests_and_urllib_read_it(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://up:3128")
    monkeypatch.setenv("https_proxy", "http://u%40x:p%3Aw@low:8080")
    monkeypatch.setenv("HTTPS_PROXY", "http://upper-loses:1")
    monkeypatch.setenv("NO_PROXY", "example.org, .lab.net,10.0.0.0/8,host:8443")
    assert proxy_for("http://swift:8080/v1") == Proxy("up", 3128)
    tls = proxy_for("https://swift/v1")
    assert tls == Proxy("low", 8080, "u@x", "p:w")  # lower case wins, credentials unquoted
    assert SECRET not in repr(tls) and "p:w" not in repr(tls) and str(tls) == "http://low:8080"
    for bypassed in (
        "https://example.org/v1",
        "https://a.example.org/v1",
        "https://x.lab.net/v1",
        "http://10.1.2.3:8080/v1",
        "https://host:8443/v1",
    ):
        assert proxy_for(bypassed) is None, bypassed
    assert proxy_for("https://host:443/v1") is not None  # another port of that host
    assert proxy_for("https://notexample.org/v1") is not None
    assert proxy_for("https://example.org/v1", "http://explicit:9") == Proxy("explicit", 9)
    assert proxy_for("http://swift/v1", False) is None
    assert proxy_for("http://swift/v1", "") is None
    assert requests_proxies("http://example.org/") == {"http": None, "https": None, "all": None}
    monkeypatch.setenv("no_proxy", "*")
    assert proxy_for("https://anything/v1") is None
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.delenv("no_proxy")
    monkeypatch.delenv("HTTP_PROXY")
    monkeypatch.setenv("ALL_PROXY", "all:3128")
    assert proxy_for("http://swift/v1") == Proxy("all", 3128)
    options = TransportOptions(proxy=f"http://me:{SECRET}@p:3128")
    assert options.proxy == Proxy("p", 3128, "me", SECRET)
    assert SECRET not in repr(options)


def test_http_proxy_carries_auth_and_every_chunk_and_no_proxy_bypasses_it(
    swift_server, creds, tinyproxy, container_name, monkeypatch
):
    proxy = tinyproxy()
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    store = SwiftStore(container_name, **_fresh(creds, container_name))
    _roundtrip(store)
    assert proxy.requests(f"GET {swift_server.auth_url}?for=")  # auth (requests) through it
    chunks = f"/{container_name}/a/c/"
    assert len([x for x in proxy.requests(chunks) if " PUT http://" in x]) == 4
    assert len([x for x in proxy.requests(chunks) if " GET http://" in x]) == 4

    seen = len(proxy.requests(""))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    _roundtrip(SwiftStore(f"{container_name}-direct", **creds))
    assert len(proxy.requests("")) == seen  # nothing went through it


def test_explicit_proxy_wins_over_the_environment(
    swift_server, creds, tinyproxy, container_name, monkeypatch
):
    proxy = tinyproxy()
    dead = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("HTTP_PROXY", dead)
    monkeypatch.setenv("HTTPS_PROXY", dead)
    store = SwiftStore(container_name, **_fresh(creds, container_name), proxy=proxy.url)
    _roundtrip(store)
    assert proxy.requests(f"/{container_name}/a/c/0/0 ") and proxy.requests("/auth/v1.0?for=")
    assert store.conn.head_container(container_name)  # python-swiftclient: the same proxy
    assert proxy.requests(f"HEAD {swift_server.storage_url()}/{container_name} ")

    seen = len(proxy.requests(""))
    direct = SwiftStore(
        f"{container_name}-b", **_fresh(creds, "b"), proxy=False
    )  # env's dead proxy: unused
    _roundtrip(direct)
    assert direct.conn.head_container(f"{container_name}-b")
    assert len(proxy.requests("")) == seen


def test_https_through_connect_keeps_tls_and_keepalive(
    swift_server, tinyproxy, container_name, monkeypatch
):
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    bundle = Path(os.environ.get("TMPDIR", "/tmp")) / f"proxy-ca-{os.getpid()}.pem"
    ca.cert_pem.write_to_path(str(bundle))
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    try:
        with FaultProxy(swift_server.proxy_url, ssl_context=server) as https:
            port = int(https.url.rsplit(":", 1)[1])
            proxy = tinyproxy([port])
            monkeypatch.setenv("HTTPS_PROXY", proxy.url)
            store = SwiftStore(
                container_name,
                authurl=https.url + "/auth/v1.0",
                user=swift_server.user,
                key=swift_server.key,
                cacert=str(bundle),
                max_connections=2,
            )
            _roundtrip(store)
            assert store.storage_url.startswith("https://")
            tunnels = proxy.requests(f"CONNECT 127.0.0.1:{port} ")
            # auth's own tunnel(s), then at most one per data connection: they were reused
            assert 2 <= len(tunnels) <= 1 + 2 + 2
            assert https.counts["forwarded"] > len(tunnels)
    finally:
        bundle.unlink(missing_ok=True)


class ScriptedProxy:
    """A "proxy" on 127.0.0.1 that answers every request with ``status`` and closes."""

    def __init__(self, status: str) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.answer = (
            f"HTTP/1.1 {status}\r\nProxy-Authenticate: Basic realm=site\r\n"
            "Content-Length: 0\r\nConnection: close\r\n\r\n"
        ).encode()
        self.heads: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            with client:
                client.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = client.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                self.heads.append(data)
                client.sendall(self.answer)

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("status", ["407 Proxy Authentication Required", "502 Bad Gateway"])
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_refusing_proxy_is_a_typed_error_naming_it_without_its_password(
    swift_server, creds, container_name, status, scheme
):
    scripted = ScriptedProxy(status)
    code = int(status.split()[0])
    try:
        with_secret = scripted.url.replace("http://", f"http://me:{SECRET}@")
        url = swift_server.storage_url().replace("http://", f"{scheme}://")
        store = SwiftStore(
            container_name,
            preauthurl=url,
            preauthtoken="tok",
            proxy=with_secret,
            retry=FAST,
            read_only=True,
        )
        if scheme == "http" and code == 502:  # an answer like any server's 502: retried
            with pytest.raises(SwiftHTTPError, match="502") as info:
                zarr.open_group(store, mode="r")
        else:
            with pytest.raises(ProxyError) as info:
                zarr.open_group(store, mode="r")
            assert info.value.status == code
            assert scripted.url in str(info.value)
        assert SECRET not in str(info.value) and SECRET not in repr(store.session.options)
        assert any(b"Proxy-Authorization: Basic " in head for head in scripted.heads)
        if scheme == "https":
            assert scripted.heads[0].startswith(b"CONNECT 127.0.0.1:")
        else:
            assert scripted.heads[0].startswith(b"GET http://127.0.0.1:")
        if code == 407:  # auth through it: an AuthenticationError, also naming it
            with pytest.raises(AuthenticationError, match="proxy http://127.0.0.1") as auth:
                SwiftStore(container_name, **_fresh(creds, scheme), proxy=with_secret).session
            assert SECRET not in str(auth.value)
    finally:
        scripted.close()


def test_a_dead_proxy_is_a_connection_error_naming_it(swift_server, container_name):
    dead = f"http://127.0.0.1:{_free_port()}"
    store = SwiftStore(
        container_name,
        preauthurl=swift_server.storage_url(),
        preauthtoken="tok",
        proxy=dead.replace("http://", f"http://me:{SECRET}@"),
        retry=FAST,
        read_only=True,
    )
    with pytest.raises(SwiftHTTPError, match=f"through proxy {dead}") as info:
        zarr.open_group(store, mode="r")
    assert "ConnectionRefusedError" in str(info.value) and SECRET not in str(info.value)
