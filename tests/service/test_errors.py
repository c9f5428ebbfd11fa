"""Every caller mistake in the contract gets its 4xx and a message naming the field; nothing leaks."""

from __future__ import annotations

import json

import pytest
import requests

SECRET_LOOKING = "98765.4321"  # a value that must never come back in an error body


@pytest.fixture(scope="module")
def svc(example_model_pkl, tmp_path_factory):
    from tests.support.service import ServiceProcess

    env = {"DIABETES_MAX_ROWS": "50", "DIABETES_MAX_BODY_BYTES": "65536"}
    with ServiceProcess(str(example_model_pkl), env=env, log=tmp_path_factory.mktemp("log") / "s.log") as service:
        yield service


def post(svc, body: bytes | str, content_type: str | None = "application/json"):
    headers = {"Content-Type": content_type} if content_type else {}
    return requests.post(svc.url + "/score", data=body, headers=headers, timeout=10)


def row(*replace: tuple[int, object]) -> list[object]:
    values: list[object] = [0.01] * 10
    for index, value in replace:
        values[index] = value
    return values


CASES = [
    # (name, raw body, status, field, words in the message)
    ("malformed JSON", '{"data": [[1, 2,', 400, None, "malformed JSON"),
    ("not an object", "[1, 2]", 422, None, "JSON object"),
    ("data missing", '{"method": "predict"}', 422, "data", "required"),
    ("row too short", json.dumps({"data": [row(), [0.1] * 9]}), 422, "data[1]", "has 9 values, expected 10"),
    ("row too long", json.dumps({"data": [[0.1] * 11]}), 422, "data[0]", "has 11 values, expected 10"),
    ("numeric string", json.dumps({"data": [row((3, SECRET_LOOKING))]}), 422, "data[0][3]", "not a string"),
    ("boolean", json.dumps({"data": [row((0, True))]}), 422, "data[0][0]", "not a boolean"),
    ("null", json.dumps({"data": [row(), row((9, None))]}), 422, "data[1][9]", "not null"),
    ("nested list", json.dumps({"data": [row((2, [1.0]))]}), 422, "data[0][2]", "not a list"),
    ("NaN", '{"data": [[0.1, NaN, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]]}', 422, "data[0][1]", "finite"),
    ("Infinity", '{"data": [[0.1, 0.1, Infinity, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]]}', 422, "data[0][2]", "finite"),
    ("overflow", '{"data": [[0.1, 0.1, 0.1, 1e999, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]]}', 422, "data[0][3]", "finite"),
    ("row not a list", json.dumps({"data": [row(), 5]}), 422, "data[1]", "list of numbers or an object"),
    ("unknown method", json.dumps({"data": [row()], "method": "transform"}), 422, "method", "predict"),
    ("empty data", json.dumps({"data": []}), 422, "data", "at least one row"),
    ("unknown field", json.dumps({"data": [row()], "methd": "predict"}), 422, "methd", "unknown field"),
    ("unknown feature", json.dumps({"data": [{"agee": 1}]}), 422, "data[0]", "unknown feature"),
    ("too many rows", json.dumps({"data": [row()] * 51}), 413, "data", "limit of 50 rows"),
    ("rows, not data", json.dumps({"rows": [row()]}), 422, "data", 'is required; did you mean "data"?'),
]


@pytest.mark.parametrize(("name", "body", "status", "field", "words"), CASES, ids=[c[0] for c in CASES])
def test_caller_mistakes_get_a_clear_4xx(svc, name, body, status, field, words):
    answer = post(svc, body)
    assert answer.status_code == status, answer.text
    payload = answer.json()
    assert payload["field"] == field
    assert words in payload["message"]
    if field:
        assert payload["message"].startswith(field)
    assert SECRET_LOOKING not in answer.text
    assert "Traceback" not in answer.text
    assert "/" not in payload["message"].replace("application/json", "")


def test_missing_feature_in_a_keyed_row_is_named(svc):
    keyed = dict(zip(["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5"], [0.1] * 9, strict=True))
    answer = post(svc, json.dumps({"data": [keyed]}))
    assert answer.status_code == 422
    assert answer.json()["message"] == "data[0]: missing feature 's6'"


def test_body_over_the_size_limit_is_413(svc):
    body = json.dumps({"data": [row()] * 40, "pad": "x" * 70_000})
    answer = post(svc, body)
    assert answer.status_code == 413
    assert "65536 bytes" in answer.json()["message"]


def test_chunked_body_over_the_limit_is_413(svc):
    def chunks():
        yield b'{"data": [' + b"[0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1]," * 2000

    answer = requests.post(svc.url + "/score", data=chunks(), headers={"Content-Type": "application/json"}, timeout=10)
    assert answer.status_code == 413


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "text/csv"])
def test_wrong_content_type_is_415(svc, content_type):
    answer = post(svc, json.dumps({"data": [row()]}), content_type=content_type)
    assert answer.status_code == 415
    assert answer.json()["field"] == "Content-Type"


def test_json_content_type_with_charset_is_accepted(svc):
    assert post(svc, json.dumps({"data": [row()]}), content_type="application/json; charset=utf-8").status_code == 200


def test_out_of_range_values_never_answer_a_silent_null(svc):
    answer = post(svc, json.dumps({"data": [row(), row((2, 1e308), (3, 1e308))]}))
    assert answer.status_code == 422
    assert answer.json()["field"] == "data[1]"


def test_unknown_route_and_wrong_verb(svc):
    assert requests.get(svc.url + "/nope", timeout=5).status_code == 404
    guessed = requests.post(svc.url + "/predict", json={"data": [row()]}, timeout=5)
    assert guessed.status_code == 404
    assert guessed.json()["message"] == "no route /predict: scoring is POST /score, every route is listed at /docs"
    wrong_verb = requests.get(svc.url + "/score", timeout=5)
    assert wrong_verb.status_code == 405
    assert wrong_verb.headers["allow"] == "POST"
    assert wrong_verb.json()["message"]


def test_the_service_survives_every_mistake(svc):
    for _, body, *_ in CASES:
        post(svc, body)
    assert requests.get(svc.url + "/health/ready", timeout=5).status_code == 200
    assert "Traceback" not in svc.output()
