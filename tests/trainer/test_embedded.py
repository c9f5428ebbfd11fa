"""`diabetes train` on the embedded SQLite store: the issue's figures, the registry, the artifacts."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import pandas as pd
import pytest
import yaml

from tests.trainer.helpers import (
    EXAMPLE_TEST_MSE,
    FEATURES,
    FIRST_TWO_TEST_PREDICTIONS,
    store,
    train,
    train_ok,
)


@pytest.fixture(scope="module")
def twice(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    """An empty project folder trained into twice with the defaults."""
    home = tmp_path_factory.mktemp("embedded")
    first = train_ok(home=home)
    second = train_ok(home=home)
    return home, first, second


@pytest.fixture
def allow_unpickling(monkeypatch: pytest.MonkeyPatch) -> None:
    # MLflow refuses to deserialize any model (skops included) unless told the source is trusted.
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")


def test_first_run_registers_version_1_with_the_example_mse(twice: tuple[Path, dict, dict]) -> None:
    home, first, _ = twice
    assert first["model_name"] == "diabetes_model"
    assert first["experiment"] == "experiment_with_mlflow"
    assert first["model_version"] == 1
    assert isinstance(first["model_version"], int)
    assert first["champion"] is True
    assert round(first["metrics"]["mse"], 3) == EXAMPLE_TEST_MSE
    assert set(first["metrics"]) >= {"mse", "rmse", "mae", "r2"}
    assert first["metrics"]["rmse"] == pytest.approx(first["metrics"]["mse"] ** 0.5)
    assert first["params"]["alpha"] == 0.03
    assert first["params"]["train_rows"] == 353
    assert first["params"]["test_rows"] == 89
    assert isinstance(first["run_id"], str)
    assert len(first["run_id"]) >= 16
    # The embedded store lives in the project folder, its artifacts beside it, not in ./mlruns.
    assert (home / "mlruns.db").is_file()
    assert (home / "mlartifacts").is_dir()
    assert not (home / "mlruns").exists()


def test_second_run_registers_version_2_and_champion_stays(twice: tuple[Path, dict, dict]) -> None:
    home, first, second = twice
    assert second["model_version"] == 2
    assert second["run_id"] != first["run_id"]
    # Same data, same model: an equal mse does not beat the champion.
    assert second["champion"] is False
    with store(f"sqlite:///{home / 'mlruns.db'}") as client:
        assert int(client.get_model_version_by_alias("diabetes_model", "champion").version) == 1
        versions = client.search_model_versions("name = 'diabetes_model'")
        assert sorted(int(v.version) for v in versions) == [1, 2]


def test_run_carries_params_metrics_data_identity_and_artifacts(twice: tuple[Path, dict, dict], tmp_path: Path) -> None:
    home, first, _ = twice
    with store(f"sqlite:///{home / 'mlruns.db'}") as client:
        run = client.get_run(first["run_id"])
        assert run.info.status == "FINISHED"
        experiment = client.get_experiment(run.info.experiment_id)
        assert experiment.name == "experiment_with_mlflow"
        assert experiment.artifact_location == (home / "mlartifacts").as_uri()

        params = run.data.params
        assert params["alpha"] == "0.03"
        assert params["test_size"] == "0.2"
        assert params["random_state"] == "0"
        metrics = run.data.metrics
        assert metrics["mse"] == pytest.approx(first["metrics"]["mse"])
        assert set(metrics) >= {"mse", "rmse", "mae", "r2"}

        # Data identity: a content hash and the logged training/test datasets.
        assert len(run.data.tags["data.sha256"]) == 64
        contexts = {tag.value for d in run.inputs.dataset_inputs for tag in d.tags if tag.key == "mlflow.data.context"}
        assert contexts == {"training", "testing"}
        digests = {d.dataset.digest for d in run.inputs.dataset_inputs}
        assert len(digests) == 2
        assert all(digests)

        # model.pkl and the plot at the run's artifact root.
        root = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"model.pkl", "predicted_vs_actual.png"} <= root
        png = Path(client.download_artifacts(run.info.run_id, "predicted_vs_actual.png", str(tmp_path)))
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        pkl = Path(client.download_artifacts(run.info.run_id, "model.pkl", str(tmp_path)))
        model = joblib.load(pkl)
        assert type(model).__name__ == "Ridge"
        assert model.alpha == 0.03
        assert list(model.feature_names_in_) == FEATURES

        # The registered version points at this run and is tagged with its id and metrics.
        version = client.get_model_version("diabetes_model", "1")
        assert version.run_id == first["run_id"]
        assert version.tags["run_id"] == first["run_id"]
        assert float(version.tags["mse"]) == pytest.approx(first["metrics"]["mse"])

        # The MLflow model: signature over the named features as doubles, and an input example.
        import mlflow

        model_uri = f"runs:/{first['run_id']}/model"
        folder = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(tmp_path / "model")))
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    assert "sklearn" in mlmodel["flavors"]
    inputs = json.loads(mlmodel["signature"]["inputs"])
    assert [c["name"] for c in inputs] == FEATURES
    assert {c["type"] for c in inputs} == {"double"}
    example = json.loads((folder / mlmodel["saved_input_example_info"]["artifact_path"]).read_text())
    assert example["columns"] == FEATURES
    assert len(example["data"]) >= 1


def test_registered_model_predicts_the_example_figures(
    twice: tuple[Path, dict, dict], example_data, allow_unpickling: None
) -> None:
    home, _, _ = twice
    rows = pd.DataFrame(example_data.x_test[:2], columns=FEATURES)
    import mlflow

    with store(f"sqlite:///{home / 'mlruns.db'}"):
        for uri in ("models:/diabetes_model/1", "models:/diabetes_model@champion"):
            predicted = mlflow.pyfunc.load_model(uri).predict(rows)
            assert [round(float(p), 3) for p in predicted] == list(FIRST_TWO_TEST_PREDICTIONS), uri
        sk = mlflow.sklearn.load_model("models:/diabetes_model/2")
        assert [round(float(p), 3) for p in sk.predict(rows)] == list(FIRST_TWO_TEST_PREDICTIONS)


def test_human_summary_and_if_empty(twice: tuple[Path, dict, dict]) -> None:
    home, _, _ = twice
    outcome = train("--if-empty", home=home)
    assert outcome.returncode == 0, outcome.stderr
    line = outcome.stdout.strip()
    assert "\n" not in line
    assert "diabetes_model" in line
    assert "version 2" in line
    with store(f"sqlite:///{home / 'mlruns.db'}") as client:
        # Nothing was trained: still two versions, still the two runs.
        assert len(client.search_model_versions("name = 'diabetes_model'")) == 2
        experiment = client.get_experiment_by_name("experiment_with_mlflow")
        assert len(client.search_runs([experiment.experiment_id])) == 2


def test_if_empty_trains_into_an_empty_store_and_prints_a_summary(tmp_path: Path) -> None:
    outcome = train("--if-empty", home=tmp_path)
    assert outcome.returncode == 0, outcome.stderr
    assert "registered diabetes_model version 1" in outcome.stdout
    assert "mse 3425" in outcome.stdout
    # The success path keeps MLflow's chatter off standard error.
    assert outcome.stderr.strip() == ""


def test_sweep_registers_the_winning_child_and_moves_champion_only_when_better(tmp_path: Path) -> None:
    home = tmp_path
    default = train_ok(home=home)
    sweep = train_ok("--alpha", "0.001", "1", "10", home=home)
    worse = train_ok("--alpha", "10", home=home)

    assert default["model_version"] == 1
    assert default["champion"] is True
    by_alpha = {entry["alpha"]: entry for entry in sweep["sweep"]}
    assert set(by_alpha) == {0.001, 1.0, 10.0}
    best = min(sweep["sweep"], key=lambda e: e["metrics"]["mse"])
    assert best["alpha"] == 1.0
    # The registered version is the winning child, and it beats the default's mse: champion moves.
    assert sweep["run_id"] == best["run_id"]
    assert sweep["params"]["alpha"] == 1.0
    assert sweep["metrics"]["mse"] < default["metrics"]["mse"]
    assert sweep["model_version"] == 2
    assert sweep["champion"] is True
    # A worse model is registered but does not take the alias.
    assert worse["metrics"]["mse"] > sweep["metrics"]["mse"]
    assert worse["model_version"] == 3
    assert worse["champion"] is False
    assert worse["champion_version"] == 2

    with store(f"sqlite:///{home / 'mlruns.db'}") as client:
        assert int(client.get_model_version_by_alias("diabetes_model", "champion").version) == 2
        parent = client.get_run(sweep["parent_run_id"])
        assert parent.info.status == "FINISHED"
        assert parent.data.params["best_alpha"] == "1.0"
        children = client.search_runs(
            [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'"
        )
        assert {c.info.run_id for c in children} == {e["run_id"] for e in sweep["sweep"]}
        for child in children:
            assert child.info.status == "FINISHED"
            root = {a.path for a in client.list_artifacts(child.info.run_id)}
            assert {"model.pkl", "predicted_vs_actual.png"} <= root
        winner = client.get_run(sweep["run_id"])
        assert winner.data.params["alpha"] == "1.0"
        assert winner.data.metrics["mse"] == pytest.approx(sweep["metrics"]["mse"])
        assert client.get_model_version("diabetes_model", "2").run_id == sweep["run_id"]


def test_classifier_from_the_shared_store(embedded_store, example_data, allow_unpickling: None) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    classifier = embedded_store.classifier
    assert classifier["model_name"] == "diabetes_classifier"
    assert classifier["model_version"] == 1
    assert classifier["champion"] is True
    assert set(classifier["metrics"]) >= {"accuracy", "roc_auc", "log_loss"}

    # The same figures, computed here independently of the trainer.
    x_train = pd.DataFrame(example_data.x_train, columns=FEATURES)
    x_test = pd.DataFrame(example_data.x_test, columns=FEATURES)
    threshold = pd.Series(example_data.y_train).median()
    y_train = (pd.Series(example_data.y_train) > threshold).astype(int)
    y_test = (pd.Series(example_data.y_test) > threshold).astype(int)
    reference = LogisticRegression(max_iter=1000).fit(x_train, y_train)
    expected = log_loss(y_test, reference.predict_proba(x_test)[:, 1])
    assert classifier["metrics"]["log_loss"] == pytest.approx(expected, rel=1e-6)
    assert classifier["params"]["threshold"] == threshold

    import mlflow

    with store(embedded_store.tracking_uri):
        model = mlflow.sklearn.load_model("models:/diabetes_classifier@champion")
        proba = model.predict_proba(x_test)
        assert proba.shape == (89, 2)
        assert proba.sum(axis=1) == pytest.approx([1.0] * 89)
        assert proba[:, 1] == pytest.approx(reference.predict_proba(x_test)[:, 1])
    # The regressor of the shared store is the example too.
    assert round(embedded_store.regressor["metrics"]["mse"], 3) == 3424.857
