"""The documentation cannot rot: every Python block of every page runs against the local Swift.

Each page under ``docs/`` is one test: its fenced ``python`` blocks run in order in one
namespace (as a reader would type them into one session), with ``ST_AUTH``/``ST_USER``/``ST_KEY``
of the session's real local Swift in the environment and a fresh working directory. A block that
cannot run here is preceded by ``<!-- skip: reason -->``; the reasons are listed, must be given,
and stay few. ``bash``, ``text`` and other blocks are not run.

Also here: every heading of today's README is somewhere in the site, every public name has an
API entry, the CLI reference really is the parser's, and ``mkdocs build --strict`` passes.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
FENCE_OPEN = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)")
SKIP = re.compile(r"^\s*<!--\s*skip:\s*(?P<reason>.*?)\s*-->\s*$")
MAX_SKIPS = 10  # blocks that need a real remote site or Slurm: few, each with its reason


@dataclass(frozen=True)
class Block:
    page: str
    line: int  # 1-based line of the opening fence
    code: str
    skip: str | None  # the reason, when marked


def blocks(path: Path) -> list[Block]:
    """The fenced ``python`` blocks of a Markdown page, with their skip markers."""
    lines = path.read_text().splitlines()
    found: list[Block] = []
    previous = ""
    i = 0
    while i < len(lines):
        match = FENCE_OPEN.match(lines[i])
        if match is None:
            if lines[i].strip():
                previous = lines[i]
            i += 1
            continue
        indent, lang = match["indent"], match["lang"]
        start = i
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1  # the closing fence
        if lang == "python":
            skip = SKIP.match(previous)
            found.append(
                Block(
                    str(path.relative_to(DOCS)) if path.is_relative_to(DOCS) else path.name,
                    start + 1,
                    "\n".join(body) + "\n",
                    skip["reason"] if skip else None,
                )
            )
        previous = lines[start]
    return found


def pages() -> list[Path]:
    return sorted(p for p in DOCS.rglob("*.md") if "hooks" not in p.parts)


PAGES_WITH_CODE = [p for p in pages() if blocks(p)] + [ROOT / "README.md"]


def test_pages_are_found() -> None:
    names = {str(p.relative_to(ROOT)) for p in PAGES_WITH_CODE}
    assert {
        "docs/getting-started.md",
        "docs/guide/writing.md",
        "docs/index.md",
        "README.md",
    } <= names


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda p: str(p.relative_to(ROOT)))
def test_page_code_runs(page: Path, swift_env, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__main__"}
    skipped = []
    for block in blocks(page):
        if block.skip is not None:
            skipped.append(f"line {block.line}: {block.skip}")
            continue
        code = compile(block.code, f"docs/{block.page}:{block.line}", "exec")
        try:
            exec(code, namespace)
        except BaseException as exc:  # name the page and line, whatever it was
            raise AssertionError(
                f"docs/{block.page}, the python block at line {block.line} failed: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    if skipped:
        print(f"docs/{page.relative_to(DOCS)} skipped: " + "; ".join(skipped))


def test_skips_are_few_and_reasoned() -> None:
    marked = [b for p in pages() for b in blocks(p) if b.skip is not None]
    assert all(b.skip for b in marked), [b for b in marked if not b.skip]
    assert len(marked) <= MAX_SKIPS, [f"{b.page}:{b.line} {b.skip}" for b in marked]


def test_block_collector_sees_markers(tmp_path) -> None:
    page = tmp_path / "p.md"
    page.write_text(
        "text\n\n```python\na = 1\n```\n\n<!-- skip: needs Slurm -->\n```python\nb = 2\n```\n"
        "!!! note\n    ```python\n    c = 3\n    ```\n```bash\necho no\n```\n"
    )
    found = blocks(page)
    assert [(b.code, b.skip) for b in found] == [
        ("a = 1\n", None),
        ("b = 2\n", "needs Slurm"),
        ("c = 3\n", None),
    ]


# --- every README topic is in the site ------------------------------------------------------

# README headings that are in the site under another heading: README heading -> (page, heading)
RENAMED = {
    "The two commands": ("index.md", "The two commands"),
    "Quickstart (the original `zarrswift` notebook, on zarr 3)": (
        "getting-started.md",
        "Getting started",
    ),
    "Local Swift server": ("getting-started.md", "Install and start a local Swift"),
    "Architecture": ("design.md", "The rooms and the one-way rule"),
    "What the store guarantees": ("design.md", "The retry and integrity model"),
    "Performance": ("performance.md", "Performance"),
}


#: The sections of the long README (985+ lines) before it shrank to a page: each must stay
#: reachable in the site (under its own heading, or under another in ``RENAMED``).
OLD_README_TOPICS = (
    "The two commands",
    "Quickstart (the original `zarrswift` notebook, on zarr 3)",
    "Authentication",
    "What the store guarantees",
    "Local Swift server",
    "Architecture",
    "Distributed writes",
    "Clusters",
    "Copy, verify and the CLI",
    "The `swiftzarr` command",
    "Converting while copying",
    "Faults and retries",
    "Tokens and credential providers",
    "Keystone",
    "Large objects",
    "Files on Swift (fsspec)",
    "Sharing",
    "Sites: proxies and certificates",
    "Certificates",
    "Proxies",
    "Real clusters: markers, capabilities, policies, expiry",
    "Replicas, failures, lagging listings, rate limits",
    "Security",
    "Versioned datasets",
    "Performance",
    "Reads (issue 28): the client's CPU per GET, before and after",
    "W12: Swift far away (2 and 20 ms per round trip)",
    "W7: a million objects and more (simulated Swift)",
)
#: What only the short README has: it points into the site.
README_ONLY = {"Example", "Features"}


def headings(text: str) -> list[str]:
    out, fence = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and re.match(r"^#{1,6} ", line):
            out.append(line.lstrip("#").strip())
    return out


def test_every_readme_topic_is_in_the_site() -> None:
    now = headings((ROOT / "README.md").read_text())[1:]  # the title is the site's name
    readme = list(OLD_README_TOPICS) + [h for h in now if h not in README_ONLY]
    site = {str(p.relative_to(DOCS)): headings(p.read_text()) for p in pages()}
    everywhere = {h for hs in site.values() for h in hs}
    missing = []
    for heading in readme:
        if heading in RENAMED:
            page, there = RENAMED[heading]
            if there not in site.get(page, []):
                missing.append(f"{heading!r} (expected {there!r} in {page})")
        elif heading not in everywhere:
            missing.append(repr(heading))
    assert not missing, "README sections with no page in docs/: " + ", ".join(missing)


def test_every_public_name_has_an_api_entry() -> None:
    import swiftzarr_batch

    text = "\n".join(p.read_text() for p in (DOCS / "reference").glob("api-*.md"))
    entries = set(re.findall(r"^::: swiftzarr_batch\.(\w+)$", text, re.M))
    assert set(swiftzarr_batch.__all__) - entries == set()
    assert entries - set(swiftzarr_batch.__all__) == set()


def test_every_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    listed = set(re.findall(r":\s+([\w/-]+\.md)\s*$", nav, re.M))
    on_disk = {str(p.relative_to(DOCS)) for p in pages()}
    assert on_disk <= listed, on_disk - listed


def test_cli_reference_is_the_parser() -> None:
    sys.path.insert(0, str(DOCS / "hooks"))
    try:
        import cli_reference
    finally:
        sys.path.remove(str(DOCS / "hooks"))
    from swiftzarr_batch.cli.main import build_parser

    page = cli_reference.render()
    parser = build_parser()
    subs = cli_reference.subparsers(parser)
    assert {"copy", "verify", "ls", "share", "ingest", "mirror", "serve"} <= set(subs)
    for name, sub in subs.items():
        assert f"## `swiftzarr {name}`" in page
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            for option in action.option_strings:
                assert f"`{option}`" in page, (name, option)


def test_readme_is_short() -> None:
    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) <= 8 * 1024
    example = blocks(ROOT / "README.md")
    assert len(example) == 1 and len(example[0].code.splitlines()) <= 15


def test_site_builds_strict() -> None:
    """``mkdocs build --strict``: a broken link, anchor, snippet or docstring fails here."""
    from docs_site import built_site

    site, output = built_site()
    assert (site / "index.html").exists(), output
    assert (site / "reference" / "cli" / "index.html").exists()
    assert (site / "images" / "rooms.svg").exists()
