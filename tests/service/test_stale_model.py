"""Never a stale model: a version number the registry gives again, to another model, serves the new one.

MLflow numbers a registered model's versions from 1 again when the store is created again, or the
registered model deleted and registered again. Tried as a user would, with real processes: train
into a store, serve `models:/diabetes_model/1`, register a different model as version 1, serve the
same URI again: the answers are the new model's, computed here with scikit-learn from the new run's
own `model.pkl`. Both for the embedded SQLite store and for a real `mlflow server`; in both, a
restart of an unchanged version still starts from the prepared-model cache.

And when the preparation fails, the user reads its whole message, on one line.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from diabetes_store.cache import install
from tests.conftest import FEATURES, run_train
from tests.service.test_cold_start import FROM_CACHE, agree, expected, predict, settle
from tests.support.mlflow_server import MlflowServer
from tests.support.processes import DIABETES
from tests.trainer.helpers import store

URI = "models:/diabetes_model/1"


def run_model_file(artifacts: Path, run_id: str) -> Path:
    """The `model.pkl` the trainer logged at the root of run `run_id`'s artifacts."""
    return next(path for path in artifacts.rglob("model.pkl") if run_id in path.parts)


def serve_twice(service, env: dict[str, str], rows: list[list[float]]) -> list[float]:
    """The answers of `URI`, served once and again: the second start must come from the cache."""
    with service(URI, env=env) as first:
        answers = predict(first, rows)
        settle(first)  # answered from the arrays: the verified form enters the cache a little later
    with service(URI, env=env) as again:
        assert predict(again, rows) == answers
    assert FROM_CACHE in again.output()  # the registry confirmed the same content: nothing prepared
    return answers


def test_the_embedded_store_created_again_serves_its_new_version_1(service, tmp_path, example_data):
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "DIABETES_HOME": str(home),
        "DIABETES_TRACKING_URI": f"sqlite:///{home / 'mlruns.db'}",  # the embedded store of `home`
        "DIABETES_MODEL_CACHE": str(tmp_path / "cache"),
    }
    rows = example_data.x_test[:3]
    old_run = run_train(home)
    assert old_run["model_version"] == 1
    old = serve_twice(service, env, rows)
    assert agree(old, expected(run_model_file(home / "mlartifacts", old_run["run_id"]), rows))

    # A new store in the same folder (the cache stays), holding a different model as version 1.
    (home / "mlruns.db").unlink()
    shutil.rmtree(home / "mlartifacts")
    new_run = run_train(home, "--alpha", "1.0")
    assert new_run["model_version"] == 1
    with service(URI, env=env) as svc:
        new = predict(svc, rows)
    assert FROM_CACHE not in svc.output()
    assert agree(new, expected(run_model_file(home / "mlartifacts", new_run["run_id"]), rows))
    assert not np.allclose(new, old)  # the two models do differ: the check above could fail


def test_a_tracking_server_whose_model_is_registered_again_serves_its_new_version_1(service, tmp_path, example_data):
    home = tmp_path / "home"
    home.mkdir()
    rows = example_data.x_test[:3]
    with MlflowServer(tmp_path / "server") as server:
        env = {"DIABETES_TRACKING_URI": server.uri, "DIABETES_MODEL_CACHE": str(tmp_path / "cache")}
        old_run = run_train(home, "--tracking-uri", server.uri)
        assert old_run["model_version"] == 1
        old = serve_twice(service, env, rows)
        assert agree(old, expected(run_model_file(server.artifacts, old_run["run_id"]), rows))

        with store(server.uri) as client:
            client.delete_registered_model("diabetes_model")
        new_run = run_train(home, "--tracking-uri", server.uri, "--alpha", "1.0")
        assert new_run["model_version"] == 1
        with service(URI, env=env) as svc:
            new = predict(svc, rows)
        assert FROM_CACHE not in svc.output()
        assert agree(new, expected(run_model_file(server.artifacts, new_run["run_id"]), rows))
        assert not np.allclose(new, old)


def test_following_an_alias_tells_versions_apart_by_content_not_number(tmp_path, monkeypatch):
    """--follow skips what it has: by content, so version 1 of a store created again is new to it.
    Each check is the preparation child a follower starts, for real."""
    from diabetes_service.model.resolution import Unchanged, preparation_command, preparation_outcome
    from diabetes_service.model.trust import TrustPolicy

    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("DIABETES_MODEL_CACHE", str(tmp_path / "cache"))
    tracking_uri = f"sqlite:///{home / 'mlruns.db'}"
    alias = "models:/diabetes_model@champion"

    def prepare(*skip: str):
        cmd, env = preparation_command(alias, tracking_uri, tmp_path / "compiled", TrustPolicy(), skip=skip)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
        return preparation_outcome(alias, done.returncode, done.stdout, done.stderr)

    run_train(home)
    served = prepare()
    assert served.version == "1"
    assert served.content
    with pytest.raises(Unchanged):  # what the follower has: nothing to prepare
        prepare(served.content)

    (home / "mlruns.db").unlink()
    shutil.rmtree(home / "mlartifacts")
    run_train(home, "--alpha", "1.0")
    new = prepare(served.content)
    assert new.version == "1"
    assert new.content != served.content
    assert new.path != served.path


def test_a_failed_preparation_shows_its_whole_message_on_one_line(tmp_path, example_data):
    """The issue's case: a Ridge whose input example holds a NaN fails its warm-up predict, and
    scikit-learn's message spans several lines; every word of it reaches the user."""
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import Ridge

    frame = pd.DataFrame(example_data.x_train, columns=FEATURES)
    model = Ridge(alpha=0.03).fit(frame, example_data.y_train)
    example = frame.iloc[:2].copy()
    example.iloc[0, 2] = np.nan
    folder = tmp_path / "model"
    mlflow.sklearn.save_model(
        model, folder, signature=infer_signature(frame, model.predict(frame)), input_example=example
    )
    with pytest.raises(ValueError) as raised:
        model.predict(example)
    assert "\n" in str(raised.value)  # a message of several lines, as the issue saw
    whole = " ".join(str(raised.value).split())

    done = subprocess.run(
        [DIABETES, "serve", "--model-uri", str(folder), "--port", "0"],
        env={**os.environ, "DIABETES_MODEL_CACHE": str(tmp_path / "cache")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    (line,) = [line for line in done.stderr.splitlines() if "cannot serve the model" in line]
    assert f"the model failed its warm-up predict: ValueError: {whole}" in line


def test_a_failed_fill_leaves_nothing_behind(tmp_path):
    """The store's staging-then-rename: a download that fails half-way leaves no folder, no staging."""
    target = tmp_path / "cache" / "entry"

    def half_then_fail(staging: Path) -> None:
        (staging / "MLmodel").write_text("half")
        raise OSError("the connection dropped")

    with pytest.raises(OSError, match="dropped"):
        install(target, half_then_fail)
    assert list((tmp_path / "cache").iterdir()) == []

    def whole(staging: Path) -> None:
        (staging / "MLmodel").write_text("whole")

    assert install(target, whole) == target
    assert (target / "MLmodel").read_text() == "whole"
    assert [path.name for path in (tmp_path / "cache").iterdir()] == ["entry"]
