"""The service's one public module for deploy, on a real embedded MLflow store: a registered model is
resolved and downloaded as `diabetes serve` would, its digest is the one the pin compares, and it
is prepared into a folder pinned to that digest; failures are ModelLoadErrors, never MLflow's."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from diabetes_service import deploy_api
from tests.conftest import EmbeddedStore
from tests.trainer.helpers import mlflow_globals


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DIABETES_MODEL_CACHE", str(tmp_path / "downloads"))
    return tmp_path / "model-cache"


def test_a_registered_model_is_resolved_digested_and_prepared(embedded_store: EmbeddedStore, cache: Path) -> None:
    name, version = embedded_store.regressor["model_name"], str(embedded_store.regressor["model_version"])
    with mlflow_globals():
        registered = deploy_api.resolve_registered(f"models:/{name}/{version}", embedded_store.tracking_uri)
    assert (registered.name, registered.version) == (name, version)  # what the image's answers name
    folder = registered.path
    assert (folder / "MLmodel").is_file()
    assert folder.is_relative_to(cache.parent / "downloads")  # the resolver's own cache, as serve uses it
    artifact = deploy_api.model_file(folder)
    assert artifact is not None
    digest = deploy_api.artifact_digest(folder)
    assert digest == hashlib.sha256(artifact.read_bytes()).hexdigest()

    deploy_api.prepare(folder, cache, digest, ())
    assert any((cache / "prepared").iterdir())  # the Ridge regressor compiles: an entry to bake

    with pytest.raises(deploy_api.ModelLoadError, match="does not match the pinned"):
        deploy_api.prepare(folder, cache / "other", "0" * 64, ())


def test_an_unknown_model_is_a_model_load_error(embedded_store: EmbeddedStore, cache: Path) -> None:
    with mlflow_globals(), pytest.raises(deploy_api.ModelLoadError) as raised:
        deploy_api.resolve_registered("models:/no_such_model/1", embedded_store.tracking_uri)
    assert "no_such_model" in str(raised.value)
    assert "\n" not in str(raised.value)  # MLflow's message reduced to its first line


def test_a_folder_without_an_artifact_has_no_digest(tmp_path: Path) -> None:
    assert deploy_api.artifact_digest(tmp_path) == ""
