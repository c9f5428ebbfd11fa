"""Fixtures of the monitor tests: payload logs written with pyarrow as the payload sink writes them,
and `diabetes monitor` run for real."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.processes import DIABETES, REPO


def run_monitor(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`diabetes monitor ARGS` as a user runs it."""
    return subprocess.run(
        [DIABETES, "monitor", *args],
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def assert_one_line_failure(done: subprocess.CompletedProcess, *fragments: str) -> str:
    """Non-zero exit, one line on standard error naming the problem, no traceback."""
    assert done.returncode not in (0, 3), done
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def model_folder(root: Path) -> Path:
    path = root / "model"
    path.mkdir(parents=True, exist_ok=True)
    return path
