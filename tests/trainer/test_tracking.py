"""Where `diabetes train` tracks: the contract's URI rule and the store helpers (no MLflow here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from diabetes_trainer import tracking


@pytest.fixture
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in ("DIABETES_TRACKING_URI", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DIABETES_HOME", str(tmp_path))
    return tmp_path


def test_uri_rule_flag_then_diabetes_then_mlflow_then_embedded(clean: Path, monkeypatch) -> None:
    assert tracking.resolve_tracking_uri() == f"sqlite:///{clean / 'mlruns.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    assert tracking.resolve_tracking_uri() == "http://mlflow:5000"
    monkeypatch.setenv("DIABETES_TRACKING_URI", "http://diabetes:5000")
    assert tracking.resolve_tracking_uri() == "http://diabetes:5000"
    assert tracking.resolve_tracking_uri("sqlite:///flag.db") == "sqlite:///flag.db"


def test_embedded_store_follows_the_working_directory_without_diabetes_home(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("DIABETES_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    assert tracking.embedded_tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlruns.db'}"
    assert tracking.embedded_artifact_root() == tmp_path.resolve() / "mlartifacts"


def test_artifacts_go_beside_any_sqlite_database(clean: Path) -> None:
    assert tracking.artifact_location_for(tracking.embedded_tracking_uri()) == (clean / "mlartifacts").as_uri()
    other = clean / "elsewhere" / "runs.db"
    assert tracking.artifact_location_for(f"sqlite:///{other}") == (other.parent / "mlartifacts").as_uri()
    assert tracking.artifact_location_for("http://127.0.0.1:5000") is None
    assert tracking.artifact_location_for("azureml://region.api.azureml.ms/mlflow/v1.0/x") is None


def test_redact_hides_credentials_only() -> None:
    assert tracking.redact("https://u:p@host:8443/x?y=1") == "https://***@host:8443/x?y=1"
    assert tracking.redact("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_bounded_client_env_respects_what_the_user_set(monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "5")
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_TIMEOUT", raising=False)
    tracking.bound_mlflow_client_env()
    import os

    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "5"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == tracking.BOUNDED_HTTP_ENV["MLFLOW_HTTP_REQUEST_TIMEOUT"]


def test_train_command_imports_light() -> None:
    """`diabetes --help` must not pay for MLflow or scikit-learn."""
    code = (
        "import sys, diabetes_cli.train, diabetes_trainer.tracking; "
        "heavy = [m for m in ('mlflow', 'sklearn', 'pandas') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
