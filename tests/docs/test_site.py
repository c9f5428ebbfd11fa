"""The docs site builds with `mkdocs build --strict` (a broken link, a bad nav entry or a page that does not
build fails), and it holds every page the README points to."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tests.support.processes import BIN, REPO


def test_site_builds_strict(tmp_path: Path) -> None:
    site = tmp_path / "site"
    done = subprocess.run(
        [str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    for page in ("getting-started", "training", "serving", "client", "deployment", "batch", "loadtests"):
        assert (site / page / "index.html").is_file(), page
    for page in ("operations", "performance", "architecture", "contributing"):
        assert (site / page / "index.html").is_file(), page


def test_readme_is_short_and_links_into_the_docs() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    links = set(re.findall(r"\]\((docs/[\w./-]+\.md)(?:#[\w-]+)?\)", readme))
    assert len(links) >= 8, links
    missing = [link for link in links if not (REPO / link).is_file()]
    assert not missing, missing
    for command in ("make run", "make test", "diabetes deploy local", "curl "):
        assert command in readme, command


def test_every_page_has_one_h1() -> None:
    for page in sorted((REPO / "docs").rglob("*.md")):
        fence, h1 = False, 0
        for line in page.read_text().split("\n"):
            if line.lstrip().startswith("```"):
                fence = not fence
            elif not fence and line.startswith("# "):
                h1 += 1
        assert h1 == 1, f"{page.name}: {h1} H1 headings"
