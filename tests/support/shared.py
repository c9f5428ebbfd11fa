"""Expensive session fixtures built once per test run, not once per pytest-xdist worker.

Why: a session fixture runs once per worker, and `make test` has three. The embedded store (two real
`diabetes train` runs) took 30-165 s on each of them, depending on the load (issue 22 item 8), while
every test that uses it only reads it. pytest-xdist's documented recipe ("making session-scoped
fixtures execute only once") builds it once instead: the first worker to ask builds it under a file
lock in the folder all the workers' temporary folders share, and the others wait for it, then read
what it left. A worker that failed half-way leaves no record, so the next one to ask builds it again
(and fails the same way, in its own tests). Without xdist it is built in the session's own folder.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock


def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of this run that every worker sees: the parent of the workers' own temporary
    folders, in a subfolder named by the run's id (a `--basetemp` given twice outlives a run)."""
    base = tmp_path_factory.getbasetemp()
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    if not os.environ.get("PYTEST_XDIST_WORKER") or not run:
        return base
    folder = base.parent / f"shared-{run}"
    folder.mkdir(exist_ok=True)
    return folder


def once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], dict]) -> tuple[Path, dict]:
    """(folder, record): `build(folder)` fills the empty `folder` and returns a JSON record of what it
    made, once per run; every later call, from any worker, gets the same folder and record."""
    root = run_folder(tmp_path_factory)
    folder, record = root / name, root / f"{name}.json"
    with FileLock(str(root / f"{name}.lock")):
        if record.exists():
            return folder, json.loads(record.read_text())
        if folder.exists():  # left by a worker whose build failed
            shutil.rmtree(folder)
        folder.mkdir()
        made = build(folder)
        staged = record.with_suffix(".json.tmp")
        staged.write_text(json.dumps(made))
        staged.replace(record)  # whole or absent: a reader never sees half a record
        return folder, made
