"""Start-up, readiness, failures that stop the service, and draining on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import requests

from diabetes_service.scoring.state import LOADING_WAIT_SECONDS
from tests.support.processes import DIABETES, free_port, start, stop, wait_http


def test_readiness_is_503_until_the_model_is_loaded_and_warm(service, slow_models, repo_on_path, example_data):
    svc = service(str(slow_models["brief-load"]), env=repo_on_path)
    svc.proc = start(
        [DIABETES, "serve", "--model-uri", svc.model_uri, "--port", str(svc.port), "--workers", "1"],
        env=svc.env,
        log=svc.log,
    )
    wait_http(svc.url + "/", timeout=60, proc=svc.proc)  # live at once (60: a loaded machine's start-up)
    ready = requests.get(svc.url + "/health/ready", timeout=5)
    assert ready.status_code == 503
    assert ready.headers["retry-after"] == "1"
    # A scoring call that arrives while the model loads waits for it rather than failing. The wait is
    # bounded (LOADING_WAIT_SECONDS, 10 s): on a loaded machine (the suite on every core, other suites
    # beside it) the loading can outlast it, and the call then hears the retryable 503 only after
    # waiting its full 10 s; a client retries it, as this one does.
    for _ in range(6):
        sent = time.monotonic()
        early = requests.post(svc.url + "/score", json={"data": example_data.x_test[:2]}, timeout=30)
        if early.status_code != 503:
            break
        assert time.monotonic() - sent >= LOADING_WAIT_SECONDS - 0.5, "a 503 before the loading wait was over"
        assert "retry" in early.text, early.text
    assert early.status_code == 200
    assert [round(v, 3) for v in early.json()] == [235.112, 246.799]
    wait_http(svc.url + "/health/ready", timeout=60, proc=svc.proc)
    answer = requests.post(svc.url + "/score", json={"data": example_data.x_test[:2]}, timeout=30)
    assert [round(v, 3) for v in answer.json()] == [235.112, 246.799]


def test_sigterm_with_requests_in_flight_loses_none(service, slow_models, repo_on_path, example_data):
    svc = service(str(slow_models["predict"]), env=repo_on_path, workers=2).start()
    results: list[int] = []

    def call() -> None:
        answer = requests.post(svc.url + "/score", json={"data": example_data.x_test[:1]}, timeout=30)
        results.append(answer.status_code)

    threads = [threading.Thread(target=call) for _ in range(6)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)  # every request sent and accepted, all still inside their 1 s prediction
    os.killpg(svc.proc.pid, signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=30)
    assert results == [200] * 6
    assert svc.proc.wait(timeout=30) == 0
    assert "draining" in svc.output()


def test_readiness_turns_503_while_draining(example_model_pkl):
    """The ASGI app itself, driven in-process: once draining, readiness answers 503 at once."""
    import asyncio

    from diabetes_service.settings import ServiceSettings
    from diabetes_service.transport.app import ScoringApp

    app = ScoringApp(ServiceSettings(model_path=str(example_model_pkl), access_log=False))
    app.lifecycle.load()

    async def ready_status() -> int:
        sent: list[dict] = []

        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/health/ready", "headers": []}
        await app(scope, receive, send)
        return sent[0]["status"]

    assert asyncio.run(ready_status()) == 200
    app.state.draining = True
    assert asyncio.run(ready_status()) == 503


def run_serve(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [DIABETES, "serve", "--port", str(free_port()), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_a_missing_model_path_exits_non_zero_with_one_line(tmp_path):
    done = run_serve("--model-uri", str(tmp_path / "nothing-here"))
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0
    assert "no model at" in done.stderr


def test_an_unregistered_model_exits_non_zero(embedded_store):
    done = run_serve("--model-uri", "models:/no_such_model/1", env=embedded_store.env, timeout=120)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("diabetes serve: cannot serve the model:")
    assert "Traceback" not in done.stderr


def test_an_unreachable_tracking_server_exits_within_seconds():
    started = time.monotonic()
    port = free_port()
    done = run_serve("--model-uri", "models:/diabetes_model/1", "--tracking-uri", f"http://127.0.0.1:{port}")
    assert done.returncode != 0
    assert time.monotonic() - started < 45
    assert "cannot serve the model" in done.stderr


def test_a_corrupt_pickle_stops_the_service(tmp_path):
    broken = tmp_path / "model.pkl"
    broken.write_bytes(b"this is not a pickle")
    proc = start(
        [DIABETES, "serve", "--model-uri", str(broken), "--port", str(free_port()), "--workers", "2"],
        log=tmp_path / "out.log",
    )
    try:
        assert proc.wait(timeout=60) != 0
    finally:
        stop(proc)
    output = (tmp_path / "out.log").read_text()
    assert "cannot serve the model: cannot unpickle model.pkl" in output


def test_a_port_in_use_is_one_line(example_model_pkl, service):
    with service(str(example_model_pkl)) as svc:
        done = subprocess.run(
            [DIABETES, "serve", "--model-uri", str(example_model_pkl), "--port", str(svc.port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode != 0
        assert done.stderr.strip().startswith(f"diabetes serve: cannot listen on 127.0.0.1:{svc.port}")


def test_requests_over_the_concurrency_limit_get_a_retryable_503(service, slow_models, repo_on_path, example_data):
    env = {**repo_on_path, "DIABETES_MAX_CONCURRENT_REQUESTS": "1"}
    svc = service(str(slow_models["predict"]), env=env, workers=1).start()
    statuses: list[int] = []

    def call() -> None:
        body = {"data": example_data.x_test[:1]}
        statuses.append(requests.post(svc.url + "/score", json=body, timeout=30).status_code)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(statuses)[0] == 200
    assert 503 in statuses
    assert set(statuses) <= {200, 503}


def _worker_connections(svc, client_ports: set[int]) -> dict[int, int]:
    """How many of these clients' connections each worker process has accepted."""
    import psutil

    counts = {}
    for worker in psutil.Process(svc.proc.pid).children():
        counts[worker.pid] = sum(1 for c in worker.net_connections("tcp") if c.raddr and c.raddr.port in client_ports)
    return counts


