"""The plain Locust command line against the real service, keys on: answers checked, invalid bodies 4xx."""

from __future__ import annotations

import csv
import io

import pytest

from diabetes_loadtest.invalid import invalid_requests
from tests.loadtests.conftest import PRIMARY, SECONDARY
from tests.loadtests.helpers import locust, stats_rows
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.slow

# A high share of invalid bodies so a short run sends every kind several times (they go round-robin).
SHORT_RUN = ("--headless", "--users", "4", "--spawn-rate", "4", "--run-time", "12s", "--only-summary")
MANY_INVALID = {"DIABETES_LOADTEST_INVALID_SHARE": "0.3"}


def test_a_run_against_the_regressor_has_no_failures_and_every_invalid_body_gets_its_4xx(regressor_service, tmp_path):
    # Run from an unrelated folder: the locustfile finds its own data.
    result = locust(
        *SHORT_RUN,
        "--host",
        regressor_service.url,
        "--csv",
        str(tmp_path / "run"),
        env={"DIABETES_API_KEY": PRIMARY, **MANY_INVALID},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = stats_rows(tmp_path / "run_stats.csv")
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    assert int(rows["Aggregated"]["Request Count"]) > 100
    for case in invalid_requests(PRIMARY):
        row = rows[f"/score [invalid] {case.name}"]
        assert int(row["Request Count"]) >= 1, case.name
        assert int(row["Failure Count"]) == 0, case.name
    for size in (1, 10, 100):
        assert int(rows[f"/score predict x{size}"]["Request Count"]) > 0
    # The Ridge regressor has no predict_proba: `auto` left those users out, and said so.
    assert not any("predict_proba" in name for name in rows)
    assert "PredictProbaUser skipped" in result.stderr


def test_a_run_against_the_classifier_checks_probabilities_with_the_secondary_key(classifier_service, tmp_path):
    result = locust(
        *SHORT_RUN,
        "--host",
        classifier_service.url + "/",  # a trailing slash must not make `//score`
        "--csv",
        str(tmp_path / "run"),
        "--exclude-tags",
        "invalid",
        env={"DIABETES_API_KEY": SECONDARY, "DIABETES_LOADTEST_BATCH_SIZES": "1,100"},
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = stats_rows(tmp_path / "run_stats.csv")
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    assert int(rows["/score predict_proba x100"]["Request Count"]) > 0
    assert int(rows["/score predict x1"]["Request Count"]) > 0
    assert "/score predict x10" not in rows  # the configured sizes only
    assert not any("[invalid]" in name for name in rows)  # excluded by tag


def test_answers_that_break_the_contract_are_failures_and_the_exit_status_says_so(service, example_model_pkl, tmp_path):
    # A service without keys answers the missing-key and wrong-key bodies with 200: the locustfile
    # must count those as failures and exit non-zero, and forcing predict_proba on the regressor
    # must fail too rather than pass unchecked.
    svc: ServiceProcess
    with service(str(example_model_pkl)) as svc:
        result = locust(
            "--headless",
            "--users",
            "2",
            "--spawn-rate",
            "2",
            "--run-time",
            "6s",
            "--only-summary",
            "--host",
            svc.url,
            "--csv",
            str(tmp_path / "run"),
            env={
                "DIABETES_API_KEY": "a-key-the-service-does-not-check",
                "DIABETES_LOADTEST_PROBA": "1",
                **MANY_INVALID,
            },
            cwd=tmp_path,
        )
    assert result.returncode == 1, result.stderr[-3000:]
    rows = stats_rows(tmp_path / "run_stats.csv")
    assert int(rows["/score [invalid] missing key"]["Failure Count"]) >= 1
    assert int(rows["/score [invalid] short row"]["Failure Count"]) == 0
    proba = [row for name, row in rows.items() if name.startswith("/score predict_proba")]
    assert proba
    assert all(row["Failure Count"] == row["Request Count"] for row in proba)
    failures_csv = (tmp_path / "run_failures.csv").read_text()
    errors = {row["Name"]: row["Error"] for row in csv.DictReader(io.StringIO(failures_csv))}
    assert "expected a 4xx, got 200" in errors["/score [invalid] missing key"]
    assert "wrong answer: " in errors["/score [invalid] missing key"]
    # The start said why: the service checks no key, and one was given.
    assert "checks no API key, but a key was given" in result.stderr
    assert "a-key-the-service-does-not-check" not in failures_csv + result.stderr
