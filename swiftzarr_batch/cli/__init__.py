"""The ``swiftzarr`` command: the parser and entry point (``main``) and one function per
sub-command (``commands``)."""

from swiftzarr_batch.cli.main import main

__all__ = ["main"]