def test_a_burst_of_keep_alive_connections_is_spread_over_the_workers(service, example_model_pkl):
    import socket

    svc = service(str(example_model_pkl), workers=2).start()
    # A proxy's pool opens its connections at once and keeps them: with one shared listening socket
    # the first worker awake accepted the whole burst and the other idled for the pool's lifetime.
    clients = [socket.socket() for _ in range(16)]
    for client in clients:  # all at once, as a load generator or a proxy's pool does
        client.setblocking(False)
        client.connect_ex(("127.0.0.1", svc.port))
    ports = {client.getsockname()[1] for client in clients}
    try:
        deadline = time.monotonic() + 5
        while sum((counts := _worker_connections(svc, ports)).values()) < 16 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(counts.values())[0] >= 1, counts
        assert sum(counts.values()) == 16
    finally:
        for client in clients:
            client.close()
    # What spreads them whatever the timing: each worker accepts from a listening socket of its
    # own on the port, and the kernel picks the socket by a hash of the connection's addresses.
    listening = _listening_sockets(svc)
    assert len(listening) == 2
    assert all(len(inodes) == 1 for inodes in listening.values()), listening
    assert len(set().union(*listening.values())) == 2, listening


def _listening_sockets(svc) -> dict[int, set[str]]:
    """The listening sockets on the service's port each worker holds, by kernel identity (inode)."""
    import psutil

    found = {}
    for worker in psutil.Process(svc.proc.pid).children():
        sockets = worker.net_connections("tcp")
        fds = {c.fd for c in sockets if c.status == psutil.CONN_LISTEN and c.laddr.port == svc.port}
        found[worker.pid] = {os.readlink(f"/proc/{worker.pid}/fd/{fd}") for fd in fds}
    return found


def test_a_port_already_served_is_refused_with_one_clear_line(service, example_model_pkl):
    first = service(str(example_model_pkl), workers=2).start()
    second = subprocess.run(
        [DIABETES, "serve", "--model-uri", str(example_model_pkl), "--port", str(first.port), "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert second.returncode != 0
    assert f"cannot listen on 127.0.0.1:{first.port}" in second.stderr
    assert "in use" in second.stderr
    assert requests.get(first.url + "/health/ready", timeout=5).status_code == 200


def test_a_prediction_over_the_scoring_timeout_is_a_408_and_the_service_goes_on(
    service, slow_models, repo_on_path, example_data
):
    env = {**repo_on_path, "DIABETES_SCORING_TIMEOUT_SECONDS": "0.3"}
    svc = service(str(slow_models["predict"]), env=env).start()  # each prediction takes 1 s
    started = time.monotonic()
    answer = requests.post(svc.url + "/score", json={"data": example_data.x_test[:1]}, timeout=30)
    assert answer.status_code == 408
    assert "0.3 s scoring timeout" in answer.json()["message"]
    assert time.monotonic() - started < 0.9
    assert requests.get(svc.url + "/health/ready", timeout=5).status_code == 200


def test_requests_that_pile_up_behind_a_slow_model_share_its_calls(service, slow_models, repo_on_path, example_data):
    from concurrent.futures import ThreadPoolExecutor

    svc = service(str(slow_models["slowish"]), env=repo_on_path, workers=2).start()  # 20 ms a call
    rows = example_data.x_test

    def call(i: int) -> requests.Response:
        return requests.post(svc.url + "/score", json={"data": rows[i : i + 2], "method": "predict"}, timeout=30)

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(call, range(32)))
    assert [answer.status_code for answer in answers] == [200] * 32
    assert [len(answer.json()) for answer in answers] == [2] * 32
    assert [round(v, 3) for v in answers[0].json()] == [235.112, 246.799]
    time.sleep(0.3)  # every worker's counts published
    text = requests.get(svc.url + "/metrics", timeout=5).text
    counts = {}
    for line in text.splitlines():
        if line.startswith(("diabetes_model_calls_total", "diabetes_predictions_total")):
            name, _, value = line.rpartition(" ")
            counts[name] = float(value)
    assert counts['diabetes_predictions_total{method="predict"}'] == 64
    # 32 requests at 20 ms a call would take 0.32 s per worker one by one; gathered, a handful of calls.
    assert counts['diabetes_model_calls_total{method="predict"}'] < 16
