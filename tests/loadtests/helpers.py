"""Running Locust and `diabetes loadtest` as a user does, and reading the CSV they write."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

from tests.support.processes import DIABETES, REPO

LOCUSTFILE = REPO / "loadtests" / "locustfile.py"
# Every run is bounded: its own run time plus start-up and shutdown.
RUN_TIMEOUT = 150


def run(cmd: list[str], *, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """Run a command to the end, with a clean loadtest environment plus `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DIABETES_LOADTEST", "DIABETES_API_KEY"))}
    return subprocess.run(
        cmd,
        env={**base, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


def locust(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """`locust -f loadtests/locustfile.py ARGS` (the plain Locust command line)."""
    return run([sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), *args], env=env, cwd=cwd)


def diabetes_loadtest(*args: str, env: dict[str, str] | None = None, cwd: Path) -> subprocess.CompletedProcess:
    """`diabetes loadtest ARGS`."""
    return run([DIABETES, "loadtest", *args], env=env or {}, cwd=cwd)


def stats_rows(stats_csv: Path) -> dict[str, dict[str, str]]:
    """Locust's `<prefix>_stats.csv`, by request name."""
    with stats_csv.open(newline="") as handle:
        return {row["Name"]: row for row in csv.DictReader(handle)}


def slo_file(path: Path, **targets: float) -> Path:
    """Write an SLO file with these targets."""
    path.write_text("".join(f"{name}: {value}\n" for name, value in targets.items()))
    return path
