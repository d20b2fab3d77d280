"""The documentation site built once per test process (mkdocs build --strict into a temp dir),
shared by tests/test_docs.py and tests/test_docs_browser.py."""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def built_site() -> tuple[Path, str]:
    """(the site's directory, mkdocs' output); the build's exit status is checked by callers
    through the presence of the site (a failed strict build leaves no index.html)."""
    out = Path(tempfile.mkdtemp(prefix="swiftzarr-docs-site-"))
    atexit.register(shutil.rmtree, out, True)
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(out / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=300,
    )
    if done.returncode != 0:
        shutil.rmtree(out / "site", ignore_errors=True)
    return out / "site", done.stdout + done.stderr
