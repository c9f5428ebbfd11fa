"""One schemathesis run within the fuzz budget, for the tests of this folder."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.processes import BIN, REPO

SCHEMATHESIS = str(BIN / "schemathesis")
BUDGET_SECONDS = int(os.environ.get("DIABETES_FUZZ_SECONDS", "20"))


def run_schemathesis(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """`schemathesis <args>` bounded by the budget, its own files (.hypothesis, reports) in `cwd`."""
    return subprocess.run(
        [SCHEMATHESIS, *args, "--max-time", str(BUDGET_SECONDS), "--request-timeout", "10"],
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        text=True,
        timeout=BUDGET_SECONDS * 4 + 120,
        check=False,
    )
