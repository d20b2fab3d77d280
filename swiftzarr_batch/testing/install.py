"""Cached virtualenvs for the local servers: Swift, Keystone, and keystonemiddleware for Swift.

Why separate venvs: Swift and Keystone pin eventlet, oslo.* and many more packages that would
clash with the project's own (and with each other); running them from venvs of their own keeps
the project venv clean and needs neither root nor anything under ``/etc``. Why cached: an
install takes from ~10 s (Swift) to minutes (Keystone); it happens once per machine and Python
version, under ``$SWIFTZARR_CACHE`` or ``~/.cache/swiftzarr_batch`` (e.g. ``swift-2.38-py312/``).

Every install runs under an ``fcntl`` lock next to its venv, so concurrent processes (pytest
workers, dask workers, two terminals) install it once and the others wait and then reuse it. A
marker file written last says the install is complete: a venv without it is half made (an
interrupted install) and is made again. pip's output goes to the venv's ``pip-install.log``; a
failure raises ``ServerError`` with that log's end.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from swiftzarr_batch.errors import ServerError
from swiftzarr_batch.testing.processes import tail

__all__ = [
    "GUNICORN_REQUIREMENT",
    "KEYSTONEMIDDLEWARE_REQUIREMENT",
    "KEYSTONE_REQUIREMENT",
    "SWIFT_REQUIREMENT",
    "cache_root",
    "ensure_keystone_installed",
    "ensure_keystonemiddleware_installed",
    "ensure_swift_installed",
    "install_once",
    "run_install_steps",
]

log = logging.getLogger(__name__)

SWIFT_REQUIREMENT = "swift>=2.38,<2.39"
SWIFT_SERIES = "2.38"
KEYSTONE_REQUIREMENT = "keystone>=30,<31"
KEYSTONE_SERIES = "30"
GUNICORN_REQUIREMENT = "gunicorn>=23"
KEYSTONEMIDDLEWARE_REQUIREMENT = "keystonemiddleware>=13,<14"
INSTALL_TIMEOUT = 900.0
"""Seconds one install step (e.g. ``pip install``) may take before it counts as failed."""
_MARKER = ".swiftzarr-installed"


def cache_root() -> Path:
    """Where the server venvs (and fallback data dirs) live: ``$SWIFTZARR_CACHE``, else
    ``$XDG_CACHE_HOME/swiftzarr_batch`` or ``~/.cache/swiftzarr_batch``."""
    if os.environ.get("SWIFTZARR_CACHE"):
        return Path(os.environ["SWIFTZARR_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(xdg).expanduser() / "swiftzarr_batch"


def run_install_steps(
    steps: Mapping[str, Sequence[str]],
    log_path: Path,
    what: str,
    env: Mapping[str, str] | None = None,
) -> None:
    """Run install commands in order, logging to ``log_path``; ServerError with its tail on the
    first one that fails or outlasts ``INSTALL_TIMEOUT``."""
    with open(log_path, "ab") as out:
        for step, argv in steps.items():
            out.write(f"$ {shlex.join(argv)}\n".encode())
            out.flush()
            rc: int | str
            try:
                rc = subprocess.run(
                    list(argv),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    check=False,
                    env=env,
                    timeout=INSTALL_TIMEOUT,
                ).returncode
            except subprocess.TimeoutExpired:
                rc = f"timed out after {INSTALL_TIMEOUT:.0f} s"
            if rc != 0:
                raise ServerError(
                    f"installing {what} failed: {step} exited {rc}; end of "
                    f"{log_path}:\n{tail(log_path)}"
                )


def install_once(venv: Path, marker: Path, what: str, install: Callable[[], str]) -> None:
    """Run ``install()`` under ``venv``'s lock unless ``marker`` says it was done already.

    ``install()`` returns the marker's text (e.g. the version installed); the marker appears,
    atomically, only once ``install()`` has returned, so an interrupted install is redone.
    """
    if marker.exists():
        return
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a concurrent installer finishes first; then we skip
        if marker.exists():
            return
        log.info("installing %s into %s (once; takes from seconds to minutes)", what, venv)
        started = time.monotonic()
        text = install()
        partial = marker.with_name(marker.name + ".tmp")
        partial.write_text(text + "\n")
        os.replace(partial, marker)
        log.info("installed %s in %.1f s", what, time.monotonic() - started)


def _venv_dir(name: str, series: str) -> Path:
    """The venv of ``name`` (e.g. ``swift``) ``series``, for this Python's minor version."""
    return cache_root() / f"{name}-{series}-py{sys.version_info[0]}{sys.version_info[1]}"


