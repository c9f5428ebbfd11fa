"""The loose comparison of an example's output with its page's answer block (examples.py), and the parser."""

from __future__ import annotations

from pathlib import Path

from tests.docs.examples import blocks, matches


def test_numbers_match_by_their_leading_digits() -> None:
    assert matches("[235.1..., 246.7...]", "[235.1116027869947,246.77373475567526]\n")  # spacing is loose
    assert matches("[235.1...,246.7...]", "[235.1116027869947,246.77373475567526]")
    assert not matches("[235.1...,246.7...]", "[235.2116027869947,246.77373475567526]")
    assert not matches("[235.1...]", "[235.1116027869947,246.77373475567526]")


def test_ellipsis_lines_and_text() -> None:
    assert matches("235.1...\n...\n", "235.11\n246.79\n163.68\n")
    assert not matches("235.1...\n", "235.11\n246.79\n")
    expected = "loadtest: ... req/s\n...\nloadtest: all 4 SLOs met"
    assert matches(expected, "loadtest: 61.2 req/s\nx\nloadtest: all 4 SLOs met")
    assert matches("a   b", "a b")
    assert not matches("ok", "")


def test_parser_reads_skips_and_answers(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# T\n\n```bash\ncurl http://127.0.0.1:8080/\n```\n\n```text\nHealthy\n```\n\n"
        "<!-- docs-test: skip (needs keys) -->\n```bash\ncurl http://127.0.0.1:8080/score\n```\n\n"
        "<!-- docs-test: skip -->\n```python\nprint(1)\n```\n"
    )
    first, output, second, third = blocks(page)
    assert (first.answer, first.talks_to_service, first.skip) == ("Healthy", True, None)
    assert output.lang == "text"
    assert second.skip == "needs keys"
    assert second.answer is None
    assert third.skip is None
    assert third.marker_error
    assert not third.talks_to_service
