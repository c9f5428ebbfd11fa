"""`diabetes train` against a real `mlflow server` process, and the model loaded back through it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from tests.support.mlflow_server import MlflowServer
from tests.trainer.helpers import EXAMPLE_TEST_MSE, FEATURES, FIRST_TWO_TEST_PREDICTIONS, store, train_ok


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    with MlflowServer(tmp_path_factory.mktemp("mlflow-server")) as running:
        yield running


@pytest.fixture(scope="module")
def trained(server: MlflowServer, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    """Two default runs sent to the server from an empty project folder."""
    home = tmp_path_factory.mktemp("client-home")
    first = train_ok("--tracking-uri", server.uri, home=home)
    second = train_ok("--tracking-uri", server.uri, home=home)
    return home, first, second


def test_server_registers_versions_1_and_2_with_champion_on_1(
    server: MlflowServer, trained: tuple[Path, dict, dict]
) -> None:
    home, first, second = trained
    assert first["model_version"] == 1
    assert first["champion"] is True
    assert round(first["metrics"]["mse"], 3) == EXAMPLE_TEST_MSE
    assert second["model_version"] == 2
    assert second["champion"] is False
    assert first["tracking_uri"] == server.uri
    # Nothing went to the embedded store or the working directory: it all lives in the server.
    assert not (home / "mlruns.db").exists()
    assert not (home / "mlruns").exists()
    assert not (home / "mlartifacts").exists()
    with store(server.uri) as client:
        assert int(client.get_model_version_by_alias("diabetes_model", "champion").version) == 1


def test_server_holds_the_runs_params_metrics_and_artifacts(
    server: MlflowServer, trained: tuple[Path, dict, dict]
) -> None:
    _, first, _ = trained
    with store(server.uri) as client:
        run = client.get_run(first["run_id"])
        assert run.info.status == "FINISHED"
        assert run.data.params["alpha"] == "0.03"
        assert run.data.metrics["mse"] == pytest.approx(first["metrics"]["mse"])
        root = {a.path for a in client.list_artifacts(first["run_id"])}
        assert {"model.pkl", "predicted_vs_actual.png", "reference_profile.json"} <= root
        assert client.get_model_version("diabetes_model", "1").run_id == first["run_id"]
    # The artifacts were uploaded through the server into its own artifact folder; the reference
    # profile twice: at the run's root and inside the logged model, beside its MLmodel.
    stored = [p for p in server.artifacts.rglob("*") if p.is_file()]
    assert {"model.pkl", "predicted_vs_actual.png", "MLmodel"} <= {p.name for p in stored}
    profiles = [p for p in stored if p.name == "reference_profile.json"]
    assert [p for p in profiles if p.parent.parent.name == first["run_id"]]
    assert [p for p in profiles if (p.parent / "MLmodel").is_file()]


def test_registered_model_loads_back_through_the_server(
    server: MlflowServer, trained: tuple[Path, dict, dict], example_data, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    rows = pd.DataFrame(example_data.x_test[:2], columns=FEATURES)
    expected = list(FIRST_TWO_TEST_PREDICTIONS)
    with store(server.uri):
        for uri in ("models:/diabetes_model/1", "models:/diabetes_model@champion"):
            by_pyfunc = mlflow.pyfunc.load_model(uri).predict(rows)
            assert [round(float(p), 3) for p in by_pyfunc] == expected, uri
            by_sklearn = mlflow.sklearn.load_model(uri).predict(rows)
            assert [round(float(p), 3) for p in by_sklearn] == expected, uri


def test_the_services_alias_lookup_without_mlflow_agrees_with_the_server(
    server: MlflowServer, trained: tuple[Path, dict, dict]
) -> None:
    """`diabetes serve` asks a tracking server for an alias over its REST API, not MLflow's client."""
    from diabetes_store.registry import quick_lookup
    from diabetes_store.uris import parse_registered

    def alias_version(tracking_uri: str, name: str, alias: str) -> str | None:
        found = quick_lookup(tracking_uri, parse_registered(f"models:/{name}@{alias}"))
        return None if found is None else found.version

    assert alias_version(server.uri, "diabetes_model", "champion") == "1"
    with store(server.uri) as client:
        client.set_registered_model_alias("diabetes_model", "moved", "2")
    assert alias_version(server.uri, "diabetes_model", "moved") == "2"
    assert alias_version(server.uri, "diabetes_model", "no-such-alias") is None  # MLflow's child says why
    # What keys the download: the registry's own record of the version's content.
    _, first, second = trained
    pinned = quick_lookup(server.uri, parse_registered("models:/diabetes_model/1"))
    latest = quick_lookup(server.uri, parse_registered("models:/diabetes_model/latest"))
    assert pinned is not None
    assert latest is not None
    assert (pinned.version, pinned.run_id) == ("1", first["run_id"])
    assert (latest.version, latest.run_id) == ("2", second["run_id"])
    assert pinned.created.isdigit()
    assert pinned.digest(server.uri) != latest.digest(server.uri)
