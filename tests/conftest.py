"""Fixtures shared by every test folder: the example model, trained for real."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import joblib
import pytest
from sklearn.datasets import load_diabetes
from sklearn.linear_model import Ridge
from sklearn.model_selection import train_test_split

from tests.support import shared, tiers
from tests.support.processes import DIABETES
from tests.support.service import ServiceProcess

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]

# The suite's services load the pickles the suite itself writes (the classic model.pkl, the slow
# test estimators): they opt in as a user would. tests/service/test_trust.py turns it off again.
os.environ.setdefault("DIABETES_ALLOW_PICKLE", "true")
# Services serve gRPC on 8081 by default: many at once (this suite, other checkouts' suites on one
# machine) would contend for it. The suite's services turn it off; the gRPC tests pass a free port.
os.environ.setdefault("DIABETES_GRPC_PORT", "0")
# Likewise /metrics' own port (8082): the suite's services keep it on the scoring port, behind the
# key, as before; tests/service/test_metrics_port.py passes a free port.
os.environ.setdefault("DIABETES_METRICS_PORT", "0")


@dataclass(frozen=True)
class ExampleData:
    x_train: list[list[float]]
    x_test: list[list[float]]
    y_train: list[float]
    y_test: list[float]


@pytest.fixture(scope="session")
def example_data() -> ExampleData:
    x, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
    return ExampleData(x_train.tolist(), x_test.tolist(), y_train.tolist(), y_test.tolist())


@pytest.fixture(scope="session")
def example_model_pkl(tmp_path_factory: pytest.TempPathFactory, example_data: ExampleData) -> Path:
    """The classic Azure example's artifact: a bare joblib `model.pkl` of Ridge(alpha=0.03)."""
    import pandas as pd

    model = Ridge(alpha=0.03).fit(pd.DataFrame(example_data.x_train, columns=FEATURES), example_data.y_train)
    path = tmp_path_factory.mktemp("pkl") / "model.pkl"
    joblib.dump(model, path)
    return path


@dataclass(frozen=True)
class EmbeddedStore:
    """A project folder whose embedded MLflow store holds the regressor and the classifier."""

    home: Path
    tracking_uri: str
    regressor: dict  # `diabetes train --json` output
    classifier: dict

    @property
    def env(self) -> dict[str, str]:
        return {"DIABETES_HOME": str(self.home), "DIABETES_TRACKING_URI": self.tracking_uri}


def run_train(home: Path, *args: str, env: dict[str, str] | None = None) -> dict:
    base = {"DIABETES_HOME": str(home)}
    import os

    # An in-process test may have called mlflow.set_tracking_uri(), which exports MLFLOW_TRACKING_URI:
    # never let that send the trainer to another store.
    inherited = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    proc = subprocess.run(
        [DIABETES, "train", "--json", *args],
        env={**inherited, **base, **(env or {})},
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="session")
def embedded_store(tmp_path_factory: pytest.TempPathFactory) -> EmbeddedStore:
    """Trained once per run, shared by the xdist workers (tests/support/shared.py): its users only read it."""

    def train(home: Path) -> dict:
        return {"regressor": run_train(home), "classifier": run_train(home, "--task", "classification")}

    home, trained = shared.once(tmp_path_factory, "embedded-store", train)
    return EmbeddedStore(home, f"sqlite:///{home / 'mlruns.db'}", trained["regressor"], trained["classifier"])


@pytest.fixture
def service(tmp_path: Path) -> Iterator[type[ServiceProcess]]:
    """A factory: `with service(uri, env=...) as svc:` logs into the test's tmp folder."""
    started: list[ServiceProcess] = []

    def factory(model_uri: str, **kwargs: object) -> ServiceProcess:
        kwargs.setdefault("log", tmp_path / f"service-{len(started)}.log")
        svc = ServiceProcess(model_uri, **kwargs)  # type: ignore[arg-type]
        started.append(svc)
        return svc

    yield factory  # type: ignore[misc]
    for svc in started:
        svc.stop()


# The tiers (tests/support/tiers.py, docs/testing.md): a test that starts a process is marked `process`
# by rule at collection, before `-m` deselects; every other test runs with process starts refused.
# In a `--dist loadgroup` worker, the groups go into the node ids too, where pytest 9.2 keeps them
# (pytest-xdist's own write no longer reaches them: tiers.carry_groups says why).
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tiers.classify(items)
    if getattr(config.option, "loadgroup", False):
        tiers.carry_groups(items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    with tiers.no_processes(item) if tiers.is_fast(item) else contextlib.nullcontext():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with tiers.no_processes(item) if tiers.is_fast(item) else contextlib.nullcontext():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    with tiers.no_processes(item) if tiers.is_fast(item) else contextlib.nullcontext():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[pytest.TestReport]:
    report = yield
    message = tiers.violation(item)
    if message and report.outcome != "failed":  # caught by the code under test: fail it all the same
        report.outcome = "failed"
        report.longrepr = message
    return report
