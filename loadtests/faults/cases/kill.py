"""SIGKILL one worker under load.

Four processes call the service through `diabetes_client.Client` (its retries on) in a closed loop
for 10 s; a fifth opens a new plain-HTTP connection for every call, 200 a second, so that calls
keep landing on every worker's socket, the dead one's included. 3 s in, one worker is killed.
Targets: no failed `Client` call; no fresh-connection call slower than 100 ms from the kill on,
and none failed but at once and retryably (a connection reset or refused).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from loadtests.faults.load import (
    RETRYABLE_ERRORS,
    SPAWN_SECONDS,
    Generators,
    client_calls,
    fresh_connection_calls,
    score_body,
)
from loadtests.faults.models import Models
from loadtests.faults.report import Report
from loadtests.faults.service import Service
from loadtests.faults.stats import describe, summarize

FRESH_LIMIT_MS = 100.0


def run(
    models: Models, workdir: Path, *, clients: int = 4, seconds: float = 10.0, kill_after: float = 3.0, probe_rate=200.0
) -> Report:
    report = Report("SIGKILL one worker under load")
    with Service(models.fast, workdir / "kill.log", workers=2) as svc:
        start_at = time.monotonic() + SPAWN_SECONDS
        until = start_at + seconds
        with Generators(clients + 1) as generators:
            for _ in range(clients):
                generators.add(client_calls, svc.url, models.rows, start_at, until)
            generators.add(
                fresh_connection_calls, svc.port, score_body(models.rows[:1]), start_at, until, rate=probe_rate
            )
            time.sleep(max(0.0, start_at + kill_after - time.monotonic()))
            workers = svc.worker_pids()
            victim = min(workers)
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            replaced = svc.wait_workers(len(workers), timeout=until - killed_at + 30, without={victim})
            replaced_after = time.monotonic() - killed_at
            *client_runs, fresh = generators.results(timeout=seconds + 60)
        alive_after = svc.exit_code() is None

    client_all = [call for run in client_runs for call in run]
    client_failures = [outcome for _, _, outcome in client_all if outcome != 200]
    after_kill = [call for call in fresh if call[0] >= killed_at]
    during_restart = [call for call in after_kill if call[0] <= killed_at + replaced_after]
    fresh_after = summarize(after_kill)
    slow = [call for call in after_kill if (call[1] - call[0]) * 1000 > FRESH_LIMIT_MS]

    report.figure("Client calls (4 processes, 10 s)", f"{len(client_all):,}, failed {len(client_failures)}")
    if client_failures:
        report.figure("Client failures", describe({o: client_failures.count(o) for o in set(client_failures)}))
    report.figure(
        "replacement worker running after", f"{replaced_after:.2f} s (pid {victim} -> {sorted(replaced - workers)})"
    )
    report.figure(
        "fresh connections from the kill on", f"{len(after_kill):,} ({len(during_restart)} before the replacement ran)"
    )
    report.figure("their outcomes", describe(fresh_after.outcomes))
    before = summarize([call for call in fresh if call[0] < killed_at])
    report.figure(
        "fresh connections before the kill: p50 / p99 / max",
        f"{before.p50_ms:.2f} / {before.p99_ms:.2f} / {before.max_ms:.1f} ms (the machine's own noise)",
    )
    report.figure(
        "after it: p50 / p99 / max",
        f"{fresh_after.p50_ms:.2f} / {fresh_after.p99_ms:.2f} / {fresh_after.max_ms:.1f} ms",
    )
    if slow:
        moments = ", ".join(f"{(sent - killed_at) * 1000:.0f}:{(done - sent) * 1000:.0f}" for sent, done, _ in slow[:8])
        report.figure("over the limit (ms after the kill:ms taken)", moments)

    failed = [call for call in after_kill if call[2] != 200]
    report.check("failed Client calls = 0", str(len(client_failures)), not client_failures and len(client_all) > 0)
    report.check(
        f"fresh connections over {FRESH_LIMIT_MS:g} ms after the kill = 0",
        f"{len(slow)} (max {fresh_after.max_ms:.1f} ms)",
        not slow and len(during_restart) > 0,
    )
    # The kernel resets what was queued on the dead worker's own socket: a plain client sees that
    # at once (Client retries it); a hang, a timeout or a 5xx would be a failure.
    report.check(
        "fresh connections failed only at once and retryably",
        f"{len(failed)} failed: {describe(summarize(failed).outcomes) if failed else 'none'}",
        all(outcome in RETRYABLE_ERRORS for _, _, outcome in failed),
    )
    report.check("the service runs on", "running" if alive_after else "exited", alive_after)
    return report
