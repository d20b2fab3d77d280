"""A real OpenStack Keystone on 127.0.0.1, for tests and demos of Keystone v3 auth.

Why a real one: Keystone v3 is what most production Swift clusters sit behind, and its token
format, catalog and application credentials are what ``swiftzarr_batch.auth.keystone`` must handle;
a mock would only echo our own assumptions. ``LocalKeystone`` does what an operator does:

* installs PyPI ``keystone`` + ``gunicorn`` once into their own cached virtualenv, and
  ``keystonemiddleware`` into the Swift one (for the proxy's ``authtoken`` + ``keystoneauth``
  filters): see ``install``;
* writes ``keystone.conf`` (sqlite, fernet tokens) into a data dir and runs ``keystone-manage
  db_sync``, ``fernet_setup``, ``credential_setup`` and ``bootstrap``;
* serves the WSGI app with gunicorn (through ``keystone_launcher.py``: Keystone's config
  parser reads ``sys.argv`` and chokes on gunicorn's arguments) on a free loopback port, as a
  process group of its own (``processes.ServerProcesses``), stopped by its pid;
* creates projects and users (``add_user``) and, once the Swift proxy is up, the object-store
  service and endpoint (``register_swift``).

The install functions live in ``install`` and are re-exported here, where callers found them.
Start it only for Keystone tests: a Swift proxy with ``authtoken`` asks Keystone about every
token it does not know, TempAuth's included, which slows everything else down.
"""

from __future__ import annotations

import grp
import logging
import os
import pwd
import secrets
import shutil
import tempfile
import time
from collections.abc import Collection
from pathlib import Path
from typing import Any

import requests

from swiftzarr_batch.errors import ServerError
from swiftzarr_batch.testing.install import (
    KEYSTONE_REQUIREMENT,
    KEYSTONEMIDDLEWARE_REQUIREMENT,
    ensure_keystone_installed,
    ensure_keystonemiddleware_installed,
    run_install_steps,
)
from swiftzarr_batch.testing.processes import ServerProcesses, free_ports, tail

__all__ = [
    "KEYSTONEMIDDLEWARE_REQUIREMENT",
    "KEYSTONE_REQUIREMENT",
    "LocalKeystone",
    "ensure_keystone_installed",
    "ensure_keystonemiddleware_installed",
]

log = logging.getLogger(__name__)

_LAUNCHER = Path(__file__).with_name("keystone_launcher.py")
ADMIN_USER = "admin"
ADMIN_PROJECT = "admin"
REGION = "RegionOne"
_STOP_GRACE = 10.0  # gunicorn finishes its workers' requests first

#: A decoded JSON object of Keystone's API.
JSONObject = dict[str, Any]


