"""A hung worker: SIGSTOP one, as a model call stuck in C or a frozen process would leave it.

Eight kept-alive connections send 20 calls a second each (threads of this process: the figures here
are in seconds, not milliseconds); 1 s in, the worker holding most of them is stopped. Targets:
the supervisor replaces it; every call sent from then on gets an answer, or a retryable error
(connection reset or refused, 503, 504), within the scoring timeout, never a hang.
"""

from __future__ import annotations

import contextlib
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

from loadtests.faults.load import is_retryable, keepalive_calls, score_body
from loadtests.faults.models import Models
from loadtests.faults.report import Report
from loadtests.faults.service import Service
from loadtests.faults.stats import describe, summarize

SCORING_TIMEOUT_SECONDS = 5.0
CONNECTIONS = 8
RATE_PER_CONNECTION = 20.0


def run(models: Models, workdir: Path, *, stop_after: float = 1.0) -> Report:
    report = Report("hung worker (SIGSTOP)")
    env = {"DIABETES_SCORING_TIMEOUT_SECONDS": f"{SCORING_TIMEOUT_SECONDS:g}"}
    with Service(models.fast, workdir / "hang.log", workers=2, env=env) as svc:
        workers = svc.worker_pids()
        start_at = time.monotonic() + 0.2
        until = start_at + stop_after + SCORING_TIMEOUT_SECONDS + 3.0
        body = score_body(models.rows[:1])
        # A hang shows as a call that lasts the client's whole timeout, longer than the target.
        client_timeout = SCORING_TIMEOUT_SECONDS + 2.0
        with ThreadPoolExecutor(CONNECTIONS) as pool:
            futures = [
                pool.submit(
                    keepalive_calls, svc.port, body, start_at, until, rate=RATE_PER_CONNECTION, timeout=client_timeout
                )
                for _ in range(CONNECTIONS)
            ]
            time.sleep(max(0.0, start_at + stop_after - time.monotonic()))
            held = {pid: _established(pid) for pid in sorted(workers)}
            victim = max(held, key=held.__getitem__)  # the worker whose stop hurts most
            svc.signal_worker(victim, signal.SIGSTOP)
            stopped_at = time.monotonic()
            gone_after = _wait_gone(victim, timeout=until - stopped_at + 5)
            try:
                replaced = svc.wait_workers(
                    len(workers), timeout=max(1.0, until - time.monotonic() + 5), without={victim}
                )
                replaced_after: float | None = time.monotonic() - stopped_at
            except TimeoutError:
                replaced, replaced_after = set(), None
            calls = [call for future in futures for call in future.result(timeout=until - time.monotonic() + 30)]
        fresh_ok = _fresh_calls_ok(svc, body, count=20)
        log = svc.log_tail(3)

    after = [call for call in calls if call[0] >= stopped_at]
    summary = summarize(after)
    hurt = [call for call in after if call[2] != 200 or call[1] - call[0] > 0.1]
    too_slow = [call for call in after if call[1] - call[0] > SCORING_TIMEOUT_SECONDS]
    not_retryable = [call for call in after if call[2] != 200 and not is_retryable(call[2])]

    report.figure("stopped worker", f"pid {victim}; client connections by worker {held}")
    report.figure("killed by the supervisor after", "not killed" if gone_after is None else f"{gone_after:.2f} s")
    report.figure(
        "replacement running after",
        "none" if replaced_after is None else f"{replaced_after:.2f} s ({sorted(replaced - workers)})",
    )
    report.figure("calls sent from the stop on", f"{summary.calls:,}: {describe(summary.outcomes)}")
    report.figure("of them slow (>100 ms) or failed", f"{len(hurt)}; slowest {summary.max_ms / 1000:.2f} s")
    report.figure("afterwards, fresh connections answered 200", f"{fresh_ok}/20")
    report.figure("log tail", log)
    report.check(
        "the stopped worker is replaced",
        "yes" if replaced_after is not None and gone_after is not None else "no",
        replaced_after is not None and gone_after is not None,
    )
    report.check(
        f"every call answered or retryable within the scoring timeout ({SCORING_TIMEOUT_SECONDS:g} s)",
        f"{len(too_slow)} too slow, {len(not_retryable)} not retryable, {len(hurt)} hurt",
        not too_slow and not not_retryable and len(hurt) > 0,
    )
    report.check("the service answers afterwards", f"{fresh_ok}/20", fresh_ok == 20)
    return report


def _established(pid: int) -> int:
    """How many established client connections the worker holds."""
    with contextlib.suppress(psutil.Error):
        return sum(1 for c in psutil.Process(pid).net_connections("tcp") if c.status == psutil.CONN_ESTABLISHED)
    return 0


def _wait_gone(pid: int, timeout: float) -> float | None:
    """Seconds until `pid` has exited (a zombie counts as gone), or None after `timeout`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                break
        except psutil.NoSuchProcess:
            break
        time.sleep(0.01)
    else:
        return None
    return time.monotonic() - started


def _fresh_calls_ok(svc: Service, body: bytes, count: int) -> int:
    from loadtests.faults.load import fresh_connection_calls

    calls = fresh_connection_calls(svc.port, body, time.monotonic(), time.monotonic() + 60, rate=1000, limit=count)
    return sum(1 for call in calls if call[2] == 200)
