"""The README, the pages under docs/ and the weights' cards: every relative link resolves, and
every page under docs/ is linked from the README.

A link is checked as GitHub renders it: relative to the page that holds it, with an anchor
(`page.md#a-heading`) that must name a heading of the target page. Links inside code (fenced
blocks and `inline code`) are text, not links, and are not checked.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").glob("*.md"))

#: The README is meant to be read in five minutes; the long sections live under docs/.
README_LIMIT = 15 * 1024

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.M | re.S)
_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)


def prose(text: str) -> str:
    """The text of a markdown page without its code: fenced blocks and inline code spans."""
    return _CODE.sub("", _FENCE.sub("", text))


def links(text: str) -> list[str]:
    """The targets of the inline links and images of a markdown page, in order."""
    return _LINK.findall(prose(text))


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading: inline markup dropped, lower case, punctuation
    other than '-' and '_' removed, spaces made hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor a page has: its headings' slugs, repeated ones numbered as GitHub does."""
    seen: dict[str, int] = {}
    out: set[str] = set()
    for heading in _HEADING.findall(_FENCE.sub("", page.read_text(encoding="utf-8"))):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken(page: Path, root: Path = ROOT) -> list[str]:
    """The relative links of ``page`` that do not resolve, each as 'target: why'."""
    bad = []
    for target in links(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if root.resolve() not in dest.parents and dest != root.resolve():
            bad.append(f"{target}: outside the repository")
        elif not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            bad.append(f"{target}: no heading with that anchor in {dest.name}")
    return bad


@pytest.mark.parametrize("page", [README, *PAGES, ROOT / "weights" / "README.md"],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    assert broken(page) == []


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(ROOT / t.partition("#")[0]).resolve() for t in links(README.read_text(encoding="utf-8"))}
    assert [p.name for p in PAGES if p.resolve() not in linked] == []


def test_readme_stays_short() -> None:
    assert README.stat().st_size < README_LIMIT, "move the long parts to a page under docs/"


def test_the_checker_finds_broken_links(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n## Second `part`\n", encoding="utf-8")
    page = tmp_path / "README.md"
    page.write_text(
        "[ok](docs/a.md) [ok](docs/a.md#second-part) [ok](#top) ![img](docs/missing.png)\n"
        "[gone](docs/b.md) [bad anchor](docs/a.md#third) [out](../elsewhere.md)\n"
        "`[code](not/checked.md)` and https://example.org/ [web](https://example.org/x.md)\n"
        "```\n[fenced](not/checked.md)\n```\n# Top\n",
        encoding="utf-8",
    )
    assert broken(page, root=tmp_path) == [
        "docs/missing.png: no such file",
        "docs/b.md: no such file",
        "docs/a.md#third: no heading with that anchor in a.md",
        "../elsewhere.md: outside the repository",
    ]


def test_slugs_match_githubs() -> None:
    assert slug("Test-time augmentation (`--tta`)") == "test-time-augmentation---tta"
    assert slug("Behaviour you can rely on") == "behaviour-you-can-rely-on"
    assert slug("spandrel (chaiNNer, ComfyUI)") == "spandrel-chainner-comfyui"
