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
    python -I swift_launcher.py rings SWIFT_DIR DEVICE account=PORT container=PORT object=P1,P2,P3
    python -I swift_launcher.py daemon SWIFT_CONF CONF SECTION --log F
    python -I swift_launcher.py gate LISTEN_PORT BACKEND_PORT --log F

``rings``: a ring whose spec lists several ports gets one device per port (``d1``, ``d2``...,
each in its own zone) and as many replicas. ``daemon`` runs ``object-replicator`` or
``object-updater`` like ``swift-object-replicator CONF`` does. ``gate`` is the container
server's doorman for "listings that lag": it forwards everything to the container server except
the object servers' container updates (``PUT``/``DELETE`` of ``/dev/part/acct/cont/obj``), which
it answers 503, so they go to ``async_pending`` until an object-updater (whose rings name the
container server itself) replays them.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import http.server
import importlib
import logging
import os
import sys
import time
import urllib.parse
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


def run_daemon(args: argparse.Namespace) -> int:
    """Run the object-replicator or object-updater of one node until it is stopped."""
    with contextlib.ExitStack() as files:
        log_file = files.enter_context(_append(args.log))
        _install_file_logging(log_file, None)
        _use_private_swift_conf(args.swift_conf)
        from swift.common.daemon import run_daemon as swift_run_daemon

        if args.section == "object-replicator":
            from swift.obj.replicator import ObjectReplicator as klass
        elif args.section == "object-updater":
            from swift.obj.updater import ObjectUpdater as klass
        else:
            raise SystemExit(f"unknown daemon section {args.section!r}")
        swift_run_daemon(klass, args.conf, args.section, once=False)
        return 0


_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}


class _GateHandler(http.server.BaseHTTPRequestHandler):
    """Forward to the container server; answer object-row updates 503 (see the docstring)."""

    protocol_version = "HTTP/1.1"
    backend_port = 0
    refused = 0

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            return self.rfile.read(length)
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                data = self.rfile.read(size + 2)[:size]
                if not size:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(data)
            return b"".join(chunks)
        return b""

    def _handle(self) -> None:
        body = self._body()
        segments = urllib.parse.urlsplit(self.path).path.split("/")
        if self.command in ("PUT", "DELETE") and len(segments) >= 6 and any(segments[5:]):
            type(self).refused += 1
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            return
        conn = http.client.HTTPConnection("127.0.0.1", self.backend_port, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            headers["Content-Length"] = str(len(body))
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
        finally:
            conn.close()
            self.close_connection = True

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_REPLICATE = do_UPDATE = _handle


def run_gate(args: argparse.Namespace) -> int:
    """Serve the gate on 127.0.0.1:LISTEN_PORT in front of 127.0.0.1:BACKEND_PORT."""
    with _append(args.log) as log_file:
        log_file.write(f"gate on {args.listen_port} -> container server {args.backend_port}\n")
        _GateHandler.backend_port = args.backend_port
        http.server.ThreadingHTTPServer.request_queue_size = 256  # bursts of updates (default 5)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", args.listen_port), _GateHandler)
        server.daemon_threads = True
        server.serve_forever()
    return 0


def build_rings(args: argparse.Namespace) -> int:
    """What ``swift-ring-builder X.builder create P R 1; add ...; rebalance`` does, 3x faster."""
    from swift.common.ring import RingBuilder

    for spec in args.rings:
        kind, ports = spec.split("=", 1)
        port_list = [int(p) for p in ports.split(",")]
        builder = RingBuilder(args.part_power, len(port_list), 1)
        for index, port in enumerate(port_list):
            builder.add_dev(
                {
                    "region": 1,
                    "zone": index + 1,
                    "ip": "127.0.0.1",
                    "port": port,
                    "device": args.device if len(port_list) == 1 else f"d{index + 1}",
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
    """Entry point under the Swift virtualenv's interpreter: run a server, a daemon or the
    gate, or build rings; returns the exit status."""
    parser = argparse.ArgumentParser(prog="swift_launcher")
    sub = parser.add_subparsers(dest="command", required=True)
    srv = sub.add_parser("server")
    srv.add_argument("swift_conf")
    srv.add_argument("server_conf")
    srv.add_argument("section")
    srv.add_argument("--log", required=True)
    srv.add_argument("--access-log", default=None)
    srv.set_defaults(func=run_server)
    daemon = sub.add_parser("daemon")
    daemon.add_argument("swift_conf")
    daemon.add_argument("conf")
    daemon.add_argument("section")
    daemon.add_argument("--log", required=True)
    daemon.set_defaults(func=run_daemon)
    gate = sub.add_parser("gate")
    gate.add_argument("listen_port", type=int)
    gate.add_argument("backend_port", type=int)
    gate.add_argument("--log", required=True)
    gate.set_defaults(func=run_gate)
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
