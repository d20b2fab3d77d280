"""A real OpenStack Keystone on 127.0.0.1, for tests and demos of Keystone v3 auth.

Why a real one: Keystone v3 is what most production Swift clusters sit behind, and its token
format, catalog and application credentials are what ``swiftzarr_batch.keystone`` must handle;
a mock would only echo our own assumptions. ``LocalKeystone`` does what an operator does:

* installs PyPI ``keystone`` + ``gunicorn`` once into their own cached virtualenv (next to the
  Swift one, ``$SWIFTZARR_CACHE`` or ``~/.cache/swiftzarr_batch``), and ``keystonemiddleware``
  into the Swift virtualenv (for the proxy's ``authtoken`` + ``keystoneauth`` filters);
* writes ``keystone.conf`` (sqlite, fernet tokens) into a data dir and runs ``keystone-manage
  db_sync``, ``fernet_setup``, ``credential_setup`` and ``bootstrap``;
* serves the WSGI app with gunicorn (through ``_keystone_launcher.py``: Keystone's config
  parser reads ``sys.argv`` and chokes on gunicorn's arguments) on a free loopback port;
* creates projects and users (``add_user``) and, once the Swift proxy is up, the object-store
  service and endpoint (``register_swift``).

Start it only for Keystone tests: a Swift proxy with ``authtoken`` asks Keystone about every
token it does not know, TempAuth's included, which slows everything else down.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from swiftzarr_batch.errors import ServerError
from swiftzarr_batch.server import _free_ports, _tail, cache_root, ensure_swift_installed

__all__ = [
    "KEYSTONE_REQUIREMENT", "KEYSTONEMIDDLEWARE_REQUIREMENT", "LocalKeystone",
    "ensure_keystone_installed", "ensure_keystonemiddleware_installed",
]

log = logging.getLogger(__name__)

KEYSTONE_REQUIREMENT = "keystone>=30,<31"
KEYSTONE_SERIES = "30"
GUNICORN_REQUIREMENT = "gunicorn>=23"
KEYSTONEMIDDLEWARE_REQUIREMENT = "keystonemiddleware>=13,<14"
_INSTALL_TIMEOUT = 1200.0
_LAUNCHER = Path(__file__).with_name("_keystone_launcher.py")
ADMIN_USER = "admin"
ADMIN_PROJECT = "admin"
REGION = "RegionOne"


def _run_steps(steps: dict[str, list[str]], log_path: Path, what: str) -> None:
    with open(log_path, "ab") as out:
        for step, argv in steps.items():
            out.write(f"$ {shlex.join(argv)}\n".encode())
            out.flush()
            rc: int | str
            try:
                rc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, check=False,
                                    timeout=_INSTALL_TIMEOUT).returncode
            except subprocess.TimeoutExpired:
                rc = f"timed out after {_INSTALL_TIMEOUT:.0f} s"
            if rc != 0:
                raise ServerError(f"installing {what} failed: {step} exited {rc}; end of "
                                  f"{log_path}:\n{_tail(log_path)}")


def _install_once(venv: Path, marker: Path, what: str, install) -> None:
    """Run ``install()`` under a file lock unless ``marker`` says it was done already."""
    if marker.exists():
        return
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent installer finishes first; then we skip
        if marker.exists():
            return
        log.info("installing %s (once; takes a few minutes)", what)
        started = time.monotonic()
        install()
        marker.write_text(f"{time.monotonic() - started:.0f} s\n")
        log.info("installed %s in %.0f s", what, time.monotonic() - started)


def ensure_keystone_installed() -> Path:
    """Install ``keystone`` + ``gunicorn`` into their own cached venv once; return its python."""
    venv = cache_root() / f"keystone-{KEYSTONE_SERIES}-py{sys.version_info[0]}{sys.version_info[1]}"
    python, marker = venv / "bin" / "python", venv / ".swiftzarr-installed"

    def install() -> None:
        shutil.rmtree(venv, ignore_errors=True)  # a half-made venv from an interrupted install
        venv.mkdir(parents=True)
        _run_steps({
            "creating the venv": [sys.executable, "-m", "venv", str(venv)],
            "pip install": [str(python), "-m", "pip", "install", "--disable-pip-version-check",
                            "--no-input", KEYSTONE_REQUIREMENT, GUNICORN_REQUIREMENT],
            "importing keystone": [str(python), "-c", "import keystone.server.wsgi, gunicorn"],
        }, venv / "pip-install.log", KEYSTONE_REQUIREMENT)

    if not python.exists():
        marker.unlink(missing_ok=True)
    _install_once(venv, marker, KEYSTONE_REQUIREMENT, install)
    return python


def ensure_keystonemiddleware_installed() -> Path:
    """Add ``keystonemiddleware`` to the Swift venv once; return the Swift venv's python."""
    python = ensure_swift_installed()
    venv = python.parent.parent
    marker = venv / ".swiftzarr-keystonemiddleware"

    def install() -> None:
        _run_steps({
            "pip install": [str(python), "-m", "pip", "install", "--disable-pip-version-check",
                            "--no-input", KEYSTONEMIDDLEWARE_REQUIREMENT],
            "importing keystonemiddleware": [
                str(python), "-c", "import keystonemiddleware.auth_token, "
                "swift.common.middleware.keystoneauth"],
        }, venv / "pip-install.log", KEYSTONEMIDDLEWARE_REQUIREMENT)

    _install_once(venv, marker, KEYSTONEMIDDLEWARE_REQUIREMENT, install)
    return python


if __name__ == "__main__":  # python -m swiftzarr_batch.keystone_server install
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    print(ensure_keystone_installed())
    print(ensure_keystonemiddleware_installed())
