"""Progress a person can read (issue 14, part 3): a bar on a terminal, log lines in a log, -q.

The CLI runs as users run it: ``swiftzarr copy`` in a child process whose stderr is a
pseudo-terminal (the screen is read back from the pty's master side), then a pipe (what cron
and Slurm capture), then with ``-q``; against the real local Swift.
"""

from __future__ import annotations

import fcntl
import io
import logging
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.storage import LocalStore

from swiftzarr_batch import SwiftStore
from swiftzarr_batch.jobs.progress import (
    Progress,
    current_display,
    display_for,
    progress_display,
)
from swiftzarr_batch.transfer.copy import copy_store

pytestmark = pytest.mark.filterwarnings("ignore::zarr.errors.ZarrUserWarning")

REPO = Path(__file__).resolve().parents[1]
CHUNKS = 64


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A local zarr hierarchy of CHUNKS chunks (and 2 metadata documents) to copy."""
    path = tmp_path_factory.mktemp("progress") / "ds"
    group = zarr.open_group(path, mode="w")
    a = group.create_array("a", shape=(8 * 16, 8 * 16), chunks=(16, 16), dtype="f8")
    a[:] = np.random.default_rng(1).random(a.shape)
    return path


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "swiftzarr_batch.cli", *args]


def _env(swift_server) -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        **swift_server.env,
        "PYTHONPATH": f"{REPO}{os.pathsep}{path}" if path else str(REPO),
    }


def _run_on_a_terminal(cmd: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    """Run ``cmd`` with stderr on a 120-column pseudo-terminal; (exit code, screen, stdout)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env
    )
    os.close(slave)
    raw = b""
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal is gone
                break
            if not chunk:
                break
            raw += chunk
    finally:
        os.close(master)
    stdout = proc.stdout.read().decode() if proc.stdout else ""
    return proc.wait(timeout=120), raw.decode(errors="replace"), stdout


def _screen(raw: str) -> list[str]:
    """What stays on the screen: each line as its last carriage return left it."""
    return [line.rsplit("\r", 1)[-1] for line in raw.replace("\r\n", "\n").split("\n")]


def test_copy_on_a_terminal_shows_a_bar_with_counts_bytes_rate_and_eta(
    swift_server, container_name, source
):
    code, raw, stdout = _run_on_a_terminal(
        _cli("copy", str(source), f"swift://{container_name}/tty"), _env(swift_server)
    )
    assert code == 0, raw
    assert "\r" in raw  # the bar redrew itself in place
    bars = [line for line in _screen(raw) if line.startswith("copy chunks:")]
    assert len(bars) == 1, _screen(raw)
    bar = bars[0]
    assert "100%|" in bar and f"{CHUNKS}/{CHUNKS}" in bar  # percentage, bar, counts
    assert "keys/s" in bar and "KB" in bar and "MB/s" in bar  # rate, bytes, throughput
    assert "[00:" in bar and "<00:" in bar  # elapsed<remaining (the ETA)
    # the first frame was drawn before any key was done: a live bar, not a summary
    assert f"0/{CHUNKS} [" in raw
    # log lines still reach the screen, above the bars, not torn by them
    assert any("listed" in line and "keys at" in line for line in _screen(raw))
    assert (
        f"copy chunks: {CHUNKS}/{CHUNKS} keys (100%)" not in raw
    )  # the bar replaces the periodic lines
    assert stdout.startswith(f"copied {CHUNKS + 2}/{CHUNKS + 2} keys")


