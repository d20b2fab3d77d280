"""Serve Keystone's WSGI app with gunicorn (run by the *Keystone* venv's python, ``-I``).

Keystone's oslo.config parses ``sys.argv`` when the app is built and refuses gunicorn's
command-line options, so gunicorn is driven from Python here with a clean ``sys.argv``.

Usage: python -I _keystone_launcher.py CONFIG_DIR BIND WORKERS ACCESS_LOG ERROR_LOG
"""

import os
import sys


def main():
    conf_dir, bind, workers, access_log, error_log = sys.argv[1:6]
    sys.argv = [sys.argv[0]]  # what oslo.config will see
    os.environ["OS_KEYSTONE_CONFIG_DIR"] = conf_dir
    from gunicorn.app.base import BaseApplication

    class KeystoneApp(BaseApplication):
        def load_config(self):
            for key, value in {
                "bind": bind,
                "workers": int(workers),
                "worker_class": "sync",
                "timeout": 120,
                "accesslog": access_log,
                "errorlog": error_log,
                "proc_name": "keystone",
            }.items():
                self.cfg.set(key, value)

        def load(self):
            from keystone.server import wsgi

            return wsgi.initialize_public_application()

    KeystoneApp().run()


if __name__ == "__main__":
    main()
