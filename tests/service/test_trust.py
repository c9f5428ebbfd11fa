"""Safe loading on a real `diabetes serve`: pickles need an opt-in or a matching pin, skops types an
allow-list; the served artifact's sha256 is in the log and /metrics."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support.processes import DIABETES, free_port

STRICT = {"DIABETES_ALLOW_PICKLE": "false"}  # the suite opts in by default (conftest); not here


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def refused(model_uri: str, *args: str, env: dict[str, str] | None = None) -> str:
    """`diabetes serve` that must refuse to start: its one line on stderr."""
    import os

    done = subprocess.run(
        [DIABETES, "serve", "--model-uri", model_uri, "--port", str(free_port()), "--workers", "1", *args],
        env={**os.environ, **STRICT, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("diabetes serve:")]
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_a_bare_pickle_needs_an_opt_in_and_says_how(example_model_pkl):
    line = refused(str(example_model_pkl))
    assert "model.pkl is a pickle" in line
    assert "--allow-pickle" in line
    assert f"--model-sha256 {sha256(example_model_pkl)}" in line


def test_a_pickle_with_a_matching_pin_serves_and_shows_its_digest(service, example_model_pkl, example_data):
    digest = sha256(example_model_pkl)
    svc = service(str(example_model_pkl), env=STRICT, args=["--model-sha256", digest.upper()]).start()
    answer = requests.post(svc.url + "/score", json={"data": example_data.x_test[:2]}, timeout=5)
    assert [round(v, 3) for v in answer.json()] == [235.112, 246.799]
    assert f"artifact sha256 {digest}" in svc.output()
    metrics = requests.get(svc.url + "/metrics", timeout=5).text
    assert f'diabetes_model_artifact_info{{name="model",sha256="{digest}",version="local"}} 1.0' in metrics


def test_a_pin_that_does_not_match_refuses_in_one_line_naming_sha256(example_model_pkl):
    line = refused(str(example_model_pkl), "--model-sha256", "0" * 64, "--allow-pickle")
    assert "sha256" in line
    assert sha256(example_model_pkl) in line


def test_allow_pickle_serves_the_classic_example(service, example_model_pkl, example_data):
    svc = service(str(example_model_pkl), env=STRICT, args=["--allow-pickle"]).start()
    answer = requests.post(svc.url + "/score", json={"data": example_data.x_test[:1]}, timeout=5)
    assert round(answer.json()[0], 3) == 235.112


@pytest.fixture(scope="module")
def mlflow_models(tmp_path_factory: pytest.TempPathFactory, example_data) -> dict[str, Path]:
    """MLflow model folders of the example: cloudpickle, and skops holding a type of the tests' own."""
    import mlflow.sklearn
    import pandas as pd
    from sklearn.linear_model import Ridge

    from tests.conftest import FEATURES
    from tests.service.slow_models import SlowishRidge

    frame = pd.DataFrame(example_data.x_train, columns=FEATURES)
    root = tmp_path_factory.mktemp("mlflow-models")
    plain = Ridge(alpha=0.03).fit(frame, example_data.y_train)
    mlflow.sklearn.save_model(plain, root / "cloudpickle", serialization_format="cloudpickle")
    custom = SlowishRidge(alpha=0.03).fit(frame, example_data.y_train)
    own_type = "tests.service.slow_models.SlowishRidge"
    # The artifact vouches for its own type: the service must not take its word.
    mlflow.sklearn.save_model(
        custom, root / "skops-custom", serialization_format="skops", skops_trusted_types=[own_type]
    )
    mlflow.sklearn.save_model(plain, root / "skops-plain", serialization_format="skops")
    return {"cloudpickle": root / "cloudpickle", "skops-custom": root / "skops-custom", "skops": root / "skops-plain"}


def test_mlflows_cloudpickle_format_needs_the_opt_in_too(mlflow_models):
    line = refused(str(mlflow_models["cloudpickle"]))
    assert "model.pkl is a pickle" in line


def test_a_skops_type_outside_the_allow_list_is_refused_even_if_the_mlmodel_trusts_it(
    service, mlflow_models, repo_on_path, example_data
):
    own_type = "tests.service.slow_models.SlowishRidge"
    line = refused(str(mlflow_models["skops-custom"]), env=repo_on_path)
    assert "outside the allow-list" in line
    assert f"--trust-type {own_type}" in line
    svc = service(str(mlflow_models["skops-custom"]), env={**repo_on_path, **STRICT}, args=["--trust-type", own_type])
    svc.start()
    answer = requests.post(svc.url + "/score", json={"data": example_data.x_test[:1]}, timeout=5)
    assert round(answer.json()[0], 3) == 235.112


def test_a_skops_model_of_scikit_learn_types_serves_without_flags(service, mlflow_models, example_data):
    svc = service(str(mlflow_models["skops"]), env=STRICT).start()
    answer = requests.post(svc.url + "/score", json={"data": example_data.x_test[:1]}, timeout=5)
    assert round(answer.json()[0], 3) == 235.112
