"""The repository stands on its own: no tracked file points outside the checkout (a sibling folder or a path on
one machine), and every relative link in the README and docs/ leads to a file that exists."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Built from parts so that this file does not contain the strings it looks for.
OUTSIDE = ("../" + "shared/", "/" + "work/")
LINK = re.compile(r"\]\(([^)\s]+)\)")


def tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not in a git checkout")
    return [ROOT / name for name in out.decode().split("\0") if name]


def test_no_tracked_file_refers_outside_the_repository():
    needles = [s.encode() for s in OUTSIDE]
    offenders = []
    for path in tracked_files():
        if not path.is_file():  # a symbolic link to a folder, or a file deleted but not yet committed
            continue
        data = path.read_bytes()
        for line_no, line in enumerate(data.splitlines(), start=1):
            found = [n.decode() for n in needles if n in line]
            if found:
                offenders.append(f"{path.relative_to(ROOT)}:{line_no}: {', '.join(found)}")
    assert not offenders, "tracked files refer to paths outside the repository:\n" + "\n".join(offenders)


def relative_links(markdown: Path) -> list[str]:
    """Targets of `](target)` links that are neither URLs nor anchors within the page."""
    targets = [m.group(1) for m in LINK.finditer(markdown.read_text(encoding="utf-8"))]
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t) and not t.startswith("#")]


def test_relative_markdown_links_lead_to_existing_files():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    broken = []
    for page in pages:
        for target in relative_links(page):
            path = (page.parent / target.split("#", 1)[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, "links to missing files:\n" + "\n".join(broken)


def test_the_docs_link_the_protocol():
    assert "docs/protocol.md" in relative_links(ROOT / "README.md")
    assert (ROOT / "docs" / "protocol.md").is_file()
