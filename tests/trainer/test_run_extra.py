"""`make run`'s environment: the `run` extra, installed by scripts/install.sh, trains and serves.

The extra carries MLflow's client alone (mlflow-skinny) and the embedded store's SQLAlchemy and
alembic, not MLflow's server and UI nor any dev, load-test or browser tooling (issue 22: a fresh
clone's first answer in <= 75 s, <= 800 MB). A throwaway virtualenv gets it the way `make run` does
(uv, on its own cache; about a minute on a cold cache here), then its `diabetes train` fills an
empty store and its `diabetes serve` answers the example's predictions; its tritonclient writes the
gRPC schema. Last, the `all` extra (`make install`'s, less the dev tools) over the same environment
brings the whole MLflow at mlflow-skinny's release, and its `mlflow server` starts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from google.protobuf import descriptor_pb2

from tests.support.mlflow_server import MlflowServer
from tests.support.processes import REPO, free_port, start, stop, wait_http
from tests.trainer.helpers import FIRST_TWO_TEST_PREDICTIONS, clean_env, train

pytestmark = pytest.mark.slow

ABSENT = ("mlflow", "pyarrow", "flask", "graphene", "gunicorn", "docker", "pytest", "locust", "playwright", "mypy")


def _install(venv: Path, extras: str) -> None:
    done = subprocess.run(
        ["bash", "scripts/install.sh", str(venv), extras],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=1200,
        # Its own uv and pip caches, as a newcomer's: not the developer's, not another test's.
        env={**os.environ, "UV_CACHE_DIR": str(venv.parent / "uv-cache"), "PIP_NO_CACHE_DIR": "1"},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "installing with pip" not in done.stdout, done.stdout[-2000:]  # uv did it, not the fallback


def _distributions(python: Path) -> dict[str, str]:
    script = (
        "import importlib.metadata as m, json;"
        "print(json.dumps({d.metadata['Name'].lower(): d.version for d in m.distributions()}))"
    )
    done = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def run_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    venv = tmp_path_factory.mktemp("run-extra") / "venv"
    _install(venv, "run")
    yield venv
    shutil.rmtree(venv.parent, ignore_errors=True)


def test_the_run_extra_holds_mlflow_skinny_and_no_server_or_dev_tooling(run_venv: Path) -> None:
    installed = _distributions(run_venv / "bin" / "python")
    assert "mlflow-skinny" in installed
    assert {"sqlalchemy", "alembic", "pandas", "scikit-learn", "tritonclient", "uv", "pip"} <= installed.keys()
    assert not set(ABSENT) & installed.keys(), sorted(set(ABSENT) & installed.keys())


def test_the_run_extra_trains_serves_and_writes_the_grpc_schema(run_venv: Path, tmp_path: Path) -> None:
    bin_dir = run_venv / "bin"
    outcome = train("--json", "--if-empty", home=tmp_path, program=str(bin_dir / "diabetes"))
    assert outcome.returncode == 0, outcome.stderr
    assert (outcome.json()["model_version"], outcome.json()["champion"]) == (1, True)
    assert train("--if-empty", home=tmp_path, program=str(bin_dir / "diabetes")).returncode == 0

    from diabetes_trainer.data import load_split  # this process's own environment, not the one under test

    rows = load_split().x_test.head(2).to_numpy().tolist()
    port = free_port()
    cmd = [str(bin_dir / "diabetes"), "serve", "--port", str(port), "--grpc-port", "0", "--metrics-port", "0"]
    # As `make run` starts it: no model URI, the embedded store of the folder it runs in.
    proc = start(cmd, env=clean_env(tmp_path), cwd=tmp_path, log=tmp_path / "serve.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/health/ready", timeout=120, proc=proc)
        answer = requests.post(f"http://127.0.0.1:{port}/score", json={"data": rows}, timeout=30)
    finally:
        stop(proc)
    assert answer.status_code == 200, answer.text
    assert answer.json() == pytest.approx(list(FIRST_TWO_TEST_PREDICTIONS), abs=1e-3)

    schema = tmp_path / "grpc_schema.binpb"
    written = subprocess.run(
        [str(bin_dir / "python"), "-m", "diabetes_service.protocols.v2.grpc_schema", str(schema)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert written.returncode == 0, written.stderr
    files = descriptor_pb2.FileDescriptorSet.FromString(schema.read_bytes()).file
    assert "GRPCInferenceService" in {service.name for f in files for service in f.service}


def test_installing_everything_after_the_run_extra_gives_the_whole_mlflow(run_venv: Path, tmp_path: Path) -> None:
    """`make run`, then `make install`: `mlflow` joins `mlflow-skinny` at one release, its server runs."""
    _install(run_venv, "all")
    installed = _distributions(run_venv / "bin" / "python")
    assert installed["mlflow"] == installed["mlflow-skinny"] == installed["mlflow-tracing"]
    check = subprocess.run(
        [str(run_venv / "bin" / "python"), "-m", "pip", "check"], capture_output=True, text=True, timeout=120
    )
    assert check.returncode == 0, check.stdout + check.stderr
    with MlflowServer(tmp_path / "server", mlflow=str(run_venv / "bin" / "mlflow")) as server:
        assert requests.get(server.uri + "/health", timeout=10).text == "OK"
