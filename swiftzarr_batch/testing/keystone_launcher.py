"""Serve Keystone's WSGI app with gunicorn (run by the *Keystone* venv's python, ``-I``).

Keystone's oslo.config parses ``sys.argv`` when the app is built and refuses gunicorn's
command-line options, so gunicorn is driven from Python here with a clean ``sys.argv``. This
script may import only the standard library, ``gunicorn`` and ``keystone`` (never
``swiftzarr_batch``): it runs under the Keystone venv's interpreter.

Usage: python -I keystone_launcher.py CONFIG_DIR BIND WORKERS ACCESS_LOG ERROR_LOG
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any

#: A WSGI application: (environ, start_response) -> iterable of bytes.
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Any]


def main() -> None:
    """Run gunicorn with Keystone's app from the arguments (see the module docstring); returns when
    gunicorn stops."""
    conf_dir, bind, workers, access_log, error_log = sys.argv[1:6]
    sys.argv = [sys.argv[0]]  # what oslo.config will see
    os.environ["OS_KEYSTONE_CONFIG_DIR"] = conf_dir
    from gunicorn.app.base import BaseApplication

    settings: dict[str, object] = {
        "bind": bind,
        "workers": int(workers),
        "worker_class": "sync",
        "timeout": 120,
        "accesslog": access_log,
        "errorlog": error_log,
        "proc_name": "keystone",
    }

    # gunicorn ships no type information, so its base class is ``Any`` to mypy.
    class KeystoneApp(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in settings.items():
                self.cfg.set(key, value)

        def load(self) -> WSGIApp:
            # By name: keystone exists only in the Keystone venv, which type checkers do not see.
            wsgi = importlib.import_module("keystone.server.wsgi")
            app: WSGIApp = wsgi.initialize_public_application()
            return app

    KeystoneApp().run()


if __name__ == "__main__":
    main()
