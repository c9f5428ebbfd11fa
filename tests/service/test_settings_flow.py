"""Every setting the spec decides reaches every worker: `diabetes serve --spec` with non-default values.

The workers used to rebuild their settings from the environment, so the spec's name, scoring
timeout and concurrency limit never reached them.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psutil
import requests

from tests.support.processes import DIABETES, free_port, start, stop, wait_http

KEYS = "flow-primary,flow-secondary"
HEADERS = {"Authorization": "Bearer flow-secondary"}


def write_spec(path: Path, model: str) -> Path:
    path.write_text(
        "name: my-named-svc\n"
        f"model: {model}\n"
        "resources: {cpu_cores: 1, memory_gb: 0.5, limits: {cpu_cores: 2, memory_gb: 1}}\n"
        "scale: {replicas: 2}\n"
        "auth: {enabled: true}\n"
        "scoring_timeout_seconds: 0.4\n"
        "max_concurrent_requests: 2\n"
        "probes: {pre_stop_seconds: 3, termination_grace_period_seconds: 20}\n"
    )
    return path


def test_the_specs_settings_reach_every_worker(service, slow_models, repo_on_path, example_data, tmp_path):
    spec = write_spec(tmp_path / "spec.yaml", "{name: diabetes_model, version: 1}")
    env = {**repo_on_path, "DIABETES_API_KEYS": KEYS}
    # The flag's model (each prediction takes 1 s) over the spec's; everything else from the spec.
    svc = service(str(slow_models["predict"]), env=env, args=["--spec", str(spec)]).start()
    # --workers from the test harness wins over the spec's CPU limit: 1 here.
    assert len(psutil.Process(svc.proc.pid).children()) == 1
    title = requests.get(svc.url + "/swagger.json", timeout=5).json()["info"]["title"]
    assert title == "my-named-svc"
    assert requests.post(svc.url + "/score", json={"data": example_data.x_test[:1]}, timeout=5).status_code == 401

    # The spec's 0.4 s scoring timeout: each 1 s prediction is a 408.
    answers: list[int] = []

    def call() -> None:
        body = {"data": example_data.x_test[:1]}
        answers.append(requests.post(svc.url + "/score", json=body, headers=HEADERS, timeout=10).status_code)

    # The spec's two requests in flight at most: a third at once is a retryable 503.
    threads = [threading.Thread(target=call) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(answers) == [408, 408, 503], answers
    settings_line = settings_summary(svc.output())
    for expected in (
        "service_name=my-named-svc",
        "scoring_timeout_seconds=0.4",
        "max_concurrent_requests=2",
        "graceful_timeout_seconds=17.0",
        "api_keys=2",
    ):
        assert expected in settings_line.split(), settings_line
    assert "flow-primary" not in svc.output()


def test_the_specs_model_and_cpu_limit_decide_when_no_flag_does(embedded_store, tmp_path, example_data):
    spec = write_spec(tmp_path / "spec.yaml", "{name: diabetes_model, version: 1}")
    port = free_port()
    env = {**embedded_store.env, "DIABETES_API_KEYS": KEYS}
    proc = start([DIABETES, "serve", "--spec", str(spec), "--port", str(port)], env=env)
    try:
        wait_http(f"http://127.0.0.1:{port}/health/ready", timeout=90, proc=proc)
        # The spec's CPU limit: 2 workers. A first start may also run the preparation child for a while
        # (it verifies the served arrays in the background), so count once it has gone.
        deadline = time.monotonic() + 120
        while len(psutil.Process(proc.pid).children()) != 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(psutil.Process(proc.pid).children()) == 2
        body = {"data": example_data.x_test[:2]}
        answer = requests.post(f"http://127.0.0.1:{port}/score", json=body, headers=HEADERS, timeout=5)
        assert answer.status_code == 200
        assert answer.headers["x-model-name"] == "diabetes_model"
        assert answer.headers["x-model-version"] == "1"
        assert [round(v, 3) for v in answer.json()] == [235.112, 246.799]
    finally:
        stop(proc)


def settings_summary(output: str) -> str:
    """The start-up `settings:` summary, wrapped to the screen's width (continuation lines indented)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("settings: "))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("  ")), len(lines))
    return " ".join(lines[start:end])
