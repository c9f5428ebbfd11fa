"""`--metrics-port`: /metrics on a port of its own with no key, and not on the scoring port (issue 27)."""

from __future__ import annotations

import socket
import subprocess
import time

import psutil
import requests

from tests.support.processes import DIABETES, free_port

KEYS = "metrics-primary,metrics-secondary"
HEADERS = {"Authorization": "Bearer metrics-primary"}


def scored_count(text: str) -> float:
    """diabetes_http_requests_total for /score 200, 0 while there is none yet."""
    for line in text.splitlines():
        if line.startswith('diabetes_http_requests_total{route="/score",status="200"}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_on_their_own_port_with_no_key(service, example_model_pkl, example_data) -> None:
    port = free_port()
    svc = service(
        str(example_model_pkl), workers=2, env={"DIABETES_API_KEYS": KEYS}, args=["--metrics-port", str(port)]
    ).start()
    metrics_url = f"http://127.0.0.1:{port}/metrics"
    # Not on the scoring port, with or without the key.
    assert requests.get(svc.url + "/metrics", headers=HEADERS, timeout=5).status_code == 404
    assert requests.get(svc.url + "/metrics", timeout=5).status_code == 404
    for _ in range(3):
        body = {"data": example_data.x_test[:1]}
        assert requests.post(svc.url + "/score", json=body, headers=HEADERS, timeout=5).status_code == 200
    # On its own port with no key: every worker's counts, added up by the supervisor.
    deadline = time.monotonic() + 5
    while True:
        answer = requests.get(metrics_url, timeout=5)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        if scored_count(answer.text) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert scored_count(answer.text) == 3
    assert "diabetes_worker_restarts_total" in answer.text or "diabetes_workers_crash_looping" in answer.text
    assert "metrics-primary" not in answer.text
    # That port answers /metrics only.
    assert requests.get(f"http://127.0.0.1:{port}/score", timeout=5).status_code == 404
    assert requests.post(metrics_url, data=b"x", timeout=5).status_code == 405
    assert requests.head(metrics_url, timeout=5).status_code == 200
    # A client that connects and says nothing holds no other scrape.
    with socket.create_connection(("127.0.0.1", port)):
        assert requests.get(metrics_url, timeout=5).status_code == 200
    # Only the supervisor listens on it: a worker that outlives it never holds the port.
    supervisor = psutil.Process(svc.proc.pid)
    workers = supervisor.children()
    assert len(workers) == 2
    assert port in {c.laddr.port for c in supervisor.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
    for worker in workers:
        assert port not in {c.laddr.port for c in worker.net_connections("tcp")}
    assert f"/metrics on port {port}" in svc.output()


def test_a_metrics_port_in_use_fails_the_start_naming_it(example_model_pkl) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        scoring = free_port()
        done = subprocess.run(
            [
                DIABETES,
                "serve",
                "--model-uri",
                str(example_model_pkl),
                "--port",
                str(scoring),
                "--metrics-port",
                str(busy),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert done.stderr.strip().startswith(f"diabetes serve: cannot listen on 127.0.0.1:{scoring} or {busy}:")
