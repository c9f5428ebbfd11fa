"""Azure ML v2 bodies on `/score` (`input_data` as a split table or as rows, optional `params`): the same
answers as the v1 body, a bare JSON list, and errors named as for v1."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import FEATURES


@pytest.fixture(scope="module")
def classifier(embedded_store, tmp_path_factory):
    from tests.support.service import ServiceProcess

    trained = embedded_store.classifier
    uri = f"models:/{trained['model_name']}/{trained['model_version']}"
    with ServiceProcess(uri, env=embedded_store.env, log=tmp_path_factory.mktemp("log") / "s.log") as svc:
        yield svc


@pytest.fixture(scope="module")
def regressor(example_model_pkl, tmp_path_factory):
    from tests.support.service import ServiceProcess

    with ServiceProcess(str(example_model_pkl), log=tmp_path_factory.mktemp("log") / "s.log") as svc:
        yield svc


def score(svc, body):
    return requests.post(svc.url + "/score", json=body, timeout=10)


@pytest.mark.parametrize("method", ["predict", "predict_proba"])
def test_v2_bodies_score_as_v1(classifier, example_data, method):
    rows = example_data.x_test[:6]
    v1 = score(classifier, {"data": rows, "method": method})
    assert v1.status_code == 200
    params = {"method": method}
    reversed_split = {"columns": FEATURES[::-1], "index": list(range(6)), "data": [r[::-1] for r in rows]}
    for body in (
        {"input_data": {"columns": FEATURES, "index": list(range(6)), "data": rows}, "params": params},
        {"input_data": {"columns": FEATURES, "data": rows}, "params": params},
        {"input_data": reversed_split, "params": params},
        {"input_data": {"data": rows}, "params": params},
        {"input_data": rows, "params": params},
    ):
        answer = score(classifier, body)
        assert answer.status_code == 200, (body, answer.text)
        assert answer.json() == v1.json()  # a bare list, one entry per row


def test_v2_default_is_the_pyfunc_method_and_v1_keeps_its_own(classifier, example_data):
    rows = example_data.x_test[:4]
    v2 = score(classifier, {"input_data": rows}).json()
    assert v2 == score(classifier, {"data": rows, "method": "predict"}).json()  # labels, as Azure's MLflow script
    assert all(label in (0, 1) for label in v2)
    v1 = score(classifier, {"data": rows}).json()  # the no-code v1 default: predict_proba where the model has it
    assert all(len(p) == 2 for p in v1)


def test_v2_on_a_bare_pickle_regressor(regressor, example_data):
    rows = example_data.x_test[:2]
    answer = score(regressor, {"input_data": {"columns": FEATURES, "data": rows}})
    assert [round(v, 3) for v in answer.json()] == [235.112, 246.799]
    assert score(regressor, {"input_data": rows, "params": {"other": 1}}).json() == answer.json()


CASES = [
    # (body, status, field, words)
    ({"input_data": 5}, 422, "input_data", "columns and data, or a list of rows"),
    ({"input_data": [[0.1] * 9]}, 422, "input_data[0]", "has 9 values, expected 10"),
    ({"input_data": {"columns": FEATURES, "data": [[0.1] * 9 + ["x"]]}}, 422, "input_data.data[0][9]", "not a string"),
    ({"input_data": {"columns": FEATURES[:9], "data": [[0.1] * 9]}}, 422, "input_data.columns", "missing feature 's6'"),
    (
        {"input_data": {"columns": [*FEATURES, "x"], "data": [[0.1] * 11]}},
        422,
        "input_data.columns",
        "unknown feature 'x'",
    ),
    ({"input_data": {"columns": FEATURES, "data": []}}, 422, "input_data.data", "at least one row"),
    ({"input_data": [[0.1] * 10], "params": {"method": "transform"}}, 422, "params.method", "unknown value"),
    ({"input_data": [[0.1] * 10], "extra": 1}, 422, "extra", "unknown field"),
]


@pytest.mark.parametrize(("body", "status", "field", "words"), CASES, ids=[str(c[2]) + ":" + c[3] for c in CASES])
def test_v2_mistakes_are_named(regressor, body, status, field, words):
    answer = score(regressor, body)
    assert answer.status_code == status, answer.text
    assert answer.json()["field"] == field
    assert words in answer.json()["message"]
    assert answer.json()["message"].startswith(field)


def test_a_v1_mistake_keeps_its_v1_message(regressor):
    answer = score(regressor, {"data": [[0.1] * 9]})
    assert answer.json() == {
        "message": "data[0]: has 9 values, expected 10 (age, sex, bmi, bp, s1, s2, s3, s4, s5, s6)",
        "field": "data[0]",
    }
