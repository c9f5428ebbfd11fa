"""The answer checks: every shape the contract rules out is named, the right shapes pass."""

from __future__ import annotations

import csv
import json

import pytest

from diabetes_loadtest.checks import WRONG_ANSWER, check_predict, check_predict_proba, check_rejected, failure_text
from diabetes_loadtest.slo import check_answers


def test_a_right_predict_answer_passes():
    assert check_predict(200, "[151.2, 80, 3e2]", 3) is None


@pytest.mark.parametrize(
    ("status", "text", "reason"),
    [
        (500, "[1.0]", "expected 200, got 500"),
        (200, "not json", "answer is not JSON"),
        (200, '{"predictions": [1.0]}', "expected a JSON list, got dict"),
        (200, "[1.0, 2.0]", "expected 1 entries, got 2"),
        (200, '["1.0"]', "entry 0 is not a finite number"),
        (200, "[true]", "entry 0 is not a finite number"),
        (200, "[NaN]", "entry 0 is not a finite number"),
        (200, "[[0.5, 0.5]]", "entry 0 is not a finite number"),
    ],
)
def test_a_wrong_predict_answer_is_named(status, text, reason):
    assert check_predict(status, text, 1) == reason


def test_a_right_predict_proba_answer_passes():
    assert check_predict_proba(200, json.dumps([[0.25, 0.75], [1.0, 0.0]]), 2) is None
    assert check_predict_proba(200, json.dumps([[0.2, 0.3, 0.5]]), 1) is None


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[151.2]", "entry 0 is not a list of class probabilities"),
        ("[[1.0]]", "entry 0 is not a list of class probabilities"),
        ("[[0.5, 0.5], [0.2, 0.3, 0.5]]", "entry 1 has 3 classes, entry 0 has 2"),
        ("[[1.5, -0.5]]", "entry 0 holds a value outside [0, 1]"),
        ("[[0.5, 0.4]]", "entry 0 sums to 0.9, not 1"),
    ],
)
def test_a_wrong_predict_proba_answer_is_named(text, reason):
    rows = len(json.loads(text))
    assert check_predict_proba(200, text, rows) == reason


def test_a_refusal_passes_only_as_a_4xx_with_a_message():
    body = json.dumps({"message": "data[0]: expected 10 values", "field": "data[0]"})
    assert check_rejected(422, body, None, None) is None
    assert check_rejected(401, body, 401, "k") is None
    assert check_rejected(200, "[1.0]", None, None) == "expected a 4xx, got 200"
    assert check_rejected(500, body, None, None) == "expected a 4xx, got 500"
    assert check_rejected(400, body, 415, None) == "expected 415, got 400"
    assert check_rejected(400, "Bad Request", None, None) == "answer is not JSON"
    assert check_rejected(400, '{"detail": "x"}', None, None) == 'error answer has no "message"'
    leaky = json.dumps({"message": "wrong key secret-key-1"})
    assert check_rejected(401, leaky, 401, "secret-key-1") == "error answer echoes the API key"


@pytest.mark.parametrize("status", [0, 408, 429, 503, 504])
def test_a_service_shedding_load_is_a_failure_but_not_a_wrong_answer(status):
    assert failure_text(status, f"expected 200, got {status}") == f"expected 200, got {status}"


@pytest.mark.parametrize("status", [200, 400, 401, 422, 500])
def test_any_other_failed_check_is_a_wrong_answer(status):
    assert failure_text(status, "expected a 4xx, got 200") == WRONG_ANSWER + "expected a 4xx, got 200"


def _failures_csv(path, *rows):
    """A `<prefix>_failures.csv` as Locust writes it (csv-quoted: errors hold commas)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Method", "Name", "Error", "Occurrences"])
        writer.writerows(("POST", *row) for row in rows)
    return path


def test_the_gate_counts_wrong_answers_from_locusts_failures_file(tmp_path):
    shed = ("/score predict x1", "CatchResponseError('expected 200, got 503')", 40)
    failures = _failures_csv(
        tmp_path / "locust_failures.csv",
        shed,
        ("/score [invalid] missing key", "CatchResponseError('wrong answer: expected a 4xx, got 200')", 7),
        ("/score [invalid] wrong key", "CatchResponseError('wrong answer: expected a 4xx, got 200')", 5),
    )
    verdict = check_answers(failures)
    assert verdict.wrong == 12
    assert not verdict.passed
    assert verdict.commonest == "/score [invalid] missing key: expected a 4xx, got 200"
    assert verdict.line().endswith(": FAIL")
    assert check_answers(_failures_csv(tmp_path / "shed_only.csv", shed)).passed