def test_copy_piped_logs_lines_and_draws_no_bar(swift_server, container_name, source):
    out = subprocess.run(
        _cli("copy", str(source), f"swift://{container_name}/piped"),
        capture_output=True,
        text=True,
        env=_env(swift_server),
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert f"copy chunks: {CHUNKS}/{CHUNKS} keys (100%)" in out.stderr
    assert "\r" not in out.stderr and "|" not in out.stderr and "keys/s" not in out.stderr
    assert out.stdout.startswith(f"copied {CHUNKS + 2}/{CHUNKS + 2} keys")


def test_copy_quiet_shows_nothing_on_a_terminal_or_a_pipe(swift_server, container_name, source):
    env = _env(swift_server)
    code, raw, stdout = _run_on_a_terminal(
        _cli("-q", "copy", str(source), f"swift://{container_name}/q1"), env
    )
    assert code == 0 and raw == "" and stdout.startswith(f"copied {CHUNKS + 2}/")
    out = subprocess.run(
        _cli("copy", "-q", str(source), f"swift://{container_name}/q2"),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0 and out.stderr == ""
    assert out.stdout.startswith(f"copied {CHUNKS + 2}/")


def test_display_rules():
    master, slave = pty.openpty()
    try:
        with os.fdopen(os.dup(slave), "w") as tty:
            assert display_for(tty, quiet=False) == "bar"
            assert display_for(tty, quiet=True) == "off"
    finally:
        os.close(master)
        os.close(slave)
    assert display_for(io.StringIO(), quiet=False) == "log"
    assert display_for(object(), quiet=False) == "log"  # no isatty at all
    assert current_display() == "log"  # the library's default: today's log lines
    with pytest.raises(ValueError, match="'bar', 'log' or 'off'"):
        with progress_display("fancy"):  # type: ignore[arg-type]
            pass


def test_each_display_in_process(capsys, caplog):
    caplog.set_level(logging.INFO, logger="swiftzarr_batch")
    seen: list[tuple[str, int, int, int]] = []

    def work(label: str) -> None:
        progress = Progress(label, 10, interval=0.0, callback=lambda *a: seen.append(a))
        for _ in range(10):
            progress.advance(1, 1000)
        progress.finish()

    work("logged")
    assert any("logged: 10/10 keys (100%), 10.0 KB" in r.getMessage() for r in caplog.records)
    assert capsys.readouterr().err == ""
    caplog.clear()
    with progress_display("bar"):
        work("barred")
    err = capsys.readouterr().err
    assert "barred: 100%|" in err and "10/10" in err and "10.0 KB" in err
    assert not [r for r in caplog.records if "barred" in r.getMessage()]
    with progress_display("bar"):
        Progress("nothing to do", 0).finish()  # an empty phase draws no bar
        listing = Progress("listed", 0, unit="keys listed")  # unknown size: counts, no %
        listing.advance(3, 30)
        listing.finish()
    err = capsys.readouterr().err
    assert "nothing to do" not in err
    assert "listed: 3 keys listed" in err.rsplit("\r", 1)[-1] and "%" not in err
    with progress_display("off"):
        work("silent")
    assert capsys.readouterr().err == ""
    assert not [r for r in caplog.records if "silent" in r.getMessage()]
    # the callback hears every update whatever the display
    assert [s[1] for s in seen if s[0] == "silent"] == list(range(1, 11))
    assert current_display() == "log"


def test_verify_and_rm_on_a_terminal_show_bars_too(swift_server, container_name, source):
    env = _env(swift_server)
    url = f"swift://{container_name}/vr"
    dest = SwiftStore(
        container_name,
        "vr",
        authurl=swift_server.auth_url,
        user=swift_server.user,
        key=swift_server.key,
    )
    copy_store(LocalStore(source, read_only=True), dest)  # here: one command line fewer
    code, raw, stdout = _run_on_a_terminal(_cli("verify", url), env)
    assert code == 0, raw
    keys = CHUNKS + 2
    bars = [ln for ln in _screen(raw) if ln.startswith("verify content:")]
    assert len(bars) == 1 and "100%|" in bars[0] and f"{keys}/{keys}" in bars[0], _screen(raw)
    code, raw, stdout = _run_on_a_terminal(_cli("rm", "--yes", url), env)
    assert code == 0, raw
    # --yes skips the prompt's counting pass and streams the listing into deletes: the bar
    # counts up (keys, rate, bytes) with no total to draw a percentage or an ETA from
    bars = [ln for ln in _screen(raw) if ln.startswith("rm:")]
    assert len(bars) == 1 and f"rm: {keys} keys [" in bars[0], _screen(raw)
    assert "keys/s" in bars[0] and "KB" in bars[0] and "MB/s" in bars[0], bars[0]
    assert stdout.startswith(f"deleted {keys} objects")
