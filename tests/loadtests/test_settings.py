"""The locustfile's data and knobs: the example's test rows, env settings, URLs, SLO files."""

from __future__ import annotations

import random

import pytest

from diabetes_loadtest.data import EXAMPLE_ROWS, DataError, build_bodies, load_rows
from diabetes_loadtest.settings import Settings, SettingsError, score_url
from diabetes_loadtest.slo import SloError, evaluate, load_slos


def test_the_shipped_rows_are_the_examples_test_set(example_data):
    assert load_rows() == example_data.x_test
    assert len(load_rows()) == 89


def test_bodies_draw_whole_example_rows_even_beyond_the_data_size():
    import json

    rows = load_rows()
    pools = build_bodies(rows, (1, 100), "predict_proba", rng=random.Random(1))
    body = json.loads(pools[100][0].payload)
    assert body["method"] == "predict_proba"
    assert len(body["data"]) == pools[100][0].rows == 100
    assert all(row in rows for row in body["data"])


def test_a_rows_file_of_the_wrong_shape_is_refused(tmp_path):
    bad = tmp_path / "rows.json"
    bad.write_text('{"rows": [[1, 2, 3]]}')
    with pytest.raises(DataError, match="row 0 is not 10 finite numbers"):
        load_rows(bad)
    with pytest.raises(DataError, match="cannot read rows"):
        load_rows(tmp_path / "missing.json")
    assert EXAMPLE_ROWS.is_file()


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080/score"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/score"),
        (
            "http://20.1.2.3:80/api/v1/service/diabetes-service",
            "http://20.1.2.3:80/api/v1/service/diabetes-service/score",
        ),
        (
            "https://x.example/api/v1/service/diabetes-service/",
            "https://x.example/api/v1/service/diabetes-service/score",
        ),
    ],
)
def test_the_score_url_keeps_the_hosts_path_prefix(host, url):
    assert score_url(host) == url


def test_settings_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("DIABETES_LOADTEST_BATCH_SIZES", "5, 50")
    monkeypatch.setenv("DIABETES_LOADTEST_INVALID_SHARE", "0.001")
    monkeypatch.setenv("DIABETES_LOADTEST_PROBA", "0")
    monkeypatch.setenv("DIABETES_API_KEY", "k")
    settings = Settings.from_env()
    assert settings.batch_sizes == (5, 50)
    assert settings.task_weights == (99, 1)  # a share above 0 never rounds to no invalid bodies
    assert settings.proba == "0"
    assert settings.api_key == "k"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DIABETES_LOADTEST_BATCH_SIZES", "1,ten", "expected comma-separated numbers"),
        ("DIABETES_LOADTEST_BATCH_SIZES", "0", "whole numbers >= 1"),
        ("DIABETES_LOADTEST_INVALID_SHARE", "1", r"must be in \[0, 1\)"),
        ("DIABETES_LOADTEST_PROBA", "maybe", "expected one of auto, 1, 0"),
        ("DIABETES_LOADTEST_WAIT", "2,1", "0 <= MIN <= MAX"),
    ],
)
def test_a_bad_setting_is_named(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=message):
        Settings.from_env()


def test_the_repos_slo_file_loads():
    from diabetes_loadtest.launch import DEFAULT_SLO_FILE

    assert {slo.kind.name for slo in load_slos(DEFAULT_SLO_FILE)} == {"p95_ms", "p99_ms", "failure_ratio", "min_rps"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("p95_ms: [1]\n", "must be a finite number"),
        ("p95_ms: -1\n", "must not be negative"),
        ("- p95_ms\n", "expected a mapping"),
        ("p95_ms: 1\nspeed: 3\n", "unknown SLO 'speed'"),
        ("p95_ms: [\n", "not valid YAML"),
    ],
)
def test_a_bad_slo_file_is_named(tmp_path, text, message):
    path = tmp_path / "slo.yaml"
    path.write_text(text)
    with pytest.raises(SloError, match=message):
        load_slos(path)


def test_slos_are_judged_on_the_aggregated_row(tmp_path):
    stats = tmp_path / "stats.csv"
    stats.write_text(
        "Type,Name,Request Count,Failure Count,Requests/s,95%,99%\n"
        "POST,/score predict x1,100,0,9.0,300,400\n"
        ",Aggregated,200,3,20.5,120,N/A\n"
    )
    path = tmp_path / "slo.yaml"
    path.write_text("p95_ms: 120\np99_ms: 500\nfailure_ratio: 0.01\nmin_rps: 20\n")
    verdicts = {v.slo.kind.name: v for v in evaluate(load_slos(path), stats)}
    assert verdicts["p95_ms"].passed
    assert verdicts["p95_ms"].line() == "SLO p95_ms: target <= 120 ms, measured 120 ms: PASS"
    assert not verdicts["p99_ms"].passed  # nothing measured never passes
    assert verdicts["failure_ratio"].measured == 0.015
    assert verdicts["failure_ratio"].line() == "SLO failure_ratio: target <= 0.01, measured 0.015: FAIL"
    assert verdicts["min_rps"].passed


def test_the_key_falls_back_to_the_primary_of_the_services_own_keys(monkeypatch):
    # A Locust pod takes the service's Secret ("primary,secondary") and sends the primary.
    monkeypatch.delenv("DIABETES_API_KEY", raising=False)
    monkeypatch.setenv("DIABETES_API_KEYS", " primary-key ,secondary-key")
    assert Settings.from_env().api_key == "primary-key"
    monkeypatch.setenv("DIABETES_API_KEY", "own-key")
    assert Settings.from_env().api_key == "own-key"
    monkeypatch.delenv("DIABETES_API_KEY")
    monkeypatch.setenv("DIABETES_API_KEYS", "")
    assert Settings.from_env().api_key is None
