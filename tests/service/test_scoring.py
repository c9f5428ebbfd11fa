"""Scoring over HTTP against the real service process: the worked example's numbers and methods."""

from __future__ import annotations

import json
import math
import time

import pytest
import requests

from tests.conftest import FEATURES


@pytest.fixture(scope="module")
def ridge_service(example_model_pkl, tmp_path_factory):
    from tests.support.service import ServiceProcess

    with ServiceProcess(str(example_model_pkl), workers=2, log=tmp_path_factory.mktemp("log") / "s.log") as svc:
        yield svc


def score(svc, body, **kwargs):
    return requests.post(svc.url + "/score", json=body, timeout=10, **kwargs)


def test_example_rows_score_as_the_worked_example(ridge_service, example_data):
    answer = score(ridge_service, {"data": example_data.x_test[:2], "method": "predict"})
    assert answer.status_code == 200
    assert [round(v, 3) for v in answer.json()] == [235.112, 246.799]


def test_feature_keyed_rows_score_the_same_as_lists(ridge_service, example_data):
    rows = example_data.x_test[:5]
    keyed = [dict(zip(reversed(FEATURES), reversed(row), strict=True)) for row in rows]
    as_lists = score(ridge_service, {"data": rows}).json()
    as_dicts = score(ridge_service, {"data": keyed}).json()
    assert as_dicts == as_lists
    assert len(as_lists) == 5


def test_answers_match_the_in_process_model_on_every_test_row(ridge_service, example_data, example_model_pkl):
    import joblib
    import numpy as np

    expected = joblib.load(example_model_pkl).predict(np.array(example_data.x_test))
    got = score(ridge_service, {"data": example_data.x_test, "method": "predict"}).json()
    assert len(got) == len(expected) == 89
    assert all(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(got, expected, strict=True))


def test_method_defaults_to_predict_for_a_regressor(ridge_service, example_data):
    answer = score(ridge_service, {"data": example_data.x_test[:1]})
    assert answer.status_code == 200
    assert isinstance(answer.json()[0], float)


def test_predict_proba_on_a_regressor_is_a_4xx_naming_the_method(ridge_service, example_data):
    answer = score(ridge_service, {"data": example_data.x_test[:1], "method": "predict_proba"})
    assert answer.status_code == 422
    assert answer.json()["field"] == "method"
    assert "predict_proba" in answer.json()["message"]


def test_every_answer_carries_request_id_and_model_identity(ridge_service):
    for answer in (
        requests.get(ridge_service.url + "/", timeout=5),
        requests.post(ridge_service.url + "/score", json={"data": []}, timeout=5),
        requests.get(ridge_service.url + "/nowhere", timeout=5),
    ):
        assert len(answer.headers["x-request-id"]) >= 16
        assert answer.headers["x-model-name"] == "model"
        assert answer.headers["x-model-version"] == "local"
    echoed = requests.get(ridge_service.url + "/", headers={"x-request-id": "trace-42"}, timeout=5)
    assert echoed.headers["x-request-id"] == "trace-42"


def test_liveness_and_readiness(ridge_service):
    live = requests.get(ridge_service.url + "/", timeout=5)
    assert (live.status_code, live.text) == (200, "Healthy")
    assert requests.get(ridge_service.url + "/health/ready", timeout=5).status_code == 200


def _metric_samples(svc) -> dict[str, float]:
    text = requests.get(svc.url + "/metrics", timeout=5).text
    sample = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            sample[name] = float(value)
    return sample


def test_metrics_count_requests_and_predictions_across_workers(ridge_service, example_data):
    time.sleep(0.3)  # every worker's earlier requests published (each does so within 0.1 s)
    before = _metric_samples(ridge_service)
    served = 'diabetes_http_requests_total{route="/score",status="200"}'
    rows = 'diabetes_predictions_total{method="predict"}'
    for _ in range(6):
        assert score(ridge_service, {"data": example_data.x_test[:3], "method": "predict"}).status_code == 200
    # Each worker publishes its counts within 0.1 s; whichever worker answers adds up both.
    deadline = time.monotonic() + 3
    while True:
        sample = _metric_samples(ridge_service)
        if sample.get(served, 0) - before.get(served, 0) >= 6 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert sample[served] - before.get(served, 0) == 6
    assert sample[rows] - before.get(rows, 0) == 18
    route = 'route="/score"'
    assert sample[f"diabetes_http_request_duration_seconds_count{{{route}}}"] >= 6
    assert (
        sample[f'diabetes_http_request_duration_seconds_bucket{{le="+Inf",{route}}}']
        == sample[f"diabetes_http_request_duration_seconds_count{{{route}}}"]
    )
    assert 'diabetes_model_info{name="model",version="local"}' in sample


