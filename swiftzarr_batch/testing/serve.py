"""The command line of the local Swift: ``serve``, ``install`` and ``run -- CMD``.

Why apart from ``swift_server``: that module is the ``LocalSwift`` class, used as a library by
tests and benchmarks; this one is what people type. ``swiftzarr serve`` (``cli.main``) reuses
``add_serve_arguments`` and ``serve``; ``python -m swiftzarr_batch.testing.swift_server`` (and the
old ``python -m swiftzarr_batch.server``) runs ``main``:

* ``[serve] [--data-dir D] [--token-life S] [--max-file-size B] [--s3api] [--no-memcached]
  [--replicas 3] [--ratelimit-writes N] [--deferred-listings S]`` runs a server until Ctrl-C
  or SIGTERM and prints its ``export ST_AUTH=...`` lines on stdout;
* ``install`` only installs Swift (once) and prints the python of its venv;
* ``run [options] -- CMD ...`` runs CMD with ST_AUTH/ST_USER/ST_KEY of a fresh server, then
  stops it, and exits with CMD's status.

Logging goes to stderr, so stdout carries only what a script would read.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence

from swiftzarr_batch.errors import ServerError
from swiftzarr_batch.testing import swift_server
from swiftzarr_batch.testing.swift_server import LocalSwift

__all__ = ["add_serve_arguments", "install", "main", "run_with_server", "serve", "serve_parser"]

log = logging.getLogger(__name__)


def add_serve_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add serve()'s options to ``p`` (e.g. the ``swiftzarr serve`` sub-command's parser)."""
    p.add_argument("--data-dir", help="keep data here (default: a temp dir removed on exit)")
    p.add_argument("--token-life", type=int, default=86400, help="token life in seconds")
    p.add_argument("--max-file-size", type=int, default=None, help="largest object in bytes")
    p.add_argument("--s3api", action="store_true", help="also serve the S3 API")
    p.add_argument("--no-memcached", action="store_true", help="do not start memcached")
    p.add_argument(
        "--replicas",
        type=int,
        default=1,
        help="object replicas: 3 runs three object servers (own ports and devices) "
        "and their replicators",
    )
    p.add_argument(
        "--ratelimit-writes",
        type=float,
        default=None,
        metavar="N",
        help="Swift's ratelimit filter: N object writes/s per container (498 beyond a 0.5 s sleep)",
    )
    p.add_argument(
        "--deferred-listings",
        type=float,
        default=None,
        metavar="S",
        help="listings lag: container updates wait in async_pending; object-updaters replay "
        "them every S seconds",
    )
    return p


def serve_parser() -> argparse.ArgumentParser:
    """The parser of ``serve``'s options alone."""
    return add_serve_arguments(
        argparse.ArgumentParser(
            prog="swiftzarr serve",
            description="Run a local OpenStack Swift on 127.0.0.1 until Ctrl-C; "
            "print ST_* exports.",
        )
    )


def _log_to_stderr(fmt: str = "%(asctime)s %(levelname)s %(message)s") -> None:
    """Show INFO logs unless the caller (e.g. ``swiftzarr``) configured logging already."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format=fmt)


def _local_swift(args: argparse.Namespace) -> LocalSwift:
    """A LocalSwift (not started) from ``add_serve_arguments``' options."""
    return LocalSwift(
        args.data_dir,
        token_life=args.token_life,
        s3api=args.s3api,
        max_file_size=args.max_file_size,
        memcached=False if args.no_memcached else None,
        replicas=args.replicas,
        ratelimit_writes=args.ratelimit_writes,
        deferred_listings=args.deferred_listings,
    )


def serve(argv_or_args: Sequence[str] | argparse.Namespace | None = None) -> int:
    """Start a LocalSwift, print its export lines on stdout, run until SIGINT/SIGTERM."""
    args = (
        argv_or_args
        if isinstance(argv_or_args, argparse.Namespace)
        else serve_parser().parse_args(argv_or_args)
    )
    _log_to_stderr()
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    server = _local_swift(args)
    try:
        try:
            server.start()
        except ServerError as e:
            log.error("%s", e)
            return 1
        print(server.export_lines(), flush=True)  # the output, for eval "$(...)"
        log.info("serving at %s; Ctrl-C to stop", server.auth_url)
        while not stop.wait(1.0):
            if not server.running:
                log.error("a Swift server process died; stopping:\n%s", server.logs_tail())
                return 1
        log.info("stopping on signal %d", received[0])
        return 0
    finally:
        server.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)


def run_with_server(argv: Sequence[str]) -> int:
    """``run [serve options] -- CMD ...``: CMD with ST_AUTH/ST_USER/ST_KEY of a fresh server.

    Returns CMD's exit status; the server is stopped afterwards whatever happens.
    """
    parser = add_serve_arguments(
        argparse.ArgumentParser(
            prog="python -m swiftzarr_batch.testing.swift_server run",
            description="Start a local Swift, run a command with its ST_* variables, stop it.",
        )
    )
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- CMD [ARGS...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (put it after --)")
    _log_to_stderr()
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        with _local_swift(args) as server:
            log.info("running %s against %s", shlex.join(command), server.auth_url)
            return subprocess.run(command, env={**os.environ, **server.env}, check=False).returncode
    except ServerError as e:
        log.error("%s", e)
        return 1
    finally:
        signal.signal(signal.SIGTERM, previous)


def install() -> int:
    """``install``: install Swift (once), print its venv's python; the exit status."""
    _log_to_stderr("%(levelname)s %(message)s")
    try:
        print(swift_server.ensure_swift_installed())  # the output, for scripts
    except ServerError as e:
        log.error("%s", e)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """``[serve] [options]`` | ``install`` | ``run [options] -- CMD``; exits with the status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["install"]:
        sys.exit(install())
    if args[:1] == ["run"]:
        sys.exit(run_with_server(args[1:]))
    sys.exit(serve(args[1:] if args[:1] == ["serve"] else args))


if __name__ == "__main__":
    main()
