"""The documentation's links: every relative link in README.md, CHANGELOG.md and docs/*.md names a
file that exists, and its #anchor, if any, a heading of that file as GitHub spells its anchors.
Links inside code (fenced blocks, `spans`) are not links; external URLs are not checked."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]

_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_CODE_SPAN = re.compile(r"(`+).+?\1")
_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)(?:\s+#+)?\s*$")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:|^//")


def prose(text: str) -> Iterator[str]:
    """The lines of a Markdown text outside fenced code blocks, without their code spans."""
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            yield _CODE_SPAN.sub("", line)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text (link targets and markup dropped) lowercased,
    everything but letters, digits, spaces, hyphens and underscores removed, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a page's headings; a repeated one gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    fenced = False
    for line in text.splitlines():
        if _FENCE.match(line):
            fenced = not fenced
        heading = None if fenced else _HEADING.match(line)
        if heading:
            base = slug(heading.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(f"{base}-{count}" if count else base)
    return found


def broken_links(page: Path) -> list[str]:
    """Each relative link of `page` whose file or anchor does not exist, as written."""
    broken = []
    for line in prose(page.read_text()):
        for target in _LINK.findall(line):
            if _SCHEME.match(target):
                continue
            path, _, anchor = unquote(target).partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                broken.append(f"{target}: no file {linked}")
            elif anchor and (linked.suffix != ".md" or anchor not in anchors(linked.read_text())):
                broken.append(f"{target}: no heading for #{anchor} in {linked.name}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    assert broken_links(page) == []


def test_the_readme_links_every_page_of_the_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    for page in PAGES[2:]:
        assert f"](docs/{page.name})" in readme, f"README.md does not link docs/{page.name}"


def test_a_missing_file_or_heading_is_reported(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other page\n\n## What an AppTask's pod gets\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n## Twice\n\n## Twice\n\n"
        "[ok](other.md) [ok](other.md#what-an-apptasks-pod-gets) [ok](#twice-1) [ok](#page)\n"
        "![ok](other.md) [ok](https://example.com/missing.md) `[code](missing.md)`\n"
        "```\n[code](missing.md)\n```\n"
        "[gone](missing.md) [no anchor](other.md#nowhere) [twice](#twice-2)\n")
    assert broken_links(page) == [
        f"missing.md: no file {tmp_path / 'missing.md'}",
        "other.md#nowhere: no heading for #nowhere in other.md",
        "#twice-2: no heading for #twice-2 in page.md",
    ]


@pytest.mark.parametrize(("heading", "anchor"), [
    ("What an AppTask's pod gets", "what-an-apptasks-pod-gets"),
    ("Alerts and their runbooks", "alerts-and-their-runbooks"),
    ("Round 5 - 2026-11-29", "round-5---2026-11-29"),
    ("[Unreleased]", "unreleased"),
    ("The `replicas` hand-off", "the-replicas-hand-off"),
    ("See [the lab](lab.md)", "see-the-lab"),
])
def test_anchors_are_spelled_as_github_spells_them(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor
