"""Fixtures of the batch tests: data files written with pyarrow, and `diabetes batch` run for real."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import FEATURES, ExampleData
from tests.support.processes import DIABETES, REPO


def run_batch(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`diabetes batch ARGS`, as a user runs it (no terminal: no progress bar)."""
    return subprocess.run(
        [DIABETES, "batch", *args],
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def read_dir(folder: Path) -> pa.Table:
    """Every Parquet file directly in `folder` (not its hidden or `_` ones), as one table."""
    files = sorted(p for p in folder.glob("*.parquet") if not p.name.startswith(("_", ".")))
    return pa.concat_tables([pq.read_table(p) for p in files]) if files else pa.table({})


@pytest.fixture(scope="session")
def example_table(example_data: ExampleData) -> pa.Table:
    """The worked example's test rows with an `id` column."""
    rows = example_data.x_test
    columns = {"id": pa.array(range(len(rows)), pa.int64())}
    columns.update({name: pa.array([row[j] for row in rows], pa.float64()) for j, name in enumerate(FEATURES)})
    return pa.table(columns)
