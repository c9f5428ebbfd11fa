"""The supervisor under faults: dead, hung and crash-looping workers, and stop signals at any moment.

Each case fails on the supervisor this replaced: a dead worker's socket stayed open with nobody
accepting, a SIGTERM during a restart's backoff was dropped, and nothing noticed a hung worker.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import time

import psutil
import requests

from tests.support.processes import wait_http


def workers(svc) -> list[psutil.Process]:
    """The supervisor's children that serve (the preparation child has gone once ready)."""
    return psutil.Process(svc.proc.pid).children()


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


def fresh_connection_seconds(port: int) -> float:
    """One request on a new connection: how long until the answer's first bytes."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        assert conn.recv(64).startswith(b"HTTP/1.1 200")
    return time.monotonic() - started


def test_new_connections_go_to_the_live_worker_while_a_dead_ones_replacement_loads(service, slow_models, repo_on_path):
    # The replacement takes 3 s to unpickle its model: with the dead worker's socket left open and
    # nobody accepting from it, about half the new connections would wait those seconds (the live
    # worker adopts it: supervisor/adoption.py).
    svc = service(str(slow_models["load"]), env=repo_on_path, workers=2, ready_timeout=90).start()
    victim, survivor = workers(svc)
    victim.kill()
    victim.wait(timeout=5)
    waits = [fresh_connection_seconds(svc.port) for _ in range(40)]
    assert max(waits) < 0.5, sorted(waits)[-5:]
    # The replacement joins once warm, and the service stays ready throughout.
    assert requests.get(svc.url + "/health/ready", timeout=5).status_code == 200
    wait_for(lambda: len(workers(svc)) == 2, 30, "a replacement worker")
    replacement = next(w for w in workers(svc) if w.pid != survivor.pid)
    wait_for(lambda: _listens(replacement, svc.port), 30, "the replacement listening once warm")


def test_connections_queued_on_a_dead_workers_socket_are_answered_not_reset(service, example_model_pkl):
    """A stopped worker accepts nothing: the connections the kernel hashes to its socket queue there.
    Once it is killed, the live worker accepts them from the socket the supervisor kept (before, the
    kernel reset them with the dead worker's socket)."""
    svc = service(str(example_model_pkl), workers=2).start()
    victim, survivor = workers(svc)
    victim.send_signal(signal.SIGSTOP)
    try:
        conns = [socket.create_connection(("127.0.0.1", svc.port), timeout=10) for _ in range(24)]
        for conn in conns:
            conn.sendall(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        time.sleep(0.3)
        queued = [conn for conn in conns if not select.select([conn], [], [], 0)[0]]
        assert queued, "no connection landed on the stopped worker's socket"  # 2**-24 by chance
        victim.kill()
    finally:
        # The supervisor may already have reaped the killed worker; a stopped one must go on.
        with contextlib.suppress(psutil.NoSuchProcess):
            victim.send_signal(signal.SIGCONT)
    answers = []
    for conn in conns:
        with conn:
            try:
                answers.append(conn.recv(64)[:12])
            except OSError as exc:
                answers.append(type(exc).__name__.encode())
    assert answers == [b"HTTP/1.1 200"] * len(conns), (len(queued), answers)
    wait_for(lambda: len(workers(svc)) == 2, 30, "a replacement worker")
    # Once the replacement serves the socket, the survivor lets go of it: its own socket only.
    wait_for(lambda: _listening(survivor, svc.port) == 1, 10, "the survivor back to its own socket")
    replacement = next(w for w in workers(svc) if w.pid != survivor.pid)
    assert _listening(replacement, svc.port) == 1


def _listening(worker: psutil.Process, port: int) -> int:
    return sum(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in worker.net_connections("tcp"))


def _listens(worker: psutil.Process, port: int) -> bool:
    return any(c.status == psutil.CONN_LISTEN and c.laddr.port == port for c in worker.net_connections("tcp"))


def test_sigterm_during_a_restart_stops_the_service(service, slow_models, repo_on_path):
    svc = service(str(slow_models["load"]), env=repo_on_path, workers=2, ready_timeout=90).start()
    workers(svc)[0].kill()
    time.sleep(0.3)  # the replacement is loading its model
    svc.proc.send_signal(signal.SIGTERM)
    assert svc.proc.wait(timeout=15) == 0
    assert not psutil.pid_exists(svc.proc.pid) or psutil.Process(svc.proc.pid).status() == psutil.STATUS_ZOMBIE


def test_sigterm_during_model_preparation_stops_at_once(service, slow_models, repo_on_path):
    svc = service(str(slow_models["load"]), env=repo_on_path)
    from tests.support.processes import DIABETES, start

    svc.proc = start(
        [DIABETES, "serve", "--model-uri", svc.model_uri, "--port", str(svc.port), "--workers", "2"],
        env=svc.env,
        log=svc.log,
    )
    wait_http(svc.url + "/", timeout=30, proc=svc.proc)  # live, still preparing the 3 s model
    started = time.monotonic()
    svc.proc.send_signal(signal.SIGTERM)
    assert svc.proc.wait(timeout=15) == 0
    assert time.monotonic() - started < 3.0


def test_a_hung_worker_is_replaced_and_counted(service, example_model_pkl):
    env = {"DIABETES_HEARTBEAT_TIMEOUT_SECONDS": "1"}
    svc = service(str(example_model_pkl), env=env, workers=2).start()
    hung = workers(svc)[0]
    hung.send_signal(signal.SIGSTOP)
    try:
        wait_for(lambda: not hung.is_running() or hung.status() == psutil.STATUS_ZOMBIE, 6, "the hung worker killed")
    finally:
        if hung.is_running():
            hung.send_signal(signal.SIGCONT)
    wait_for(lambda: len(workers(svc)) == 2, 10, "a replacement")
    wait_http(svc.url + "/health/ready", timeout=10)
    metrics = requests.get(svc.url + "/metrics", timeout=5).text
    restarts = [line for line in metrics.splitlines() if line.startswith("diabetes_worker_restarts_total")]
    assert 'diabetes_worker_restarts_total{reason="heartbeat"} 1.0' in restarts, restarts
    assert f"worker {hung.pid} (slot" in svc.output()
    assert "sent no heartbeat" in svc.output()


def test_a_crash_loop_backs_off_and_shows_in_the_log_and_metrics(service, example_model_pkl):
    svc = service(str(example_model_pkl), workers=1).start()
    for _ in range(3):
        worker = wait_for(lambda: workers(svc), 10, "a worker")[0]
        wait_for(lambda w=worker: _listens(w, svc.port), 10, "the worker listening")
        worker.kill()
        worker.wait(timeout=5)
    log = wait_for(lambda: "crash loop" in svc.output() and svc.output(), 10, "the crash loop logged")
    assert "3 failures in a row" in log
    assert "killed by SIGKILL" in log
    worker = wait_for(lambda: workers(svc), 10, "a worker after the backoff")[0]
    wait_for(lambda: _listens(worker, svc.port), 10, "the worker listening")
    metrics = requests.get(svc.url + "/metrics", timeout=5).text
    assert 'diabetes_worker_restarts_total{reason="signal"} 3.0' in metrics
    assert "diabetes_workers_crash_looping 1.0" in metrics


def test_workers_stop_when_the_supervisor_is_killed(service, example_model_pkl):
    svc = service(str(example_model_pkl), workers=2).start()
    orphans = workers(svc)
    os.kill(svc.proc.pid, signal.SIGKILL)
    svc.proc.wait(timeout=5)
    _gone, alive = psutil.wait_procs(orphans, timeout=10)
    assert not alive, alive
