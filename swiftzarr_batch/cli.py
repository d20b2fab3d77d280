"""The ``swiftzarr`` command line (subcommands grow with the project: serve, ...)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from swiftzarr_batch import server


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="swiftzarr", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run a local OpenStack Swift server on 127.0.0.1")
    server.add_serve_arguments(serve)
    serve.set_defaults(func=server.serve)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))


if __name__ == "__main__":
    main()
