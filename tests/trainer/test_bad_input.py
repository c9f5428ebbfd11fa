"""Bad input: one line on standard error, a non-zero exit, and nothing half-registered."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import free_port
from tests.trainer.helpers import assert_one_line_failure, mlflow_globals, store, train


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--alpha", "0"], "--alpha must be a positive number"),
        (["--alpha", "-1"], "--alpha must be a positive number"),
        (["--alpha", "0.1", "-0.5"], "'-0.5'"),
        (["--alpha", "nan"], "--alpha must be a positive number"),
        (["--alpha", "inf"], "--alpha must be a positive number"),
        (["--alpha", "abc"], "'abc'"),
        (["--task", "clustering"], "unknown --task 'clustering'"),
        (["--model-name", " "], "--model-name"),
    ],
)
def test_bad_arguments_stop_before_touching_the_store(tmp_path: Path, args: list[str], fragment: str) -> None:
    outcome = train("--json", *args, home=tmp_path)
    assert_one_line_failure(outcome, fragment)
    assert outcome.returncode == 2
    assert not (tmp_path / "mlruns.db").exists()


def test_refused_connection_is_reported_at_once(tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    outcome = train("--json", "--tracking-uri", uri, home=tmp_path)
    assert_one_line_failure(outcome, "unreachable", uri)
    assert outcome.seconds < 30
    assert not (tmp_path / "mlruns.db").exists()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A port that accepts connections and never answers: the worst case for a client."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_silent_server_is_reported_within_30_seconds(tmp_path: Path, silent_server: str) -> None:
    outcome = train("--json", home=tmp_path, DIABETES_TRACKING_URI=silent_server)
    assert_one_line_failure(outcome, "unreachable", "no answer")
    assert outcome.seconds < 30


def test_credentials_in_the_uri_are_not_echoed(tmp_path: Path) -> None:
    uri = f"http://alice:s3cret@127.0.0.1:{free_port()}"
    line = assert_one_line_failure(train("--tracking-uri", uri, home=tmp_path), "unreachable")
    assert "s3cret" not in line
    assert "alice" not in line


def test_store_folder_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    outcome = train("--json", home=blocker / "project", cwd=tmp_path)
    assert_one_line_failure(outcome, "store folder", "Not a directory")


def test_database_that_cannot_be_opened(tmp_path: Path) -> None:
    (tmp_path / "mlruns.db").mkdir()
    outcome = train("--json", home=tmp_path)
    assert_one_line_failure(outcome, "is not a database file")


def test_unwritable_artifact_store_fails_the_runs_and_registers_nothing(tmp_path: Path) -> None:
    # The embedded store's artifact folder is taken by a file: the runs start, the upload fails.
    (tmp_path / "mlartifacts").write_text("in the way")
    outcome = train("--json", "--alpha", "0.1", "1", home=tmp_path)
    assert_one_line_failure(outcome, "logging the run's artifacts", "Not a directory")

    with store(f"sqlite:///{tmp_path / 'mlruns.db'}") as client:
        experiment = client.get_experiment_by_name("experiment_with_mlflow")
        runs = client.search_runs([experiment.experiment_id])
        assert runs, "the runs should have been started and then marked failed"
        assert {run.info.status for run in runs} == {"FAILED"}
        assert any(run.data.tags.get("mlflow.parentRunId") for run in runs)
        assert client.search_model_versions("name = 'diabetes_model'") == []
        assert client.search_registered_models() == []


def test_failure_after_the_version_is_created_leaves_no_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The alias cannot be set: the new version (and the model it created) is removed again."""
    from mlflow import MlflowClient

    from diabetes_trainer.errors import TrainerError
    from diabetes_trainer.training import TrainOptions
    from diabetes_trainer.training import train as train_in_process

    def refuse(*args: object, **kwargs: object) -> None:
        raise RuntimeError("registry refused the alias")

    monkeypatch.setenv("DIABETES_HOME", str(tmp_path))
    for name in ("DIABETES_TRACKING_URI", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", refuse)
    with mlflow_globals(), pytest.raises(TrainerError, match="registry refused the alias") as caught:
        train_in_process(TrainOptions())
    assert "registering 'diabetes_model' failed" in str(caught.value)

    with store(f"sqlite:///{tmp_path / 'mlruns.db'}") as client:
        runs = client.search_runs([client.get_experiment_by_name("experiment_with_mlflow").experiment_id])
        assert [run.info.status for run in runs] == ["FAILED"]
        assert client.search_model_versions("name = 'diabetes_model'") == []
        assert client.search_registered_models() == []


def test_deleted_experiment_is_named_not_resurrected(tmp_path: Path) -> None:
    with store(f"sqlite:///{tmp_path / 'mlruns.db'}") as client:
        client.delete_experiment(client.create_experiment("experiment_with_mlflow"))
    outcome = train("--json", home=tmp_path)
    assert_one_line_failure(outcome, "experiment 'experiment_with_mlflow' is deleted")


@pytest.fixture
def read_only_store(tmp_path: Path) -> Iterator[Path]:
    """A project folder whose existing database cannot be written (immutable for root)."""
    db = tmp_path / "mlruns.db"
    sqlite3.connect(db).close()
    if os.geteuid() != 0:
        db.chmod(0o444)
        yield tmp_path
        db.chmod(0o644)
        return
    if subprocess.run(["chattr", "+i", str(db)], capture_output=True, check=False).returncode != 0:
        pytest.skip("this filesystem cannot make a file read-only for root (chattr +i)")
    try:
        yield tmp_path
    finally:
        subprocess.run(["chattr", "-i", str(db)], check=False)


def test_read_only_database_is_reported_at_once(read_only_store: Path) -> None:
    outcome = train("--json", home=read_only_store)
    assert_one_line_failure(outcome, "is read-only", str(read_only_store / "mlruns.db"))
    assert outcome.seconds < 30
