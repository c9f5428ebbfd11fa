"""Alerts and a dashboard as code: Prometheus alerting rules and a Grafana dashboard over /metrics.

Both are built here from the service's metric names and latency buckets (through
`diabetes_service.deploy_api`) and the load-test SLOs (`diabetes_loadtest`'s slo.yaml, package data),
shipped in the repository under service/monitoring/ (regenerate with `python -m diabetes_deploy.monitoring
service/monitoring`; a test keeps them in step), and written by `diabetes deploy kubernetes` as a
PrometheusRule, a PodMonitor and the dashboard's ConfigMap for the Prometheus operator and
Grafana's dashboard sidecar.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

# The histogram's bucket bounds: the only latencies the alerts can count against.
from diabetes_service.deploy_api import LATENCY_BUCKETS

# The SLOs the load test gates on; alerts hold production to the same numbers. Package data of the
# same distribution, so an install outside a checkout reads the same file.
SLO_FILE = files("diabetes_loadtest") / "slo.yaml"

REQUESTS = "diabetes_http_requests_total"
DURATION = "diabetes_http_request_duration_seconds"
# Failed for the caller: server errors, and 408 (the scoring timeout). Other 4xx are the caller's.
FAILED = 'status=~"5..|408"'


@dataclass(frozen=True)
class Slo:
    p95_ms: float = 250
    p99_ms: float = 500
    failure_ratio: float = 0.01


def load_slo(path: Path | Traversable = SLO_FILE) -> Slo:
    import yaml

    data = yaml.safe_load(path.read_text()) or {}
    fields = {k: float(data[k]) for k in ("p95_ms", "p99_ms", "failure_ratio") if k in data}
    return Slo(**fields)


def _bound(ms: float) -> str:
    seconds = ms / 1000
    if seconds not in LATENCY_BUCKETS:
        raise ValueError(f"{ms:g} ms is not a latency bucket bound: the alert could not count against it")
    return f"{seconds:g}"


def _within(quantile: float, ms: float) -> str:
    """The share of scoring requests answered within `ms`, from the histogram's buckets."""
    return (
        f'sum by (job) (rate({DURATION}_bucket{{route="/score",le="{_bound(ms)}"}}[5m]))\n'
        f'/ sum by (job) (rate({DURATION}_count{{route="/score"}}[5m])) < {quantile}'
    )


# Which scrape jobs are this service's: Prometheus' own `up` is the only series a dead target leaves.
# The PodMonitor's job is the pods' name label, the service's name; the shipped file matches any job naming the service.
DEFAULT_JOB_MATCHER = 'job=~".*diabetes.*"'


def alert_rules(slo: Slo | None = None, job_matcher: str = DEFAULT_JOB_MATCHER) -> dict[str, Any]:
    """A Prometheus rule file (`promtool check rules` reads it; a PrometheusRule's spec is the same)."""
    slo = slo or load_slo()
    failure_percent = f"{slo.failure_ratio * 100:g}%"
    rules = [
        {
            "alert": "DiabetesScoringErrorRatio",
            "expr": (
                f"sum by (job) (rate({REQUESTS}{{{FAILED}}}[5m]))\n"
                f"/ sum by (job) (rate({REQUESTS}[5m])) > {slo.failure_ratio:g}"
            ),
            "for": "5m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": f"More than {failure_percent} of requests fail (5xx or 408)",
                "description": "{{ $value | humanizePercentage }} of {{ $labels.job }}'s requests failed "
                "over 5 minutes. The access log's request ids name them.",
            },
        },
        {
            "alert": "DiabetesScoringLatencyP99",
            "expr": _within(0.99, slo.p99_ms),
            "for": "10m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": f"p99 scoring latency over the {slo.p99_ms:g} ms SLO",
                "description": "Only {{ $value | humanizePercentage }} of {{ $labels.job }}'s /score requests "
                f"were answered within {slo.p99_ms:g} ms (SLO: 99%).",
            },
        },
        {
            "alert": "DiabetesScoringLatencyP95",
            "expr": _within(0.95, slo.p95_ms),
            "for": "10m",
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": f"p95 scoring latency over the {slo.p95_ms:g} ms SLO",
                "description": "Only {{ $value | humanizePercentage }} of {{ $labels.job }}'s /score requests "
                f"were answered within {slo.p95_ms:g} ms (SLO: 95%).",
            },
        },
        {
            # The kubelet's readiness probe is counted like any request: a replica whose probe has
            # had only 503s for ten minutes never became ready (or never finished draining).
            "alert": "DiabetesReplicaNotReady",
            "expr": (
                f'sum by (job, instance) (increase({REQUESTS}{{route="/health/ready",status="503"}}[10m])) > 0\n'
                f'unless on (job, instance) sum by (job, instance) (increase({REQUESTS}{{route="/health/ready",'
                f'status="200"}}[10m])) > 0'
            ),
            "for": "5m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "A replica has not been ready for 15 minutes",
                "description": "{{ $labels.instance }} answers its readiness probe 503 only: the model is "
                "still loading or failed to (see the pod's log).",
            },
        },
        {
            "alert": "DiabetesScrapeDown",
            "expr": f"up{{{job_matcher}}} == 0",
            "for": "5m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "A replica's /metrics cannot be scraped",
                "description": "Prometheus cannot scrape {{ $labels.instance }}: the process is down or its "
                "metrics port cannot be reached.",
            },
        },
        {
            # The supervisor backs off a slot whose workers failed several times in a row.
            "alert": "DiabetesWorkerRestartLoop",
            "expr": (
                "max by (job, instance) (diabetes_workers_crash_looping) > 0\n"
                "or sum by (job, instance) (increase(diabetes_worker_restarts_total[15m])) > 3"
            ),
            "for": "5m",
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "Workers keep restarting",
                "description": "{{ $labels.instance }}'s workers keep being replaced (crash-looping slots, or "
                "more than 3 restarts in 15 minutes): see the supervisor's log and the reason label of "
                "diabetes_worker_restarts_total.",
            },
        },
        {
            # A new version the supervisor prepared and refused (damaged, failed its warm-up, another
            # schema): the old one keeps serving, but the registry's alias and the service disagree.
            "alert": "DiabetesModelSwapRefused",
            "expr": 'sum by (job, instance) (increase(diabetes_model_swaps_total{outcome="refused"}[15m])) > 0',
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "A new model version was refused",
                "description": "{{ $labels.instance }} refused a new version of its model and keeps serving the "
                "old one: see the supervisor's log for why.",
            },
        },
        {
            # Payload logging (--log-payloads) failed to write, or its queue was full: those records are
            # gone; the requests themselves were answered.
            "alert": "DiabetesPayloadRecordsDropped",
            "expr": 'sum by (job, instance) (increase(diabetes_payload_records_total{outcome="dropped"}[10m])) > 0',
            "labels": {"severity": "ticket"},
            "annotations": {
                "summary": "Payload records are being dropped",
                "description": "{{ $labels.instance }} dropped {{ $value | humanize }} payload records in 10 minutes: "
                "its payload folder cannot be written (see the log line that says why) or the writer falls behind.",
            },
        },
    ]
    return {"groups": [{"name": "diabetes-scoring", "rules": rules}]}


