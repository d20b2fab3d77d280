"""The built site in a real browser: Debian's chromium, headless, driven through playwright.

The site is built into a temporary directory and served on 127.0.0.1 only; every request that
would leave the machine is refused by the page's router, so what passes here also works offline.
Checked: the start page, an API page and the performance page render (their images loaded, with
a size), the Design page's diagram too, and the search box finds "Slurm". Skips, saying why,
when chromium or playwright is missing (``scripts/setup_system.sh`` installs chromium as root).
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = next(
    (
        p
        for p in ("/usr/lib/chromium/chromium", shutil.which("chromium") or "")
        if os.path.isfile(p)
    ),
    None,
)
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)"
)
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright (the docs extra) is not installed"
)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site_url():
    from docs_site import built_site

    site, output = built_site()
    assert (site / "index.html").exists(), output
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, site_url):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    failed: list[str] = []
    local = site_url.rstrip("/")

    def route(r) -> None:  # nothing leaves the machine
        if r.request.url.startswith(local):
            r.continue_()
        else:
            r.abort()

    page.route("**/*", route)
    page.on(
        "requestfailed", lambda req: failed.append(req.url) if req.url.startswith(local) else None
    )
    page.failed_local = failed
    yield page
    context.close()


def images_loaded(page) -> list[dict]:
    return page.eval_on_selector_all(
        "article img",
        "imgs => imgs.map(i => ({src: i.getAttribute('src'), ok: i.complete && i.naturalWidth > 0,"
        " w: i.naturalWidth}))",
    )


def test_start_page(page, site_url, tmp_path) -> None:
    page.goto(site_url, wait_until="load")
    assert page.title().startswith("swiftzarr_batch")
    assert page.inner_text("article h1").startswith("swiftzarr_batch")  # then the ¶ anchor
    assert page.locator("nav.md-nav").count() > 0
    assert "make demo" in page.inner_text("article")
    page.screenshot(path=str(tmp_path / "start.png"))
    assert page.failed_local == []


def test_api_page(page, site_url) -> None:
    page.goto(site_url + "reference/api-store/", wait_until="load")
    headings = page.inner_text("article")
    assert "SwiftStore" in headings and "RetryPolicy" in headings
    assert page.locator("article .doc-heading").count() >= 2  # mkdocstrings rendered entries
    assert page.failed_local == []


@pytest.mark.parametrize("path,count", [("performance/", 3), ("design/", 1)])
def test_pages_with_pictures(page, site_url, path, count, tmp_path) -> None:
    page.goto(site_url + path, wait_until="load")
    images = images_loaded(page)
    assert len(images) == count, images
    assert all(i["ok"] and i["w"] > 100 for i in images), images
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert page.failed_local == []


def test_search_finds_slurm(page, site_url) -> None:
    page.goto(site_url, wait_until="load")
    page.keyboard.press("s")  # Material's shortcut: focus the search box
    box = page.locator("input.md-search__input")
    results = page.locator(".md-search-result__item")
    # Typed key by key, as a person does: Material searches on key events, and on a busy machine
    # a value set at once (``fill``) before its search worker was ready was never searched (CI
    # waited 30 s in vain). Typed again until results show, for up to two minutes.
    deadline = time.monotonic() + 120
    while True:
        box.fill("")
        box.press_sequentially("Slurm", delay=50)
        try:
            results.first.wait_for(timeout=10_000)
            break
        except sync_api.TimeoutError:
            if time.monotonic() > deadline:
                raise
    assert results.count() >= 1
    text = page.inner_text(".md-search-result")
    assert "Slurm" in text
    assert "Clusters and Slurm" in text or "clusters" in text.lower()
