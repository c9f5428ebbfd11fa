"""`python -m loadtests.bench.pipelines`: its targets are checked on figures of the same run, its memory
reading sums a real process tree, and (slow) it runs end to end with every restart from the cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from loadtests.bench import pipelines
from loadtests.bench.store import Store
from tests.support.processes import REPO


def _scenario(key: str, restart: float, rss: float) -> pipelines.Scenario:
    store = Store(Path("/nowhere"), "m", 1)
    found = pipelines.Scenario(key, key, store, b"{}", [], [])
    found.first, found.restart, found.rss_mib, found.pss_mib = [restart * 5], [restart], [rss], [rss / 2]
    found.found_by = ["cache"]
    return found


def test_the_targets_are_the_pipelines_memory_and_its_restart_over_the_numeric_examples():
    text, passed = pipelines.report([_scenario("numeric", 0.4, 170), _scenario("pipeline", 0.58, 240)], 2)
    assert passed
    assert "PASS  typed pipeline, 2 workers: tree RSS ≤ 250 MiB: 240 MiB" in text
    assert "PASS  typed pipeline restart ≤ 1.5× the numeric example's: 1.45×" in text
    slow = pipelines.report([_scenario("numeric", 0.4, 170), _scenario("pipeline", 0.8, 240)], 2)
    assert slow[1] is False
    assert "FAIL  typed pipeline restart" in slow[0]
    heavy = pipelines.report([_scenario("numeric", 0.4, 170), _scenario("pipeline", 0.4, 544)], 2)
    assert heavy[1] is False
    assert "FAIL  typed pipeline, 2 workers: tree RSS" in heavy[0]


def test_tree_memory_sums_the_process_and_its_children():
    alone_rss, alone_pss = pipelines.tree_memory_mib(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import time; b = b'x' * (64 << 20); time.sleep(30)"])
    try:
        time.sleep(1.0)
        rss, pss = pipelines.tree_memory_mib(os.getpid())
    finally:
        child.kill()
        child.wait()
    assert 0 < alone_pss <= alone_rss
    assert rss >= alone_rss + 60  # the child's 64 MiB, counted
    assert pss >= alone_pss + 60


@pytest.mark.slow
def test_a_short_run_restarts_both_models_from_the_cache(tmp_path: Path) -> None:
    out_json = tmp_path / "pipelines.json"
    done = subprocess.run(
        [sys.executable, "-m", "loadtests.bench.pipelines", "--repeat=1", f"--json={out_json}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=500,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "typed pipeline restart ≤ 1.5× the numeric example's" in done.stdout
    measured = json.loads(out_json.read_text())
    assert set(measured) == {"numeric", "pipeline"}
    for value in measured.values():
        assert value["found_by"] == ["cache"]  # restarted from the prepared form: no preparation child
        assert value["restart"][0] > 0
        assert 0 < value["pss_mib"][0] <= value["rss_mib"][0]