def _panel(panel_id: int, title: str, targets: list[tuple[str, str]], unit: str, x: int, y: int) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": "timeseries",
        "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}, "tooltip": {"mode": "multi"}},
        "targets": [
            {"refId": chr(ord("A") + i), "expr": expr, "legendFormat": legend}
            for i, (expr, legend) in enumerate(targets)
        ],
    }


# Scoring calls during a safe rollout (--challenger), by the model version that computed each answer.
VERSION_DURATION = "diabetes_model_version_duration_seconds"


def _rollout_panel(job: str) -> dict[str, Any]:
    """The champion and the challenger side by side: calls/s and p99 in the model, one series per
    version (the champion's is diabetes_model_info's). Empty without a rollout: the series only exist
    once a rollout has scored (a canary's share, the champion's answers during a shadow)."""
    panel = _panel(
        8,
        "Rollout: calls and p99 by model version (champion and challenger side by side)",
        [
            (f"sum by (version) (rate({VERSION_DURATION}_count{job}[$__rate_interval]))", "v{{version}} calls/s"),
            (
                f"histogram_quantile(0.99, sum by (version, le) (rate({VERSION_DURATION}_bucket{job}"
                "[$__rate_interval])))",
                "v{{version}} p99",
            ),
        ],
        "reqps",
        12,
        24,
    )
    panel["fieldConfig"]["overrides"] = [
        {
            "matcher": {"id": "byFrameRefID", "options": "B"},
            "properties": [{"id": "unit", "value": "s"}, {"id": "custom.axisPlacement", "value": "right"}],
        }
    ]
    return panel