class LocalKeystone:
    """Keystone v3 (sqlite, fernet tokens) on 127.0.0.1, served by gunicorn; a context manager.

    After ``start()``: ``auth_url`` (``.../v3``), an ``admin`` user/project (password
    ``admin_password``), ``add_user``, ``create_application_credential``, ``register_swift``
    and ``authtoken_settings`` (what the Swift proxy's ``authtoken`` filter needs).
    """

    def __init__(
        self, *, token_expiration: int = 3600, workers: int = 2, start_timeout: float = 120.0
    ) -> None:
        self.token_expiration = int(token_expiration)
        self.workers = workers
        self.start_timeout = start_timeout
        self.admin_password = secrets.token_urlsafe(16)
        self._dir: Path | None = None
        self._procs = ServerProcesses("local Keystone", grace=_STOP_GRACE)
        self.port: int | None = None
        self._admin_token: str | None = None

    # -- properties -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The Keystone base URL on 127.0.0.1; ``ServerError`` before ``start``."""
        if self.port is None:
            raise ServerError("Keystone is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_url(self) -> str:
        """The v3 identity endpoint, what ``OS_AUTH_URL`` should hold."""
        return f"{self.url}/v3"

    @property
    def data_dir(self) -> Path:
        """The server's temporary directory (``keystone.conf``, its sqlite database, keys and logs);
        ``ServerError`` before ``start``."""
        if self._dir is None:
            raise ServerError("Keystone is not started")
        return self._dir

    def __repr__(self) -> str:  # never the passwords
        return f"<LocalKeystone {self.url if self.port else 'not started'}>"

    def __enter__(self) -> LocalKeystone:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> LocalKeystone:
        """Install (once), configure, bootstrap and serve Keystone; return when it answers."""
        if self._procs:
            raise ServerError("already started")
        python = ensure_keystone_installed()
        started = time.monotonic()
        self._dir = Path(tempfile.mkdtemp(prefix="swiftzarr-keystone-"))
        try:
            self._procs.own_dir(self._dir)  # removed even if we die without stop()
            self.port = free_ports(1)[0]
            conf = self._write_conf()
            manage = [str(python.parent / "keystone-manage"), "--config-file", str(conf)]
            user = pwd.getpwuid(os.geteuid()).pw_name
            group = grp.getgrgid(os.getegid()).gr_name
            steps = {
                "db_sync": [*manage, "db_sync"],
                "fernet_setup": [
                    *manage,
                    "fernet_setup",
                    "--keystone-user",
                    user,
                    "--keystone-group",
                    group,
                ],
                "credential_setup": [
                    *manage,
                    "credential_setup",
                    "--keystone-user",
                    user,
                    "--keystone-group",
                    group,
                ],
                "bootstrap": [
                    *manage,
                    "bootstrap",
                    "--bootstrap-password",
                    self.admin_password,
                    "--bootstrap-username",
                    ADMIN_USER,
                    "--bootstrap-project-name",
                    ADMIN_PROJECT,
                    "--bootstrap-role-name",
                    "admin",
                    "--bootstrap-region-id",
                    REGION,
                    *(
                        x
                        for i in ("admin", "public", "internal")
                        for x in (f"--bootstrap-{i}-url", self.auth_url)
                    ),
                ],
            }
            run_install_steps(
                steps,
                self.data_dir / "logs" / "keystone-manage.log",
                "keystone's database",
                env=_clean_env(),
            )
            log_dir = self.data_dir / "logs"
            argv = [
                str(python),
                "-I",
                str(_LAUNCHER),
                str(self.data_dir),
                f"127.0.0.1:{self.port}",
                str(self.workers),
                str(log_dir / "access.log"),
                str(log_dir / "error.log"),
            ]
            self._procs.spawn(
                "gunicorn", argv, log_dir / "gunicorn.log", cwd=self.data_dir, env=_clean_env()
            )
            self._procs.wait_ready(
                self._probe,
                deadline=started + self.start_timeout,
                timeout=self.start_timeout,
                logs=self._logs_tail,
                interval=0.2,
            )
            self._admin_token = self.token(ADMIN_USER, self.admin_password, ADMIN_PROJECT)
        except BaseException:
            self.stop()
            raise
        log.info("local Keystone up at %s in %.1f s", self.url, time.monotonic() - started)
        return self

    def stop(self) -> None:
        """Stop the gunicorn started here (its whole process group); remove the data dir."""
        self._procs.stop_all()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _write_conf(self) -> Path:
        d = self.data_dir
        for sub in ("logs", "fernet-keys", "credential-keys"):
            (d / sub).mkdir(mode=0o700)
        conf = d / "keystone.conf"
        conf.write_text(
            "[DEFAULT]\n"
            f"log_file = {d / 'logs' / 'keystone.log'}\n"
            "\n[database]\n"
            f"connection = sqlite:///{d / 'keystone.db'}\n"
            "\n[token]\nprovider = fernet\n"
            f"expiration = {self.token_expiration}\n"
            f"\n[fernet_tokens]\nkey_repository = {d / 'fernet-keys'}\n"
            f"\n[fernet_receipts]\nkey_repository = {d / 'fernet-keys'}\n"
            f"\n[credential]\nkey_repository = {d / 'credential-keys'}\n"
            "\n[cache]\nenabled = false\n"
        )
        conf.chmod(0o600)
        return conf

    def _probe(self) -> str | None:
        """None once Keystone answers ``GET /v3``, else what it did instead."""
        try:
            status = requests.get(self.auth_url, timeout=2).status_code
        except requests.RequestException as e:
            return f"GET /v3: {type(e).__name__}"
        return None if status == 200 else f"GET /v3 answered {status}"

    def _logs_tail(self, names: Collection[str]) -> str:
        """gunicorn's output, then the end of Keystone's own log (where its errors go)."""
        keystone_log = self.data_dir / "logs" / "keystone.log"
        return f"{self._procs.logs_tail(names)}\n--- {keystone_log}\n{tail(keystone_log)}"

    # -- administration -------------------------------------------------------------------------
    def token(self, user: str, password: str, project: str) -> str:
        """A project-scoped token, for administration (clients use ``auth.keystone``)."""
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {"name": user, "domain": {"id": "default"}, "password": password}
                    },
                },
                "scope": {"project": {"name": project, "domain": {"id": "default"}}},
            }
        }
        resp = requests.post(f"{self.auth_url}/auth/tokens", json=body, timeout=30)
        if resp.status_code != 201:
            raise ServerError(f"Keystone refused a token for {user}: {resp.status_code}")
        return resp.headers["X-Subject-Token"]

    def _api(
        self,
        method: str,
        path: str,
        body: JSONObject | None = None,
        token: str | None = None,
    ) -> JSONObject:
        resp = requests.request(
            method,
            f"{self.auth_url}{path}",
            json=body,
            timeout=30,
            headers={"X-Auth-Token": token or self._admin_token or ""},
        )
        if resp.status_code >= 300:
            raise ServerError(
                f"Keystone {method} {path} answered {resp.status_code}: {resp.text[:300]}"
            )
        if not resp.content:
            return {}
        answer = resp.json()
        if not isinstance(answer, dict):
            raise ServerError(f"Keystone {method} {path} answered {type(answer).__name__}")
        return answer

    def _id(self, kind: str, name: str) -> str:
        found = self._api("GET", f"/{kind}?name={name}")[kind]
        if not found:
            raise ServerError(f"no Keystone {kind[:-1]} named {name!r}")
        return str(found[0]["id"])

    def add_user(
        self, name: str, password: str, project: str, role: str = "member"
    ) -> dict[str, str]:
        """Create ``project`` (if needed) and ``name`` with ``role`` on it; return their ids."""
        try:
            project_id = self._id("projects", project)
        except ServerError:
            project_id = self._api(
                "POST", "/projects", {"project": {"name": project, "domain_id": "default"}}
            )["project"]["id"]
        user_id = self._api(
            "POST",
            "/users",
            {
                "user": {
                    "name": name,
                    "password": password,
                    "domain_id": "default",
                    "default_project_id": project_id,
                }
            },
        )["user"]["id"]
        role_id = self._id("roles", role)
        self._api("PUT", f"/projects/{project_id}/users/{user_id}/roles/{role_id}")
        return {"user_id": user_id, "project_id": project_id}

    def create_application_credential(
        self, user: str, password: str, project: str, name: str
    ) -> tuple[str, str]:
        """An application credential of ``user`` on ``project``: ``(id, secret)``."""
        token = self.token(user, password, project)
        user_id = self._id("users", user)
        cred = self._api(
            "POST",
            f"/users/{user_id}/application_credentials",
            {"application_credential": {"name": name}},
            token=token,
        )
        return cred["application_credential"]["id"], cred["application_credential"]["secret"]

    def register_swift(self, proxy_url: str, reseller_prefix: str = "KEY_") -> None:
        """Publish the Swift proxy as the object-store service (all three interfaces)."""
        service = self._api(
            "POST", "/services", {"service": {"type": "object-store", "name": "swift"}}
        )["service"]["id"]
        url = f"{proxy_url.rstrip('/')}/v1/{reseller_prefix}$(project_id)s"
        for interface in ("public", "internal", "admin"):
            self._api(
                "POST",
                "/endpoints",
                {
                    "endpoint": {
                        "service_id": service,
                        "interface": interface,
                        "url": url,
                        "region_id": REGION,
                    }
                },
            )

    def authtoken_settings(self) -> dict[str, str]:
        """Options of keystonemiddleware's ``authtoken`` filter for a Swift proxy."""
        return {
            "www_authenticate_uri": self.auth_url,
            "auth_url": self.url,
            "auth_type": "password",
            "username": ADMIN_USER,
            "password": self.admin_password,
            "project_name": ADMIN_PROJECT,
            "user_domain_id": "default",
            "project_domain_id": "default",
            "delay_auth_decision": "True",
            "include_service_catalog": "False",
        }

    def env(self, user: str, password: str, project: str) -> dict[str, str]:
        """OS_* variables as an OpenStack RC file would export them."""
        return {
            "OS_AUTH_URL": self.auth_url,
            "OS_USERNAME": user,
            "OS_PASSWORD": password,
            "OS_PROJECT_NAME": project,
            "OS_USER_DOMAIN_NAME": "Default",
            "OS_PROJECT_DOMAIN_NAME": "Default",
            "OS_IDENTITY_API_VERSION": "3",
        }


def _clean_env() -> dict[str, str]:
    """Our environment without OS_*/ST_* credentials and PYTHON* settings of the project venv:
    keystone-manage and gunicorn run from Keystone's venv and must see neither."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "ST_", "PYTHON"))}


if __name__ == "__main__":  # python -m swiftzarr_batch.testing.keystone_server install
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    print(ensure_keystone_installed())
    print(ensure_keystonemiddleware_installed())
