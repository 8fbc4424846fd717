"""Every relative link of the README and docs/ leads to a file, and a `#part` to a heading."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)


def relative_links(page: Path) -> list[str]:
    """The link targets of a page outside its code blocks, but web addresses."""
    text = FENCE.sub("", page.read_text())
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def anchors(page: Path) -> set[str]:
    """The `#part` names of a page's headings, as GitHub makes them."""
    headings = re.findall(r"^#+ (.+)$", FENCE.sub("", page.read_text()), re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def broken_links(page: Path) -> list[str]:
    """The relative links of `page` to a missing file, or to a missing heading of a page."""
    broken = []
    for target in relative_links(page):
        path, _, part = target.partition("#")
        found = (page.parent / path).resolve() if path else page
        if not found.exists() or (part and found.suffix == ".md" and part not in anchors(found)):
            broken.append(target)
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_of_a_page_leads_somewhere_that_exists(page):
    assert broken_links(page) == []


def test_a_link_to_a_missing_file_or_heading_is_found(tmp_path):
    (tmp_path / "there.md").write_text("# Over `there`\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n[a](there.md#over-there) [b](#title) [c](gone.md) [d](#nowhere)\n"
        "[e](https://example.org/x)\n```\n[f](in-code.md)\n```\n"
    )
    assert broken_links(page) == ["gone.md", "#nowhere"]
