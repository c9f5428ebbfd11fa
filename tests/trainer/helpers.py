"""Running `diabetes train` for real and reading back what it left in an MLflow store."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.processes import DIABETES

# Variables a developer's shell may carry that would send a test's runs elsewhere.
STORE_VARIABLES = ("DIABETES_HOME", "DIABETES_TRACKING_URI", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]  # the contract's names
FIRST_TWO_TEST_PREDICTIONS = (235.112, 246.799)  # the figures for Ridge(alpha=0.03)
EXAMPLE_TEST_MSE = 3424.857


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def json(self) -> dict:
        return json.loads(self.stdout)


def clean_env(home: Path | None = None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in STORE_VARIABLES}
    if home is not None:
        env["DIABETES_HOME"] = str(home)
    env.update(extra)
    return env


def train(
    *args: str,
    home: Path | None = None,
    cwd: Path | None = None,
    timeout: float = 300,
    program: str = DIABETES,
    **env: str,
) -> Outcome:
    """`diabetes train ARGS` in `cwd` (default: `home`) with a clean store environment.

    `program`: another environment's `diabetes` (the tests that build one of their own).
    """
    started = time.monotonic()
    proc = subprocess.run(
        [program, "train", *args],
        env=clean_env(home, **env),
        cwd=cwd or home,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Outcome(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


def train_ok(*args: str, home: Path | None = None, **kwargs: object) -> dict:
    """`diabetes train --json ARGS`, asserting success and a clean standard output."""
    outcome = train("--json", *args, home=home, **kwargs)  # type: ignore[arg-type]
    assert outcome.returncode == 0, outcome.stderr
    lines = outcome.stdout.strip().splitlines()
    assert len(lines) == 1, f"--json must print exactly one line of JSON, got: {outcome.stdout!r}"
    return outcome.json()


def assert_one_line_failure(outcome: Outcome, *fragments: str) -> str:
    """Non-zero exit, nothing on stdout, exactly one line on stderr that names the problem."""
    assert outcome.returncode != 0, outcome
    assert outcome.stdout == "", outcome.stdout
    line = outcome.stderr.strip()
    assert line, "no reason given on standard error"
    assert "\n" not in line, f"more than one line on stderr:\n{outcome.stderr}"
    assert "Traceback" not in line
    for fragment in fragments:
        assert fragment.lower() in line.lower(), line
    return line


@contextmanager
def mlflow_globals() -> Iterator[None]:
    """Restore MLflow's process-wide tracking/registry URIs afterwards, unset if they were unset.

    `mlflow.set_tracking_uri` also exports MLFLOW_TRACKING_URI (and the registry's variable) so
    that subprocesses inherit it: left behind, it would send every later `diabetes train`
    subprocess of the session into this test's store.
    """
    from mlflow.tracking._model_registry import utils as registry_utils
    from mlflow.tracking._tracking_service import utils as tracking_utils

    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved_env = {name: os.environ.get(name) for name in names}
    saved = tracking_utils._tracking_uri, registry_utils._registry_uri
    try:
        yield
    finally:
        tracking_utils._tracking_uri, registry_utils._registry_uri = saved
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def store(uri: str) -> Iterator[Any]:
    """An MlflowClient on `uri`, with the fluent API pointed there too while inside."""
    import mlflow
    from mlflow import MlflowClient

    with mlflow_globals():
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        yield MlflowClient(tracking_uri=uri, registry_uri=uri)
