"""`python -m loadtests.faults`: the figures and verdicts printed, the JSON written, the exit status."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import REPO


def run_faults(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "loadtests.faults", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_one_case_prints_its_figures_and_verdicts_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "faults.json"
    done = run_faults("--only", "oversized", "--json", str(out))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "## oversized headers" in done.stdout
    assert "one 1 MiB header  " in done.stdout
    verdicts = [line for line in done.stdout.splitlines() if line.startswith("oversized headers: ")]
    assert len(verdicts) == 7
    assert all(line.endswith("PASS") for line in verdicts)
    saved = json.loads(out.read_text())
    assert [case["case"] for case in saved] == ["oversized headers"]
    assert all(check["passed"] for check in saved[0]["checks"])


def test_an_unknown_case_is_refused_with_the_list() -> None:
    done = run_faults("--only", "meteor")
    assert done.returncode == 2
    assert "unknown case(s) meteor" in done.stderr
    assert "kill" in done.stderr
