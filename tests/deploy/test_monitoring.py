"""Alerts and dashboard as code: promtool checks and unit-tests the rules, and every metric they name
is one a real service exports on /metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import requests
import yaml

from diabetes_deploy import monitoring
from tests.conftest import run_train
from tests.deploy.test_kubernetes import deploy_kubernetes
from tests.support.processes import REPO
from tests.trainer.helpers import store

SHIPPED = REPO / "service" / "monitoring"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian's prometheus) is not installed")
# PromQL's binary operators and modifiers: identifiers that are not series names.
KEYWORDS = {"or", "and", "unless", "bool", "offset"}
# Prometheus' own series, not the service's: the only one a dead target still has.
PROMETHEUS_OWN = {"up"}
# Series a service exports only once a safe rollout has scored: the rollout panel's, checked against
# a service running one.
ROLLOUT_ONLY = {f"{monitoring.VERSION_DURATION}_{part}" for part in ("bucket", "count", "sum")}


def test_shipped_files_are_what_the_code_generates() -> None:
    for name, text in monitoring.shipped_files().items():
        assert (SHIPPED / name).read_text() == text, f"regenerate: python -m diabetes_deploy.monitoring {SHIPPED}"


def test_latency_alerts_follow_the_load_test_slo() -> None:
    slo = yaml.safe_load((REPO / "loadtests" / "diabetes_loadtest" / "slo.yaml").read_text())
    rules = {r["alert"]: r for r in monitoring.alert_rules()["groups"][0]["rules"]}
    assert f'le="{slo["p99_ms"] / 1000:g}"' in rules["DiabetesScoringLatencyP99"]["expr"]
    assert f'le="{slo["p95_ms"] / 1000:g}"' in rules["DiabetesScoringLatencyP95"]["expr"]
    assert rules["DiabetesScoringErrorRatio"]["expr"].endswith(f"> {slo['failure_ratio']:g}")
    with pytest.raises(ValueError, match="not a latency bucket bound"):
        monitoring.alert_rules(monitoring.Slo(p99_ms=300))


@needs_promtool
def test_promtool_accepts_the_shipped_rules_and_the_prometheusrule(tmp_path: Path) -> None:
    checked = subprocess.run([PROMTOOL, "check", "rules", str(SHIPPED / "alerts.yaml")], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = monitoring.alert_rules()["groups"][0]["rules"]
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout
    assert deploy_kubernetes(tmp_path, keys="a,b").returncode == 0
    rule = yaml.safe_load((tmp_path / "monitoring" / "prometheusrule.yaml").read_text())
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(rule["spec"]))
    checked = subprocess.run([PROMTOOL, "check", "rules", str(spec_file)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    # promtool is not a rubber stamp: a broken expression fails it.
    rule["spec"]["groups"][0]["rules"][0]["expr"] = "sum by (job) (rate(x[5m])"
    spec_file.write_text(yaml.safe_dump(rule["spec"]))
    broken = subprocess.run([PROMTOOL, "check", "rules", str(spec_file)], capture_output=True, text=True)
    assert broken.returncode != 0


RULE_TESTS = Path(__file__).with_name("alert_rule_tests.yaml")


@needs_promtool
def test_alerts_fire_on_the_series_they_are_for(tmp_path: Path) -> None:
    """promtool's rule unit tests: each alert fires on a breach, with its labels and text, and not below it."""
    shutil.copy(SHIPPED / "alerts.yaml", tmp_path / "alerts.yaml")
    shutil.copy(RULE_TESTS, tmp_path / "tests.yaml")
    run = subprocess.run([PROMTOOL, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout + run.stderr


def exported(text: str) -> dict[str, set[tuple[str, str]]]:
    """Series name -> its label pairs, from the Prometheus text format."""
    series: dict[str, set[tuple[str, str]]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line).group(0)  # type: ignore[union-attr]
        labels = set(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"', line.split(" ")[0]))
        series.setdefault(name, set()).update(labels)
    return series


def named_metrics(expr: str) -> set[str]:
    """The series names in a PromQL expression: what is left once strings, label matchers, ranges,
    grouping clauses, function calls and keywords are taken out."""
    text = re.sub(r'"[^"]*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "{}", text)
    text = re.sub(r"\[[^\]]*\]", "[]", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set(re.findall(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(?!\s*\()", text)) - KEYWORDS
    assert names, expr
    return names


@pytest.fixture(scope="module")
def damaged_second_version(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An embedded store whose diabetes_model has version 1 (champion) and a version 2 whose files are
    damaged: a service following the alias refuses it, as a real bad release would be."""
    home = tmp_path_factory.mktemp("monitoring-store")
    run_train(home)
    damaged = str(run_train(home, "--alpha", "0.5")["model_version"])
    uri = f"sqlite:///{home / 'mlruns.db'}"
    with store(uri) as client:
        client.set_registered_model_alias("diabetes_model", "champion", "1")
        source = client.get_model_version("diabetes_model", damaged).source
        location = client.get_logged_model(source.removeprefix("models:/")).artifact_location
    for model_file in Path(location.removeprefix("file://")).glob("model.*"):
        model_file.write_bytes(b"not a model at all")
    return home, damaged


def scrape_until(url: str, wanted: str, timeout: float = 60) -> str:
    deadline, text = time.monotonic() + timeout, ""
    while wanted not in text:
        assert time.monotonic() < deadline, f"{wanted} never appeared on /metrics:\n{text}"
        time.sleep(0.2)
        try:
            text = requests.get(url + "/metrics", timeout=10).text
        except requests.ConnectionError:  # a connection a killed worker had taken
            continue
    return text


@pytest.mark.slow
def test_every_expression_names_metrics_a_real_service_exports(service, damaged_second_version, example_data) -> None:
    """Every series the rules and dashboard name, and every label value they pin, from a real service
    that has scored, answered its probes, refused a damaged new version and replaced a killed worker;
    the counters the alerts count on are there at 0 from start-up, before any of that."""
    home, damaged = damaged_second_version
    env = {"DIABETES_HOME": str(home), "DIABETES_TRACKING_URI": f"sqlite:///{home / 'mlruns.db'}"}
    args = ["--follow", "--follow-interval", "0.3"]
    with service("models:/diabetes_model@champion", env=env, workers=2, args=args) as svc:
        at_start = requests.get(svc.url + "/metrics", timeout=10).text
        for series in (
            *(f'diabetes_worker_restarts_total{{reason="{reason}"}} 0.0' for reason in ("exit", "signal", "heartbeat")),
            *(f'diabetes_model_swaps_total{{outcome="{outcome}"}} 0.0' for outcome in ("swapped", "refused")),
            'diabetes_http_requests_total{route="/score",status="500"} 0.0',
            'diabetes_http_request_duration_seconds_bucket{le="0.5",route="/score"} 0.0',
        ):
            assert f"\n{series}\n" in at_start, series
        for _ in range(3):
            answer = requests.post(svc.url + "/score", json={"data": example_data.x_test[:2]}, timeout=10)
            assert answer.status_code == 200
        assert requests.get(svc.url + "/health/ready", timeout=10).status_code == 200
        with store(env["DIABETES_TRACKING_URI"]) as client:
            client.set_registered_model_alias("diabetes_model", "champion", damaged)
        scrape_until(svc.url, 'diabetes_model_swaps_total{outcome="refused"} 1.0')
        psutil.Process(svc.proc.pid).children()[0].kill()
        text = scrape_until(svc.url, 'diabetes_worker_restarts_total{reason="signal"} 1.0')
    series = exported(text)
    checked = set()
    for expr in monitoring.expressions():
        for name in named_metrics(expr) - PROMETHEUS_OWN - ROLLOUT_ONLY:  # those: the test below
            assert name in series, f"{name} (in {expr!r}) is not on /metrics"
            checked.add(name)
        # Every label value the expression pins (le bounds, routes, outcomes) is one the service uses.
        for label, value in re.findall(r'([a-z_]+)="([^"$]*)"', expr):
            if label in {"route", "le", "outcome"}:
                assert any((label, value) in series[name] for name in named_metrics(expr) - PROMETHEUS_OWN), (
                    f'{label}="{value}" in {expr!r}'
                )
    assert {
        "diabetes_http_requests_total",
        "diabetes_http_request_duration_seconds_bucket",
        "diabetes_http_request_duration_seconds_count",
        "diabetes_predictions_total",
        "diabetes_model_calls_total",
        "diabetes_model_info",
        "diabetes_model_swaps_total",
        "diabetes_worker_restarts_total",
        "diabetes_workers_crash_looping",
    } <= checked


@pytest.mark.slow
def test_rollout_panel_names_metrics_a_service_in_a_rollout_exports(service, damaged_second_version) -> None:
    """The rollout panel's series, from a real service running a canary between two registered versions:
    both versions there, side by side."""
    home, _ = damaged_second_version
    challenger = str(run_train(home, "--alpha", "0.1")["model_version"])
    env = {"DIABETES_HOME": str(home), "DIABETES_TRACKING_URI": f"sqlite:///{home / 'mlruns.db'}"}
    args = ["--challenger", f"models:/diabetes_model/{challenger}", "--rollout", "canary", "--canary-percent", "50"]
    rows = [[0.01 * i] * 10 for i in range(40)]
    with service("models:/diabetes_model/1", env=env, workers=2, args=args) as svc:
        with requests.Session() as session:
            for row in rows:
                answer = session.post(svc.url + "/score", json={"data": [row]}, timeout=10)
                assert answer.status_code == 200, answer.text
        count = f"{monitoring.VERSION_DURATION}_count"
        text = scrape_until(svc.url, f'{count}{{version="{challenger}"}}')
        text = scrape_until(svc.url, f'{count}{{version="1"}}')
    series = exported(text)
    rollout = [expr for expr in monitoring.expressions() if named_metrics(expr) & ROLLOUT_ONLY]
    assert len(rollout) >= 2  # the panel's calls/s and p99
    for expr in rollout:
        for name in named_metrics(expr) - PROMETHEUS_OWN:
            assert name in series, f"{name} (in {expr!r}) is not on /metrics during a rollout"
    assert {("version", "1"), ("version", challenger)} <= series[count]


def test_kubernetes_output_has_the_monitoring_manifests(tmp_path: Path) -> None:
    secrets = tmp_path.parent / f"{tmp_path.name}-keys.yaml"
    proc = deploy_kubernetes(tmp_path, "--secret-out", str(secrets), keys="k-primary,k-secondary")
    assert proc.returncode == 0, proc.stderr
    folder = tmp_path / "monitoring"
    docs = {p.name: yaml.safe_load(p.read_text()) for p in folder.glob("*.yaml")}
    assert sorted(docs["kustomization.yaml"]["resources"]) == sorted(set(docs) - {"kustomization.yaml"})
    monitor = docs["podmonitor.yaml"]
    assert monitor["kind"] == "PodMonitor"
    deployment = yaml.safe_load((tmp_path / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]
    assert monitor["spec"]["selector"]["matchLabels"] == pod["metadata"]["labels"]
    assert pod["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "diabetes-service"  # the rules' job
    # The pods' metrics port (--metrics-port's default), scraped with no credential; no Service carries it.
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    assert set(endpoint) == {"port", "path", "interval"}
    ports = pod["spec"]["containers"][0]["ports"]
    assert {"name": "metrics", "containerPort": 8082, "protocol": "TCP"} in ports
    service = yaml.safe_load((tmp_path / "service.yaml").read_text())
    assert "metrics" not in {port["targetPort"] for port in service["spec"]["ports"]}
    # No monitoring manifest holds a credential or names the keys' Secret.
    for path in folder.glob("*.yaml"):
        text = path.read_text()
        assert "k-primary" not in text
        assert "diabetes-service-keys" not in text
        assert "authorization" not in text.lower()
    secret = yaml.safe_load(secrets.read_text())
    assert secret["metadata"]["name"] == "diabetes-service-keys"
    assert "scrape-key" not in secret["stringData"]  # the metrics port needs no key
    rule = docs["prometheusrule.yaml"]
    assert rule["kind"] == "PrometheusRule"
    exprs = [r["expr"] for r in rule["spec"]["groups"][0]["rules"]]
    assert 'up{job="diabetes-service"} == 0' in exprs
    board = json.loads(docs["dashboard-configmap.yaml"]["data"]["diabetes-scoring.json"])
    assert board == monitoring.dashboard()
    assert docs["dashboard-configmap.yaml"]["metadata"]["labels"]["grafana_dashboard"] == "1"
    # The pods still carry the scrape annotations for annotation-driven Prometheus setups, on that port.
    annotations = pod["metadata"]["annotations"]
    assert (annotations["prometheus.io/port"], annotations["prometheus.io/path"]) == ("8082", "/metrics")