def _pip_steps(python: Path, requirements: Sequence[str], check: str) -> dict[str, list[str]]:
    """``pip install`` of ``requirements`` into ``python``'s venv, then ``python -c check``."""
    return {
        "pip install": [
            str(python),
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            *requirements,
        ],
        "importing": [str(python), "-c", check],
    }


def _fresh_venv(
    venv: Path, requirements: Sequence[str], check: str, what: str
) -> Callable[[], None]:
    """An installer for ``install_once``: (re)create ``venv``, install, run ``check``."""

    def install() -> None:
        shutil.rmtree(venv, ignore_errors=True)  # a half-made venv from an interrupted install
        venv.mkdir(parents=True)
        steps = {
            "creating the venv": [sys.executable, "-m", "venv", str(venv)],
            **_pip_steps(venv / "bin" / "python", requirements, check),
        }
        run_install_steps(steps, venv / "pip-install.log", what)

    return install


def ensure_swift_installed(requirement: str = SWIFT_REQUIREMENT) -> Path:
    """Install ``requirement`` (Swift 2.38.x) into its own cached venv once; return its python.

    The venv is named after the series, not the exact requirement: a ``requirement`` outside
    the series fails the version check and leaves no marker.
    """
    venv = _venv_dir("swift", SWIFT_SERIES)
    python, marker = venv / "bin" / "python", venv / _MARKER
    if not python.exists():
        marker.unlink(missing_ok=True)
    version_file = venv / ".swift-version"
    check = f"import swift, eventlet; open({str(version_file)!r}, 'w').write(swift.__version__)"
    make = _fresh_venv(venv, [requirement], check, f"{requirement} into {venv}")

    def install() -> str:
        make()
        version = version_file.read_text().strip()
        if not version.startswith(SWIFT_SERIES + "."):
            raise ServerError(f"expected swift {SWIFT_SERIES}.x in {venv}, got {version!r}")
        return version

    install_once(venv, marker, requirement, install)
    return python


def ensure_keystone_installed() -> Path:
    """Install ``keystone`` + ``gunicorn`` into their own cached venv once; return its python."""
    venv = _venv_dir("keystone", KEYSTONE_SERIES)
    python, marker = venv / "bin" / "python", venv / _MARKER
    if not python.exists():
        marker.unlink(missing_ok=True)
    make = _fresh_venv(
        venv,
        [KEYSTONE_REQUIREMENT, GUNICORN_REQUIREMENT],
        "import keystone.server.wsgi, gunicorn",
        KEYSTONE_REQUIREMENT,
    )

    def install() -> str:
        make()
        return KEYSTONE_REQUIREMENT

    install_once(venv, marker, KEYSTONE_REQUIREMENT, install)
    return python


def ensure_keystonemiddleware_installed(swift_python: Path | None = None) -> Path:
    """Add ``keystonemiddleware`` to the Swift venv once; return the Swift venv's python.

    ``swift_python``: the Swift venv's python, when the caller has installed Swift already
    (default: ``ensure_swift_installed()``). The Swift proxy's ``authtoken`` filter needs it.
    """
    python = swift_python or ensure_swift_installed()
    venv = python.parent.parent
    steps = _pip_steps(
        python,
        [KEYSTONEMIDDLEWARE_REQUIREMENT],
        "import keystonemiddleware.auth_token, swift.common.middleware.keystoneauth",
    )

    def install() -> str:
        run_install_steps(steps, venv / "pip-install.log", KEYSTONEMIDDLEWARE_REQUIREMENT)
        return KEYSTONEMIDDLEWARE_REQUIREMENT

    install_once(
        venv, venv / ".swiftzarr-keystonemiddleware", KEYSTONEMIDDLEWARE_REQUIREMENT, install
    )
    return python
