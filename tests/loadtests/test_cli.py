"""`diabetes loadtest` against the real service: reports written, the SLO gate, workers, saturation."""

from __future__ import annotations

import json

import pytest

from tests.loadtests.conftest import PRIMARY
from tests.loadtests.helpers import diabetes_loadtest, slo_file, stats_rows
from tests.support.processes import free_port

pytestmark = pytest.mark.slow


def test_a_run_within_its_slos_writes_the_reports_and_passes_the_gate(classifier_service, tmp_path):
    slos = slo_file(tmp_path / "slo.yaml", p95_ms=2000, p99_ms=5000, failure_ratio=0, min_rps=1)
    out = tmp_path / "report"
    result = diabetes_loadtest(
        "--host", classifier_service.url, "--key", PRIMARY, "--users", "4", "--spawn-rate", "4",
        "--run-time", "10s", "--slo", str(slos), "--output-dir", str(out), "--invalid-share", "0.2",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert (out / "report.html").read_text().lstrip().lower().startswith("<!doctype html")
    rows = stats_rows(out / "locust_stats.csv")
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    assert any(name.startswith("/score predict_proba") for name in rows)
    assert any(name.startswith("/score [invalid]") for name in rows)
    lines = result.stdout.splitlines()
    slo_lines = [line for line in lines if line.startswith("SLO ")]
    assert [line.split(":")[0] for line in slo_lines] == [
        "SLO p95_ms", "SLO p99_ms", "SLO failure_ratio", "SLO min_rps",
    ]  # fmt: skip
    assert all(line.endswith(": PASS") for line in slo_lines)
    assert "measured 0: PASS" in slo_lines[2]
    assert "checks: target 0 wrong answers, measured 0: PASS" in lines
    assert lines[-1] == "loadtest: all 4 SLOs met, no wrong answer"
    # Before the load: what the service said about keys; during it: progress, counts once flushed.
    assert lines[0] == "keys: the service checks API keys; the given key is accepted"
    progress = [line for line in lines if line.startswith("loadtest: ") and " s of 10 s" in line]
    assert len(progress) >= 1, result.stdout
    assert any(" requests, " in line for line in progress), result.stdout
    assert PRIMARY not in result.stdout + result.stderr + (out / "locust.log").read_text()


def test_an_slo_out_of_reach_fails_the_gate_with_one_line_per_slo(regressor_service, tmp_path):
    slos = slo_file(tmp_path / "slo.yaml", p95_ms=2000, min_rps=1_000_000)
    out = tmp_path / "report"
    result = diabetes_loadtest(
        "--host", regressor_service.url, "--key", PRIMARY, "--users", "2", "--run-time", "5s",
        "--slo", str(slos), "--output-dir", str(out),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("SLO p95_ms: target <= 2000 ms, measured") and line.endswith("PASS") for line in lines)
    assert any(
        line.startswith("SLO min_rps: target >= 1e+06 req/s, measured") and line.endswith("FAIL") for line in lines
    )
    assert result.stderr.strip() == "diabetes loadtest: 1 of 2 SLOs missed: min_rps"
    assert (out / "locust_stats.csv").is_file()


def test_a_bad_slo_file_is_one_line_and_no_run(tmp_path):
    slos = slo_file(tmp_path / "slo.yaml", p95_ms=100, p42_ms=3)
    result = diabetes_loadtest("--slo", str(slos), "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "unknown SLO 'p42_ms'" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--batch-sizes", "1,ten"), "DIABETES_LOADTEST_BATCH_SIZES='1,ten': expected comma-separated numbers"),
        (("--run-time", "soon"), "--run-time: 'soon' is not a duration such as 30s, 2m or 1h30m"),
        (("--host", "127.0.0.1:8080"), "--host must be an http:// or https:// URL"),
    ],
)
def test_a_bad_option_is_one_line_before_anything_starts(tmp_path, args, message):
    result = diabetes_loadtest(*args, "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert message in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_master_and_two_workers_share_the_load(regressor_service, tmp_path):
    out = tmp_path / "report"
    slos = slo_file(tmp_path / "slo.yaml", failure_ratio=0)
    result = diabetes_loadtest(
        "--host", regressor_service.url, "--key", PRIMARY, "--users", "6", "--spawn-rate", "6",
        "--run-time", "12s", "--workers", "2", "--slo", str(slos), "--output-dir", str(out),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    per_worker = json.loads((out / "workers.json").read_text())
    assert len(per_worker) == 2
    assert all(count > 0 for count in per_worker.values())
    total = int(stats_rows(out / "locust_stats.csv")["Aggregated"]["Request Count"])
    # The master's statistics are the workers' requests, all of them (the last report included).
    assert sum(per_worker.values()) == total
    assert "workers: 2 reported" in result.stdout
    master_log = (out / "locust.log").read_text()
    assert "2 workers connected" in master_log
    assert master_log.count("quit. ") == 2  # both workers ended with their master


def test_the_saturation_finder_steps_up_and_prints_the_highest_rate_held(regressor_service, tmp_path):
    slos = slo_file(tmp_path / "slo.yaml", p95_ms=2000, failure_ratio=0.01)
    result = diabetes_loadtest(
        "--host", regressor_service.url, "--key", PRIMARY, "--find-saturation", "--step-users", "2",
        "--step-time", "4s", "--max-users", "6", "--slo", str(slos), "--output-dir", str(tmp_path / "out"),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    steps = [line for line in result.stdout.splitlines() if line.startswith("step: ")]
    assert [line.split(",")[0] for line in steps] == ["step: 2 users", "step: 4 users", "step: 6 users"]
    summary = json.loads((tmp_path / "out" / "saturation.json").read_text())
    best = summary["best"]
    assert best["rps"] == max(step["rps"] for step in summary["steps"])
    assert f"saturation: highest throughput within p95 <= 2000 ms: {best['rps']:.1f} req/s" in result.stdout


def test_the_saturation_finder_stops_at_the_first_step_that_breaks_the_slo(regressor_service, tmp_path):
    # predict_proba forced on the regressor: a quarter of the answers are 4xx, so no step holds the SLO.
    slos = slo_file(tmp_path / "slo.yaml", p95_ms=2000, failure_ratio=0.01)
    result = diabetes_loadtest(
        "--host", regressor_service.url, "--key", PRIMARY, "--find-saturation", "--step-time", "3s",
        "--max-users", "20", "--slo", str(slos), "--output-dir", str(tmp_path / "out"), "--proba", "on",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert len([line for line in result.stdout.splitlines() if line.startswith("step: ")]) == 1
    assert "saturation: no step held p95 <= 2000 ms" in result.stdout
    assert result.stderr.strip() == "diabetes loadtest: no step held p95 <= 2000 ms"


def test_wrong_answers_fail_the_gate_whatever_the_failure_ratio(regressor_service, tmp_path):
    # predict_proba forced on the regressor: every such answer is a 4xx where a list was due. The
    # SLOs allow any failure ratio; the checks still fail the run.
    slos = slo_file(tmp_path / "slo.yaml", p95_ms=2000, failure_ratio=1)
    result = diabetes_loadtest(
        "--host", regressor_service.url, "--key", PRIMARY, "--users", "2", "--spawn-rate", "2",
        "--run-time", "5s", "--proba", "on", "--slo", str(slos), "--output-dir", str(tmp_path / "out"),
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert all(line.endswith("PASS") for line in lines if line.startswith("SLO "))
    checks = next(line for line in lines if line.startswith("checks: "))
    assert checks.endswith(": FAIL")
    assert "/score predict_proba" in checks
    assert "expected 200, got 4" in checks
    assert result.stderr.startswith("diabetes loadtest: ")
    assert "wrong answers (/score predict_proba" in result.stderr
    assert result.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (None, "requires an API key (it answered 401 without one): pass --key or set DIABETES_API_KEY"),
        ("not-the-key", "refused the given key: check --key or DIABETES_API_KEY"),
    ],
)
def test_a_key_that_cannot_match_the_service_stops_before_the_load(regressor_service, tmp_path, key, message):
    args = ("--key", key) if key else ()
    result = diabetes_loadtest(
        "--host", regressor_service.url, *args, "--output-dir", str(tmp_path / "out"), cwd=tmp_path
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert message in result.stderr
    assert "not-the-key" not in result.stderr
    assert not (tmp_path / "out").exists()  # nothing started


def test_a_key_given_to_a_service_without_keys_stops_before_the_load(service, example_model_pkl, tmp_path):
    with service(str(example_model_pkl)) as svc:
        result = diabetes_loadtest(
            "--host", svc.url, "--key", "some-key", "--output-dir", str(tmp_path / "out"), cwd=tmp_path
        )
    assert result.returncode == 1
    assert "checks no API key, but a key was given" in result.stderr
    assert "Leave out --key and DIABETES_API_KEY" in result.stderr
    assert not (tmp_path / "out").exists()


def test_a_host_that_does_not_answer_stops_before_the_load(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    result = diabetes_loadtest("--host", url, "--output-dir", str(tmp_path / "out"), cwd=tmp_path)
    assert result.returncode == 1
    assert f"no answer from {url}/score" in result.stderr
    assert "is the service running?" in result.stderr
    assert not (tmp_path / "out").exists()
