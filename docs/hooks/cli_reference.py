"""mkdocs hook: the command-line reference page, generated from the argparse parser at build time.

``reference/cli.md`` is never written by hand: every build asks
``swiftzarr_batch.cli.main.build_parser()`` for its sub-commands, their help and their options,
so the page cannot drift from what ``swiftzarr --help`` prints.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from mkdocs.structure.files import File, Files

PAGE = "reference/cli.md"
WIDTH = "100"  # argparse wraps usage lines to $COLUMNS: fixed, so every build is the same


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps its sub-commands here (stdlib, no API)
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _options_table(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| argument | default | meaning |", "|---|---|---|"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        if action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            name = ", ".join(f"`{o}`" for o in action.option_strings)
            if action.nargs != 0 and action.metavar is not None:
                name += f" `{action.metavar}`"
            elif action.nargs != 0:
                name += f" `{action.dest.upper()}`"
        else:
            name = f"`{action.metavar or action.dest}`"
        default = action.default
        shown = "" if default in (None, False, argparse.SUPPRESS) else f"`{default}`"
        if action.choices is not None and not isinstance(action.choices, dict):
            choices = ", ".join(f"`{c}`" for c in action.choices)
            help_text = f"{action.help or ''} (one of {choices})"
        else:
            help_text = action.help or ""
        if "%(" in help_text:  # argparse's own expansion: %(default)s and friends
            help_text = help_text % vars(action)
        rows.append(f"| {name} | {_cell(shown)} | {_cell(help_text)} |")
    return rows


def render() -> str:
    """The page's Markdown, from the parser as it is now."""
    from swiftzarr_batch.cli.main import build_parser

    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        parser = build_parser()
        lines = [
            "# Command line: `swiftzarr`",
            "",
            "This page is generated at build time from the command's own parser "
            "(`swiftzarr_batch.cli.main.build_parser`), so it always says what "
            "`swiftzarr --help` says. Examples of use are in the "
            "[user guide](../guide/copy.md#the-swiftzarr-command).",
            "",
            "```text",
            parser.format_help().rstrip(),
            "```",
            "",
        ]
        for name, sub in subparsers(parser).items():
            lines += [
                f"## `swiftzarr {name}`",
                "",
                sub.description or "",
                "",
                "```text",
                sub.format_usage().rstrip(),
                "```",
                "",
                *_options_table(sub),
                "",
            ]
        return "\n".join(lines)
    finally:
        if saved is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved


def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, PAGE, content=render()))
    return files
