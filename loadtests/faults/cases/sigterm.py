"""SIGTERM to the supervisor, under load and in the middle of a worker's restart.

Under load: four processes send on kept-alive connections in a closed loop to a model whose every
call takes 50 ms, so that requests are always in flight; 1.5 s in, the supervisor alone gets
SIGTERM (as from Kubernetes or `docker stop`). Targets: every request sent before the signal is
answered 200; the service exits 0 within its grace period.

During a restart: one worker is SIGKILLed, then SIGTERM comes while the supervisor is waiting to
replace it, or while the replacement starts. Target: the same exit, 0 within the grace period.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from loadtests.faults.load import SPAWN_SECONDS, Generators, keepalive_calls, score_body
from loadtests.faults.models import Models
from loadtests.faults.report import Report
from loadtests.faults.service import Service
from loadtests.faults.stats import describe, summarize

GRACE_SECONDS = 10.0
GRACE_ENV = {"DIABETES_GRACEFUL_TIMEOUT_SECONDS": f"{GRACE_SECONDS:g}"}
# Once the grace period is over, how much longer the case waits before giving up on the exit.
EXIT_MARGIN_SECONDS = 5.0


def run_under_load(models: Models, workdir: Path, *, clients: int = 4, signal_after: float = 1.5) -> Report:
    report = Report("SIGTERM under load")
    with Service(models.slow, workdir / "sigterm.log", workers=2, env=GRACE_ENV) as svc:
        start_at = time.monotonic() + SPAWN_SECONDS
        # The generators go on after the signal: what happens to calls sent while it drains is a figure too.
        until = start_at + signal_after + GRACE_SECONDS + EXIT_MARGIN_SECONDS
        with Generators(clients) as generators:
            for _ in range(clients):
                generators.add(
                    keepalive_calls, svc.port, score_body(models.rows[:1]), start_at, until, stop_when_refused=True
                )
            time.sleep(max(0.0, start_at + signal_after - time.monotonic()))
            signalled_at = svc.signal(signal.SIGTERM)
            code = svc.wait_exit(GRACE_SECONDS + EXIT_MARGIN_SECONDS)
            exit_seconds = time.monotonic() - signalled_at
            runs = generators.results(timeout=until - time.monotonic() + 60)
        log = svc.log_tail(3)

    calls = [call for run in runs for call in run]
    before = [call for call in calls if call[0] < signalled_at]
    in_flight = [call for call in before if call[1] > signalled_at]
    lost = [call for call in before if call[2] != 200]
    after = summarize([call for call in calls if call[0] >= signalled_at])

    report.figure("requests sent before SIGTERM", f"{len(before):,} ({len(in_flight)} in flight at the signal)")
    report.figure("their outcomes", describe(summarize(before).outcomes))
    report.figure(
        "requests sent after it", f"{after.calls:,}: {describe(after.outcomes)}; slowest {after.max_ms:.0f} ms"
    )
    report.figure("exit", f"{_exit(code)} {exit_seconds:.2f} s after SIGTERM (grace {GRACE_SECONDS:g} s)")
    report.figure("log tail", log)
    report.check("in-flight requests lost = 0", f"{len(lost)} of {len(before)}", not lost and len(in_flight) > 0)
    report.check(
        f"exit 0 within the grace period ({GRACE_SECONDS:g} s)",
        f"{_exit(code)} in {exit_seconds:.2f} s",
        code == 0 and exit_seconds <= GRACE_SECONDS,
    )
    return report


def run_during_restart(models: Models, workdir: Path) -> Report:
    report = Report("SIGTERM during a restart")
    for moment in ("backoff", "start-up"):
        with Service(models.fast, workdir / f"restart-{moment}.log", workers=2, env=GRACE_ENV) as svc:
            workers = svc.worker_pids()
            victim = min(workers)
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            if moment == "backoff":
                time.sleep(0.05)  # the death seen, no replacement running yet
            else:
                _wait_new_child(svc, workers, timeout=10.0)  # a replacement forked, still starting
            replacement_running = bool(svc.worker_pids() - workers)
            signalled_at = svc.signal(signal.SIGTERM)
            code = svc.wait_exit(GRACE_SECONDS + EXIT_MARGIN_SECONDS)
            exit_seconds = time.monotonic() - signalled_at
            log = svc.log_tail(3)
        started = "started" if replacement_running else "not yet started"
        when = f"{signalled_at - killed_at:.2f} s after the kill, replacement {started}"
        report.figure(f"SIGTERM in the {moment}", when)
        report.figure(f"exit ({moment})", f"{_exit(code)} {exit_seconds:.2f} s after SIGTERM")
        report.figure(f"log tail ({moment})", log)
        report.check(
            f"exit 0 within {GRACE_SECONDS:g} s, signal in the {moment}",
            f"{_exit(code)} in {exit_seconds:.2f} s",
            code == 0 and exit_seconds <= GRACE_SECONDS,
        )
    return report


def _wait_new_child(svc: Service, before: set[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not svc.worker_pids() - before and time.monotonic() < deadline:
        time.sleep(0.002)


def _exit(code: int | None) -> str:
    return "still running" if code is None else f"exit {code}"
