"""`--dist loadgroup` keeps an xdist_group on one worker, with this pytest and this pytest-xdist.

Since pytest 9.2 pytest-xdist's own way of telling its scheduler the groups (a suffix written into
the node id) silently did nothing, and `make test` ran as a plain `--dist load` (tests/support/tiers.py
`carry_groups`). A small suite run the way `make test` runs it shows whether the groups arrive: a
module-scoped fixture of a grouped module is built once, on one worker.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.processes import REPO

CONFTEST = """
import pytest
from tests.support import tiers

@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    if getattr(config.option, "loadgroup", False):
        tiers.carry_groups(items)
"""

GROUPED = """
import os
import pytest

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    with open(os.environ["BUILT_LOG"], "a") as log:
        log.write(os.environ.get("PYTEST_XDIST_WORKER", "none") + "\\n")
    return 1

@pytest.mark.xdist_group("one-worker")
@pytest.mark.parametrize("i", range(6))
def test_grouped(built, i):
    assert built == 1
"""

OTHERS = """
import pytest

@pytest.mark.parametrize("i", range(12))
def test_other(i):
    assert i >= 0
"""


def test_a_group_runs_on_one_worker_and_its_module_fixture_is_built_once(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    (tmp_path / "test_others.py").write_text(OTHERS)
    log = tmp_path / "built.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "BUILT_LOG": str(log)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "3", "--dist", "loadgroup", "-p", "no:cacheprovider", "-v"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "18 passed" in done.stdout, done.stdout
    workers = {line.split("]")[0] for line in done.stdout.splitlines() if "PASSED test_grouped.py" in line}
    assert len(workers) == 1, done.stdout  # every grouped test on one worker
    assert log.read_text().split() == [next(iter(workers)).lstrip("[")], done.stdout  # built once, there
