"""Shared fixtures: one real local Swift server per test session (started by the tests)."""

from __future__ import annotations

import logging
import os
import uuid

import pytest

from swiftzarr_batch.testing.swift_server import LocalSwift

ENV_VARS = (
    "ST_AUTH",
    "ST_USER",
    "ST_KEY",
    "OS_STORAGE_URL",
    "OS_AUTH_TOKEN",
    "OS_AUTH_URL",
    "OS_USERNAME",
    "OS_PASSWORD",
    "OS_PROJECT_NAME",
    "OS_PROJECT_ID",
    "OS_CLOUD",
    "OS_USER_DOMAIN_NAME",
    "OS_PROJECT_DOMAIN_NAME",
    "OS_APPLICATION_CREDENTIAL_ID",
    "OS_APPLICATION_CREDENTIAL_SECRET",
    "OS_REGION_NAME",
    "OS_INTERFACE",
    "OS_CLIENT_CONFIG_FILE",
)


@pytest.fixture(scope="session")
def swift_server():
    """A real OpenStack Swift (proxy, account, container, object servers) on 127.0.0.1."""
    with LocalSwift() as server:
        yield server


@pytest.fixture(scope="session")
def small_swift():
    """A second real Swift whose ``max_file_size`` is 1 MiB: anything larger is a Static Large
    Object, so the large-object paths run on small files (started only by tests that ask)."""
    with LocalSwift(max_file_size=SMALL_MAX_FILE_SIZE) as server:
        yield server


SMALL_MAX_FILE_SIZE = 2**20


@pytest.fixture
def creds(swift_server) -> dict[str, str]:
    return {"authurl": swift_server.auth_url, "user": swift_server.user, "key": swift_server.key}


@pytest.fixture
def swift_env(swift_server, monkeypatch):
    """ST_AUTH/ST_USER/ST_KEY of the local server, as the seed notebook's users have them."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    for name, value in swift_server.env.items():
        monkeypatch.setenv(name, value)
    return swift_server.env


@pytest.fixture(autouse=True)
def _no_ambient_credentials(monkeypatch):
    """Tests choose their credentials explicitly; nothing leaks in from the caller's shell."""
    for name in ENV_VARS:
        if name in os.environ:
            monkeypatch.delenv(name)


@pytest.fixture
def container_name() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def swift_conn(swift_server):
    """A python-swiftclient connection, independent of our data path, to check what's stored."""
    from swiftclient.client import Connection

    conn = Connection(authurl=swift_server.auth_url, user=swift_server.user, key=swift_server.key)
    yield conn
    conn.close()


@pytest.fixture
def cli():
    """``swiftzarr`` in this process (no interpreter start-up): ``cli(*argv)`` is its exit
    code. The root logger it configures (a handler on this test's captured stderr) is put back
    after, or later tests would log into a closed stream."""
    from swiftzarr_batch.cli.main import main as cli_main

    root = logging.getLogger()
    saved = root.handlers[:], root.level

    def run(*argv: str) -> int:
        with pytest.raises(SystemExit) as done:
            cli_main(list(argv))
        return int(done.value.code or 0)

    yield run
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
