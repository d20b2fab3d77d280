"""Run one OpenStack Swift server (or build rings) with a private swift.conf and file logging.

This script runs under the *Swift* virtualenv's interpreter (see
``swiftzarr_batch.testing.swift_server``), never under the project's, so it may import only the
standard library and ``swift`` (never ``swiftzarr_batch``). It is started with ``python -I`` so
that neither the caller's environment nor this file's directory end up on ``sys.path``.

Why a launcher instead of ``bin/swift-proxy-server``:

* Swift reads its cluster config from the hard-coded ``/etc/swift/swift.conf``
  (``swift.common.utils.SWIFT_CONF_FILE``). ``swift.common.constraints`` and
  ``swift.common.storage_policy`` parse that file once, when they are first imported, and keep
  the results in module globals. Setting ``SWIFT_CONF_FILE`` right after importing
  ``swift.common.utils`` (which imports neither) and before anything else lets every server use
  the swift.conf of its own data dir, so nothing is ever written under ``/etc``.
* Swift logs only to syslog (``/dev/log``, or UDP to localhost:514 when there is no ``/dev/log``).
  The ``log_custom_handlers`` hook is not passed on to the proxy-logging (access log) logger, so
  instead the syslog handler class is replaced by one that writes files: the proxy's access lines
  (logger ``proxy-access``) go to ``--access-log``, everything else to ``--log``.

Usage::

    python -I swift_launcher.py server SWIFT_CONF SERVER_CONF SECTION --log F [--access-log F]
    python -I swift_launcher.py rings SWIFT_DIR DEVICE account=PORT container=PORT object=PORT
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

ACCESS_LOGGER = "proxy-access"


def _use_private_swift_conf(swift_conf: str) -> None:
    import swift.common.utils as utils

    preloaded = [
        m for m in ("swift.common.constraints", "swift.common.storage_policy") if m in sys.modules
    ]
    utils.SWIFT_CONF_FILE = swift_conf
    utils.HASH_PATH_PREFIX = b""
    utils.HASH_PATH_SUFFIX = b""
    utils.validate_hash_conf()
    for name in preloaded:  # not the case in swift 2.38; be safe should that change
        importlib.reload(sys.modules[name])
    import swift.common.constraints
    import swift.common.storage_policy  # noqa: F401


def _install_file_logging(log_file: TextIO, access_log_file: TextIO | None) -> None:
    """Make every Swift logger of this process write to these files instead of syslog."""
    from swift.common.utils import logs

    class FileLogHandler(logging.Handler):
        # Accepts (and ignores) SysLogHandler's arguments: address=..., facility=...
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            logging.Handler.__init__(self)

        def createLock(self) -> None:
            # Same lock Swift uses for its own handlers: safe across greenthreads and threads.
            self.lock = logs.PipeMutex()

        def emit(self, record: logging.LogRecord) -> None:
            try:
                msg = self.format(record)
                if record.name == ACCESS_LOGGER and access_log_file is not None:
                    stream = access_log_file
                else:
                    stream = log_file
                    msg = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {record.levelname} {msg}"
                stream.write(msg + "\n")
            except Exception:
                self.handleError(record)

    logs.ThreadSafeSysLogHandler = FileLogHandler
    # Without a cache filter (no memcached) tempauth logs this through the root logger on every
    # auth request although fernet tokens need no cache; it is noise, not an error here.
    logging.getLogger().addFilter(
        lambda record: "swift.cache could not be found" not in record.getMessage()
    )


def _append(path: str) -> TextIO:
    """A log file opened for appending whole lines (line-buffered: each line written at once)."""
    return open(path, "a", buffering=1, encoding="utf-8", errors="replace")


def run_server(args: argparse.Namespace) -> int:
    """Run one Swift server until it is stopped; its exit status."""
    with contextlib.ExitStack() as files:  # the logs stay open while the server runs
        log_file = files.enter_context(_append(args.log))
        access = files.enter_context(_append(args.access_log)) if args.access_log else None
        _install_file_logging(log_file, access)
        _use_private_swift_conf(args.swift_conf)
        from swift.common.wsgi import run_wsgi

        return int(run_wsgi(args.server_conf, args.section, verbose=False))


def build_rings(args: argparse.Namespace) -> int:
    """What ``swift-ring-builder X.builder create 10 1 1; add ...; rebalance`` does, 3x faster."""
    from swift.common.ring import RingBuilder

    for spec in args.rings:
        kind, port = spec.split("=", 1)
        builder = RingBuilder(args.part_power, 1, 1)
        builder.add_dev(
            {
                "region": 1,
                "zone": 1,
                "ip": "127.0.0.1",
                "port": int(port),
                "device": args.device,
                "weight": 100.0,
                "meta": "",
            }
        )
        builder.rebalance(seed=1)
        base = os.path.join(args.swift_dir, kind)
        builder.save(base + ".builder")
        builder.get_ring().save(base + ".ring.gz")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="swift_launcher")
    sub = parser.add_subparsers(dest="command", required=True)
    srv = sub.add_parser("server")
    srv.add_argument("swift_conf")
    srv.add_argument("server_conf")
    srv.add_argument("section")
    srv.add_argument("--log", required=True)
    srv.add_argument("--access-log", default=None)
    srv.set_defaults(func=run_server)
    rings = sub.add_parser("rings")
    rings.add_argument("swift_dir")
    rings.add_argument("device")
    rings.add_argument("rings", nargs="+", metavar="KIND=PORT")
    rings.add_argument("--part-power", type=int, default=10)
    rings.set_defaults(func=build_rings)
    args = parser.parse_args(argv)
    command: Callable[[argparse.Namespace], int] = args.func
    return command(args)


if __name__ == "__main__":
    sys.exit(main())
