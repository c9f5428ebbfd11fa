"""The docs' examples, read from the pages: which ones talk to the local service, and what they answer.

The convention (docs/contributing.md, "The docs are tested"), so that a wrong example cannot land:
- every shell (`bash`, `sh`, `shell`, `console`) or Python (`python`, `py`) fence of README.md and of
  every page under docs/ (new pages are picked up by the glob, no list to keep) that talks to the local
  service is run against a live default `diabetes serve` (the example model, no keys, 127.0.0.1:8080,
  gRPC 8081, metrics 8082). An example talks to it when it names one of those addresses, or runs
  `diabetes score` or `diabetes loadtest` (whose defaults point there), or imports `diabetes_client`;
- the line `<!-- docs-test: skip (reason) -->` right before a fence skips it (an example that needs
  other server flags, keys, Docker, a cluster); the reason is required and the test lists each skip;
- an example states its answer in a `text` (or `output`) fence right after it, only blank lines
  between: its standard output must match that block line by line, loosely: a line `...` stands for
  any number of lines, `...` inside a line for any text, a number ending in `...` for that number's
  leading digits (`235.1...` matches 235.1116027869947), runs of spaces for any spaces or none. An example
  without an answer block must exit 0, and each of its curl calls must get a 2xx (the test runs curl
  with `--fail-with-body`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SHELL = {"bash", "sh", "shell", "console"}
PYTHON = {"python", "py"}
OUTPUT = {"text", "output"}
SKIP = re.compile(r"^<!--\s*docs-test:\s*skip\s*(?:\((?P<reason>[^)]*)\))?\s*-->$")
FENCE = re.compile(r"^(?P<indent>\s*)(?P<ticks>```+)\s*(?P<lang>[\w+-]*)")
LOCAL = re.compile(r"\b(?:127\.0\.0\.1|localhost):808[0-2]\b")
LOCAL_COMMAND = re.compile(r"\bdiabetes\s+(?:score|loadtest)\b")


@dataclass
class Example:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    code: str
    skip: str | None = None  # the reason, when marked
    marker_error: str | None = None  # a skip marker without a reason
    answer: str | None = None  # the output block right after it
    end_line: int = 0  # 1-based line of the closing fence

    @property
    def id(self) -> str:
        return f"{self.page.name}:{self.line}"

    @property
    def talks_to_service(self) -> bool:
        if self.lang in SHELL:
            return bool(LOCAL.search(self.code) or LOCAL_COMMAND.search(self.code))
        if self.lang in PYTHON:
            return bool(LOCAL.search(self.code) or "diabetes_client" in self.code)
        return False


def blocks(page: Path) -> list[Example]:
    """Every fenced block of `page`, with its skip marker and, for a command, the answer block after it."""
    lines = page.read_text().split("\n")
    found: list[Example] = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, ticks = len(match["indent"]), match["ticks"]
        end = i + 1
        while end < len(lines) and not lines[end].strip().startswith(ticks):
            end += 1
        body = "\n".join(
            line[indent:] if line.startswith(" " * indent) else line.lstrip() for line in lines[i + 1 : end]
        )
        example = Example(page, i + 1, match["lang"].lower(), body)
        before = i - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        if before >= 0 and "docs-test:" in lines[before]:
            marker = SKIP.match(lines[before].strip())
            reason = (marker["reason"] or "").strip() if marker else ""
            if reason:
                example.skip = reason
            else:
                example.marker_error = f"{example.id}: the skip marker needs a reason: <!-- docs-test: skip (why) -->"
        previous = found[-1] if found else None
        if (
            previous is not None
            and example.lang in OUTPUT
            and previous.answer is None
            and previous.lang not in OUTPUT
            and all(not line.strip() for line in lines[previous.end_line : i])
        ):
            previous.answer = body
        example.end_line = end + 1
        found.append(example)
        i = end + 1
    return found


def pages(repo: Path) -> list[Path]:
    return [repo / "README.md", *sorted((repo / "docs").rglob("*.md"))]


def _line_pattern(expected: str) -> re.Pattern[str]:
    parts: list[str] = []
    for token in re.split(r"(\d+(?:\.\d+)?\.\.\.|\.\.\.|\s+)", expected.strip()):
        if not token:
            continue
        if token == "...":
            parts.append(".*?")
        elif token.endswith("...") and token[0].isdigit():
            parts.append(re.escape(token[:-3]) + r"\d*")
        elif token.isspace():
            parts.append(r"\s*")
        else:
            parts.append(re.escape(token))
    return re.compile("".join(parts))


def matches(expected: str, actual: str) -> bool:
    """Whether `actual` (standard output) answers as the answer block `expected` says (the loose rules above)."""
    want = expected.strip("\n").split("\n")
    got = [line.strip() for line in actual.strip("\n").split("\n")] if actual.strip() else []
    patterns = [None if line.strip() == "..." else _line_pattern(line) for line in want]
    # reach[j]: the first j actual lines are matched by the expected lines so far.
    reach = [True] + [False] * len(got)
    for pattern in patterns:
        nxt = [False] * (len(got) + 1)
        for j, ok in enumerate(reach):
            if not ok:
                continue
            if pattern is None:
                for k in range(j, len(got) + 1):
                    nxt[k] = True
                break
            if j < len(got) and pattern.fullmatch(got[j]):
                nxt[j + 1] = True
        reach = nxt
    return reach[len(got)]
