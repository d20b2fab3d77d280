"""The ``swiftzarr`` command line: token, ls, du, tree, copy, verify, consolidate, rm, share,
serve, ingest, mirror; log, tag, rollback, diff, gc, export (versioned repositories).

Locations are ``swift://CONTAINER/PREFIX`` (credentials from the environment, as for
SwiftStore: ST_AUTH/ST_USER/ST_KEY, Keystone OS_*, or OS_STORAGE_URL/OS_AUTH_TOKEN), local
paths, or fsspec URLs. Errors are one line on stderr and a non-zero exit (``--debug`` shows the
traceback). Exit codes: 0 success, 1 failure or problems found, 2 bad usage, 75 another run
holds the workflow's lock, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from collections.abc import Callable, Sequence

from swiftzarr_batch.cli import commands, share
from swiftzarr_batch.cli.cluster_options import add_cluster_options
from swiftzarr_batch.cli.convert_options import add_convert_options
from swiftzarr_batch.cli.versioned import add_versioned_commands
from swiftzarr_batch.jobs.progress import display_for, progress_display
from swiftzarr_batch.swift.concurrency import RATE_ENV
from swiftzarr_batch.testing import serve as server

EXIT_INTERRUPTED = 130


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """--debug/-q/--insecure, accepted before and after the sub-command."""
    default = (lambda value: value) if top else (lambda value: argparse.SUPPRESS)
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default(False),
        help="show tracebacks and debug logs",
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default(False),
        help="only warnings and errors on stderr (no progress bar, no progress lines)",
    )
    parser.add_argument(
        "--insecure",
        action="store_true",
        default=default(False),
        help="do not check TLS certificates of swift:// locations (logged as a warning); for "
        "a site CA, set OS_CACERT instead",
    )


def _cluster_choice(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="run tasks on N local dask worker processes (default: threads here)",
    )
    p.add_argument(
        "--scheduler", metavar="ADDRESS", help="run tasks on this dask.distributed scheduler"
    )
    add_cluster_options(p)
    p.add_argument(
        "--rate",
        type=float,
        metavar="R",
        help="at most R requests/s to Swift in all, divided across the dask workers (for sites "
        "that publish a limit; without it requests back off adaptively on 498/429/503)",
    )


def _dask_options(p: argparse.ArgumentParser) -> None:
    _cluster_choice(p)
    p.add_argument("--batch-size", type=int, default=250, help="keys per task (default 250)")
    p.add_argument(
        "--concurrency", type=int, default=16, help="concurrent requests per task (default 16)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The ``swiftzarr`` argument parser: every subcommand with its options and handler
    (``args.func``); also used by tests and the docs to check the commands users see."""
    parser = argparse.ArgumentParser(
        prog="swiftzarr", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _common(parser, top=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(
        name: str, help: str, func: Callable[[argparse.Namespace], int]
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, description=help)
        _common(p, top=False)
        p.set_defaults(func=func)
        return p

    p = add(
        "token", "authenticate and print shell exports of a token (with its expiry)", commands.token
    )
    p.add_argument(
        "--lifetime",
        type=int,
        metavar="SECONDS",
        help="ask for a token valid this long (v1 auth; the server may cap it)",
    )
    p.add_argument(
        "--env-prefix",
        default="",
        metavar="P",
        help="read credentials from P+ST_AUTH, ... (e.g. SRC_)",
    )

    p = add("ls", "list containers (swift://) or the first level under a location", commands.ls)
    p.add_argument("url", help="swift://[CONTAINER[/PREFIX]], a path or an fsspec URL")
    p.add_argument("-l", "--long", action="store_true", help="show sizes")

    p = add("du", "count objects and bytes under a location, per first-level entry", commands.du)
    p.add_argument("url")
    p.add_argument("-s", "--summarize", action="store_true", help="only the total")
    p.add_argument("--bytes", action="store_true", help="exact byte counts")

    p = add(
        "tree", "show the zarr hierarchy (groups, arrays with shape/dtype/chunks)", commands.tree
    )
    p.add_argument("url")

    p = add("copy", "copy a zarr hierarchy (parallel, resumable, verified)", commands.copy)
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument(
        "--if-exists",
        choices=("skip", "overwrite", "fail"),
        default="skip",
        help="for destination keys with other content (default: skip)",
    )
    p.add_argument(
        "--delete-extra",
        action="store_true",
        help="delete destination keys that are not in the source",
    )
    p.add_argument("--no-verify", action="store_true", help="skip the final verification")
    p.add_argument("--dry-run", action="store_true", help="only say what would be done")
    p.add_argument(
        "--server-side",
        choices=("auto", "always", "never"),
        default="auto",
        help="Swift-to-Swift copies on one cluster (default: auto)",
    )
    p.add_argument(
        "--src-env",
        default="",
        metavar="P",
        help="source credentials from P+ST_AUTH, ... (another cluster)",
    )
    p.add_argument("--dst-env", default="", metavar="P", help="same for the destination")
    p.add_argument(
        "--storage-policy",
        default="",
        metavar="NAME",
        help="Swift storage policy of the destination container, if the copy creates it",
    )
    p.add_argument(
        "--delete-after",
        type=int,
        default=0,
        metavar="SECONDS",
        help="Swift deletes every object written this many seconds later (scratch copies)",
    )
    p.add_argument("--json", metavar="FILE", help="write the summary as JSON ('-': stdout)")
    add_convert_options(p)
    _dask_options(p)

    p = add(
        "verify", "check a hierarchy: missing chunks, corrupt objects, orphans", commands.verify
    )
    p.add_argument("url")
    p.add_argument(
        "--allow-missing",
        action="store_true",
        help="absent chunks (read as fill_value) are not problems",
    )
    p.add_argument(
        "--no-content",
        action="store_true",
        help="do not read objects to compare them with their ETags",
    )
    p.add_argument("--json", metavar="FILE", help="write the report as JSON ('-': stdout)")
    _dask_options(p)

    p = add("consolidate", "write consolidated metadata for a hierarchy", commands.consolidate)
    p.add_argument("url")

    p = add("rm", "delete every object under a location (bulk delete)", commands.rm)
    p.add_argument("url")
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    p = add(
        "clean-segments",
        "delete large-object segments no manifest points at (left by killed writers)",
        commands.clean_segments,
    )
    p.add_argument("url", help="swift://CONTAINER[/PREFIX]: the objects whose segments to check")
    p.add_argument(
        "--older-than",
        default="1d",
        metavar="DURATION",
        help="leave uploads younger than this alone, they may still run (default 1d; 12h, 30m)",
    )
    p.add_argument("--dry-run", action="store_true", help="only count what would be deleted")

    p = add("share", "share a dataset: signed link, or public read on/off", share.share)
    share.add_share_arguments(p)

    serve = sub.add_parser("serve", help="run a local OpenStack Swift server on 127.0.0.1")
    _common(serve, top=False)
    server.add_serve_arguments(serve)
    serve.set_defaults(func=server.serve)

    for name, text in (
        ("ingest", "append new input files to a zarr dataset (workflow)"),
        ("mirror", "incrementally copy a dataset and verify it (workflow)"),
    ):
        p = add(name, text, commands.workflow)
        p.add_argument("config", help="TOML configuration file")
        p.add_argument("--summary", metavar="FILE", help="write the JSON summary here too")
        _cluster_choice(p)  # given, they replace the config's [dask] section
    add_versioned_commands(add)
    return parser


def _setup_logging(debug: bool, quiet: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"
            if debug
            else "%(asctime)s %(message)s",
            datefmt="%H:%M:%S",
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    # only our own loggers go to DEBUG: third-party debug output may carry request headers
    for name in ("swiftzarr_batch", "workflows"):
        logging.getLogger(name).setLevel(level)


def one_line(exc: BaseException) -> str:
    """The error as one line for the terminal: whitespace folded, and the type named where
    the text alone would be a bare key or path (``KeyError``, ``FileNotFoundError``)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, (FileNotFoundError, KeyError)) and not text.startswith(type(exc).__name__):
        text = f"{type(exc).__name__}: {text}"
    return text or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> None:
    """The ``swiftzarr`` command: parse, set up logging and progress, run the subcommand and
    exit with its code; an error prints one line (a traceback with ``--debug``), Ctrl-C 130."""
    args = build_parser().parse_args(argv)
    _setup_logging(args.debug, args.quiet)
    if getattr(args, "rate", None) is not None:
        if not args.rate > 0:
            build_parser().error("--rate must be > 0 requests/s")
        # the stores' cap when they give none; local worker processes inherit it
        os.environ[RATE_ENV] = repr(float(args.rate))
    # users who ask for consolidated metadata know; zarr's warning would only add noise
    warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
    try:
        # a bar when a person watches stderr, log lines for cron/Slurm logs, nothing with -q
        with progress_display(display_for(sys.stderr, quiet=args.quiet)):
            code = args.func(args)
    except KeyboardInterrupt:
        print(f"swiftzarr {args.command}: interrupted", file=sys.stderr)
        code = EXIT_INTERRUPTED
    except Exception as exc:
        if args.debug:
            raise
        print(f"swiftzarr {args.command}: error: {one_line(exc)}", file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
