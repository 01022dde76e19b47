"""The documentation holds together: links resolve, the README stays short, no editing marks.

Markdown is parsed with markdown-it-py (already installed: rich renders with it), so links inside
code blocks or inline code are not taken for links.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parent.parent
README_LIMIT = 12_000  # bytes: the README is the first screen, the rest lives in docs/
PAGES = sorted(
    [
        ROOT / "README.md",
        *(ROOT / "docs").glob("*.md"),
        ROOT / "bench" / "README.md",
        ROOT / "tests" / "e2e" / "README.md",
    ]
)
EDITING_MARKS = re.compile(r"<!--\s*(BEGIN|END)\s*:|<!--\s*=+|\bissues? #?\d+", re.IGNORECASE)

_md = MarkdownIt("commonmark").enable("table")


def _read(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def links(text: str) -> list[str]:
    found = []
    tokens = _md.parse(text)
    for token in [t for top in tokens for t in (top, *(top.children or ()))]:
        if token.type == "link_open":
            found.append(str(token.attrs.get("href", "")))
        elif token.type == "image":
            found.append(str(token.attrs.get("src", "")))
    return found


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in ("L", "N"))
    return kept.replace(" ", "-")


def anchors(text: str) -> set[str]:
    found: set[str] = set()
    tokens = _md.parse(text)
    for opening, inline in itertools.pairwise(tokens):
        if opening.type != "heading_open":
            continue
        text = "".join(
            child.content
            for child in inline.children or ()
            if child.type in ("text", "code_inline")
        )
        base, n = slug(text), 0
        while (candidate := base if n == 0 else f"{base}-{n}") in found:
            n += 1
        found.add(candidate)
    return found


def broken_links(page: Path, text: str) -> list[str]:
    """The links of `text`, read as the page `page`, that lead nowhere."""
    broken = []
    for href in links(text):
        parts = urlsplit(href)
        if parts.scheme or parts.netloc:
            continue  # a web address: not checked here (no network)
        if not parts.path:  # a heading of this page
            if parts.fragment not in anchors(text):
                broken.append(f"{href}: this page has no such heading")
            continue
        target = (page.parent / unquote(parts.path)).resolve()
        if not target.exists():
            broken.append(f"{href}: no such file")
        elif not target.is_relative_to(ROOT):
            broken.append(f"{href}: points outside the repository")
        elif (
            parts.fragment
            and target.suffix == ".md"
            and parts.fragment not in anchors(_read(target))
        ):
            broken.append(f"{href}: {target.name} has no heading #{parts.fragment}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page, _read(page)) == []


def test_readme_is_short() -> None:
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes: move detail into docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_editing_marks(page: Path) -> None:
    assert [m.group(0) for m in EDITING_MARKS.finditer(_read(page))] == []


def test_no_code_speaks_of_issues() -> None:
    """Comments and docstrings say why, not which ticket asked for it."""
    sources = [
        p
        for folder in ("indexer", "victor", "pipelines", "functions", "webhook", "bench", "tests")
        for p in (ROOT / folder).rglob("*.py")
    ]
    assert len(sources) > 50
    found = [
        f"{p.relative_to(ROOT)}: {m.group(0)}"
        for p in sources
        for m in EDITING_MARKS.finditer(p.read_text(encoding="utf-8"))
    ]
    assert found == []


def test_the_readme_links_every_page_in_docs() -> None:
    linked = {urlsplit(h).path for h in links(_read(ROOT / "README.md"))}
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert pages - linked == set(), "README.md's list of where everything is misses these"


def test_the_checks_catch_broken_links() -> None:
    # The checks above must be able to fail: a page in docs/ with links that lead nowhere.
    text = (
        "# A page\n\n## Two `words`\n\n[gone](nowhere.md) [heading](testing.md#no-such-heading) "
        "[ok](testing.md#testing) [here](#two-words) [not here](#three) "
        "[out](../../etc/passwd) [web](https://example.com/x.md) `[code](not-a-link.md)`\n\n"
        "```\n[fenced](not-a-link-either.md)\n```\n"
    )
    found = broken_links(ROOT / "docs" / "page.md", text)
    assert [b.split(":")[0] for b in found] == [
        "nowhere.md",
        "testing.md#no-such-heading",
        "#three",
        "../../etc/passwd",
    ]