def test_access_log_has_one_json_line_per_request_and_no_bodies(ridge_service, example_data):
    request_id = "access-log-check-" + str(time.time_ns())
    body = {"data": example_data.x_test[:4], "method": "predict"}
    assert score(ridge_service, body, headers={"x-request-id": request_id}).status_code == 200
    assert score(ridge_service, {"data": [[1.0]]}, headers={"x-request-id": request_id + "-bad"}).status_code == 422
    deadline = time.monotonic() + 3
    while True:
        lines = [json.loads(line) for line in ridge_service.output().splitlines() if line.startswith("{")]
        mine = {line["request_id"]: line for line in lines if line["request_id"].startswith(request_id)}
        if len(mine) == 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    good, bad = mine[request_id], mine[request_id + "-bad"]
    assert {k: good[k] for k in ("method", "route", "status", "rows", "model_version")} == {
        "method": "POST",
        "route": "/score",
        "status": 200,
        "rows": 4,
        "model_version": "local",
    }
    assert (bad["status"], bad["rows"]) == (422, 0)
    assert 0 < good["latency_ms"] < 10_000
    assert str(example_data.x_test[0][0]) not in ridge_service.output()


def test_models_uri_on_the_embedded_store(service, embedded_store, example_data):
    regressor = embedded_store.regressor
    with service(f"models:/{regressor['model_name']}@champion", env=embedded_store.env) as svc:
        answer = score(svc, {"data": example_data.x_test[:2], "method": "predict"})
        assert [round(v, 3) for v in answer.json()] == [235.112, 246.799]
        assert answer.headers["x-model-name"] == "diabetes_model"
        assert answer.headers["x-model-version"] == str(regressor["model_version"])


def test_classifier_predict_proba_rows_sum_to_one(service, embedded_store, example_data):
    classifier = embedded_store.classifier
    uri = f"models:/{classifier['model_name']}/{classifier['model_version']}"
    with service(uri, env=embedded_store.env) as svc:
        probabilities = score(svc, {"data": example_data.x_test[:20], "method": "predict_proba"}).json()
        assert len(probabilities) == 20
        assert all(len(row) == 2 and math.isclose(sum(row), 1.0, rel_tol=1e-9) for row in probabilities)
        # Left out, the method is predict_proba, as Azure ML's no-code scoring does for classifiers.
        assert score(svc, {"data": example_data.x_test[:20]}).json() == probabilities
        labels = score(svc, {"data": example_data.x_test[:20], "method": "predict"}).json()
        assert labels == [int(p[1] > 0.5) for p in probabilities]


def worker_libraries(svc) -> list[str]:
    import psutil

    workers = psutil.Process(svc.proc.pid).children(recursive=True)
    assert workers
    return [open(f"/proc/{w.pid}/maps").read() for w in workers]


def test_workers_serving_a_linear_model_never_import_scikit_learn(ridge_service):
    # The preparation step compiled Ridge to numpy arrays: the workers stay small and start fast.
    assert all("/sklearn/" not in maps for maps in worker_libraries(ridge_service))


def test_a_non_linear_model_is_served_by_scikit_learn_itself(service, tmp_path, example_data):
    import joblib
    import numpy as np
    from sklearn.tree import DecisionTreeRegressor

    model = DecisionTreeRegressor(max_depth=4, random_state=0).fit(example_data.x_train, example_data.y_train)
    joblib.dump(model, tmp_path / "tree.pkl")
    with service(str(tmp_path / "tree.pkl"), workers=1) as svc:
        got = score(svc, {"data": example_data.x_test, "method": "predict"}).json()
        assert got == model.predict(np.array(example_data.x_test)).tolist()
        assert any("/sklearn/" in maps for maps in worker_libraries(svc))


def test_concurrent_requests_to_a_gathering_model_get_their_own_answers(service, example_data, tmp_path):
    """A scikit-learn pipeline is gathered (runner.py): under concurrency each caller still gets its rows' answers."""
    from concurrent.futures import ThreadPoolExecutor

    import joblib
    import numpy as np
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), Ridge(alpha=0.03)).fit(example_data.x_train, example_data.y_train)
    joblib.dump(model, tmp_path / "model.pkl")
    x = example_data.x_test
    bodies = [x[i : i + 1 + i % 4] for i in range(64)]
    with service(str(tmp_path / "model.pkl"), workers=2) as svc, ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda rows: score(svc, {"data": rows, "method": "predict"}), bodies))
    for rows, answer in zip(bodies, answers, strict=True):
        assert answer.status_code == 200
        np.testing.assert_allclose(answer.json(), model.predict(np.array(rows)), rtol=1e-12)