def dashboard() -> dict[str, Any]:
    """A Grafana dashboard (schema 39) over the service's metrics, for one scrape job at a time."""
    job = '{job=~"$job"}'
    score = 'route="/score",job=~"$job"'
    panels = [
        _panel(
            1,
            "Requests by route and status",
            [(f"sum by (route, status) (rate({REQUESTS}{job}[$__rate_interval]))", "{{route}} {{status}}")],
            "reqps",
            0,
            0,
        ),
        _panel(
            2,
            "Failed requests (5xx and 408)",
            [
                (
                    f'sum(rate({REQUESTS}{{{FAILED},job=~"$job"}}[$__rate_interval])) '
                    f"/ sum(rate({REQUESTS}{job}[$__rate_interval]))",
                    "failed share",
                )
            ],
            "percentunit",
            12,
            0,
        ),
        _panel(
            3,
            "Scoring latency (/score)",
            [
                (
                    f"histogram_quantile({q}, sum by (le) (rate({DURATION}_bucket{{{score}}}[$__rate_interval])))",
                    f"p{round(q * 100)}",
                )
                for q in (0.5, 0.99)
            ],
            "s",
            0,
            8,
        ),
        _panel(
            4,
            "Rows scored by method",
            [
                ("sum by (method) (rate(diabetes_predictions_total" + job + "[$__rate_interval]))", "{{method}}"),
                ("sum by (method) (rate(diabetes_model_calls_total" + job + "[$__rate_interval]))", "calls {{method}}"),
            ],
            "short",
            12,
            8,
        ),
        _panel(
            5,
            "Served model version (a swap shows as one series ending, another starting) and swaps",
            [
                ("count by (name, version) (diabetes_model_info" + job + ")", "{{name}} v{{version}} (replicas)"),
                (
                    "sum by (outcome) (increase(diabetes_model_swaps_total" + job + "[$__rate_interval]))",
                    "swaps: {{outcome}}",
                ),
            ],
            "short",
            0,
            16,
        ),
        _panel(
            6,
            "Worker restarts (by why the old worker ended) and crash-looping slots",
            [
                (
                    "sum by (reason) (increase(diabetes_worker_restarts_total" + job + "[$__rate_interval]))",
                    "restarts: {{reason}}",
                ),
                ("sum(diabetes_workers_crash_looping" + job + ")", "crash-looping slots"),
            ],
            "short",
            12,
            16,
        ),
        _panel(
            7,
            "Payload records (--log-payloads) by outcome",
            [
                (
                    "sum by (outcome) (rate(diabetes_payload_records_total" + job + "[$__rate_interval]))",
                    "{{outcome}}",
                )
            ],
            "short",
            0,
            24,
        ),
        _rollout_panel(job),
    ]
    return {
        "uid": "diabetes-scoring",
        "title": "Diabetes scoring service",
        "tags": ["diabetes-scoring"],
        "schemaVersion": 39,
        "editable": True,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
                {
                    "name": "job",
                    "type": "query",
                    "label": "Job",
                    "datasource": {"type": "prometheus", "uid": "${datasource}"},
                    "query": {"query": "label_values(diabetes_model_info, job)", "refId": "job"},
                    "definition": "label_values(diabetes_model_info, job)",
                    "includeAll": True,
                    "multi": True,
                    "refresh": 2,
                },
            ]
        },
        "panels": panels,
    }


def expressions(rules: dict[str, Any] | None = None, board: dict[str, Any] | None = None) -> list[str]:
    """Every PromQL expression in the rules and the dashboard (what the tests check against /metrics)."""
    rules = rules or alert_rules()
    board = board or dashboard()
    found = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    found += [target["expr"] for panel in board["panels"] for target in panel["targets"]]
    return found


def render_rules(rules: dict[str, Any] | None = None) -> str:
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        # Multi-line expressions as YAML blocks, readable as PromQL in the file.
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(rules or alert_rules(), Dumper=Dumper, sort_keys=False, width=120)


def render_dashboard(board: dict[str, Any] | None = None) -> str:
    return json.dumps(board or dashboard(), indent=2) + "\n"


def shipped_files() -> dict[str, str]:
    """File name -> text of what the repository ships under service/monitoring/."""
    return {"alerts.yaml": render_rules(), "dashboard.json": render_dashboard()}


def kubernetes_manifests(spec: Any, labels: dict[str, str], metrics_port: str = "metrics") -> dict[str, dict[str, Any]]:
    """For the Prometheus operator and Grafana's sidecar: file name -> manifest, with their kustomization.

    A PodMonitor scrapes each pod's `metrics_port` (the container port's name) directly: /metrics
    has a port of its own with no key (`--metrics-port`), which no Service carries, so nothing here
    holds a credential and a LoadBalancer Service never exposes the metrics.
    """
    endpoint: dict[str, Any] = {"port": metrics_port, "path": "/metrics", "interval": "30s"}
    files: dict[str, dict[str, Any]] = {
        "podmonitor.yaml": {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PodMonitor",
            "metadata": {"name": spec.name, "labels": dict(labels)},
            # The job label is the pods' name label, the service's name, which the rules' `up` matcher names.
            "spec": {
                "jobLabel": "app.kubernetes.io/name",
                "selector": {"matchLabels": dict(labels)},
                "podMetricsEndpoints": [endpoint],
            },
        },
        "prometheusrule.yaml": {
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": {"name": spec.name, "labels": dict(labels)},
            "spec": alert_rules(job_matcher=f'job="{spec.name}"'),
        },
        "dashboard-configmap.yaml": {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            # Grafana's dashboard sidecar loads every ConfigMap with this label.
            "metadata": {"name": f"{spec.name}-dashboard", "labels": {**labels, "grafana_dashboard": "1"}},
            "data": {"diabetes-scoring.json": render_dashboard()},
        },
    }
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": list(files),
    }
    return {**files, "kustomization.yaml": kustomization}


def main(argv: list[str]) -> int:
    out = Path(argv[0] if argv else "service/monitoring")
    out.mkdir(parents=True, exist_ok=True)
    for name, text in shipped_files().items():
        (out / name).write_text(text)
        print(out / name)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
