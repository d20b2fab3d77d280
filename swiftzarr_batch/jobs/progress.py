"""Progress of long work (copy, verify, rm, ingest, mirror) as a person reads it, wherever it runs.

One ``Progress`` per phase counts finished units (keys, files) and bytes. How it shows is the
process's *display*, chosen once by whoever owns the terminal (the CLI), not by each phase:

- ``"bar"``: a tqdm progress bar on stderr with counts, percentage, rate, ETA, bytes and MB/s;
  log lines printed meanwhile go above the bars (``progress_display`` routes the console
  handlers through tqdm), so the bar is never torn by them.
- ``"log"`` (the library's default): today's INFO line at most every ``interval`` seconds and
  at the end, which is what cron mails and Slurm's ``slurm-*.out`` files want: no carriage
  returns, one readable line per update.
- ``"off"``: nothing (``-q``).

``display_for(stream, quiet=...)`` is the CLI's rule: a bar only when stderr is a terminal.
The display is process state on purpose: phases deep inside ``copy_store`` need not pass a
flag through every call, and dask workers never show progress (it is the client's).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any, Literal

log = logging.getLogger(__name__)

__all__ = [
    "Display",
    "Progress",
    "ProgressCallback",
    "current_display",
    "display_for",
    "format_bytes",
    "progress_display",
]

Display = Literal["bar", "log", "off"]
ProgressCallback = Callable[[str, int, int, int], None]
"""``callback(label, done, total, bytes_done)``, called from the submitting thread."""

_display: list[Display] = ["log"]  # a one-element stack top: set by progress_display


def current_display() -> Display:
    """The display a ``Progress`` made now uses (the innermost ``progress_display``; ``"log"``
    outside any)."""
    return _display[-1]


def display_for(stream: IO[str] | Any, *, quiet: bool) -> Display:
    """``"off"`` when quiet, ``"bar"`` when ``stream`` is a terminal, else ``"log"``."""
    if quiet:
        return "off"
    try:
        return "bar" if stream.isatty() else "log"
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return "log"


@contextmanager
def progress_display(display: Display) -> Iterator[None]:
    """Show every ``Progress`` made inside as ``display``; with bars, log records printed to
    the console meanwhile go through tqdm, above the bars."""
    if display not in ("bar", "log", "off"):
        raise ValueError(f"progress display must be 'bar', 'log' or 'off', got {display!r}")
    _display.append(display)
    try:
        if display == "bar":
            from tqdm.contrib.logging import logging_redirect_tqdm

            with logging_redirect_tqdm():
                yield
        else:
            yield
    finally:
        _display.pop()


class Progress:
    """Counts finished work and shows it: a bar, or a log line at most every ``interval``
    seconds and at the end (see the module docstring); ``callback`` gets every update."""

    def __init__(
        self,
        label: str,
        total: int,
        *,
        unit: str = "keys",
        interval: float = 5.0,
        callback: ProgressCallback | None = None,
    ) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.interval, self.callback = interval, callback
        self.done = 0
        self.bytes = 0
        self.started = time.monotonic()
        self._last_log = self.started
        self.display = current_display()
        self._bar: Any = None
        if self.display == "bar" and total:  # a phase of unknown size: a bar once work is done
            self._open_bar()

    def _open_bar(self) -> None:
        from tqdm import tqdm

        self._bar = tqdm(
            total=self.total or None,  # unknown (a listing): counts and rate, no percentage
            desc=self.label,
            unit=f" {self.unit}",
            file=sys.stderr,
            dynamic_ncols=True,
            mininterval=0.2,
            smoothing=0.1,
            leave=True,
        )

    def advance(self, count: int, nbytes: int = 0) -> None:
        """Count ``count`` more units and ``nbytes`` more bytes, and show them: the bar moves; a log
        line is written only when ``interval`` seconds have passed since the last one."""
        self.done += count
        self.bytes += nbytes
        if self.callback is not None:
            self.callback(self.label, self.done, self.total, self.bytes)
        if self.display == "bar":
            if self._bar is None:
                self._open_bar()
            self._bar.set_postfix_str(self._bytes_text(), refresh=False)
            self._bar.update(count)
            return
        now = time.monotonic()
        if self.display == "log" and now - self._last_log >= self.interval:
            self._last_log = now
            self._log()

    def finish(self) -> None:
        """Close the bar, or write the final log line (for a phase of known size), so the last
        numbers shown are the final ones."""
        if self._bar is not None:
            self._bar.set_postfix_str(self._bytes_text(), refresh=False)
            self._bar.close()
            self._bar = None
        elif self.display == "log" and self.total:
            self._log()

    def _bytes_text(self) -> str:
        seconds = time.monotonic() - self.started
        rate = self.bytes / seconds / 1e6 if seconds > 0 else 0.0
        return f"{format_bytes(self.bytes)}, {rate:.1f} MB/s"

    def _log(self) -> None:
        seconds = time.monotonic() - self.started
        pct = 100.0 * self.done / self.total if self.total else 100.0
        rate = self.bytes / seconds / 1e6 if seconds > 0 else 0.0
        log.info(
            "%s: %d/%d %s (%.0f%%), %s, %.1f s, %.1f MB/s",
            self.label,
            self.done,
            self.total,
            self.unit,
            pct,
            format_bytes(self.bytes),
            seconds,
            rate,
        )


def format_bytes(n: float) -> str:
    """``n`` bytes for people, in decimal units (``"1.5 MB"``, as the MB/s rates are)."""
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")  # pragma: no cover
