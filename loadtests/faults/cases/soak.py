"""Soak: half the measured capacity for a long while, no errors, no memory growth.

Capacity is what four closed-loop processes on kept-alive connections get from the service in 5 s
on this machine (the load generator shares its cores: it is the capacity of this set-up, not of
the service alone). The same four processes then send half of it, paced, for `seconds` (60 in CI,
600 as the documented run). The whole process tree's resident memory is sampled every second.
Targets: no error; RSS at the end within 5% of RSS at the start of the soak (after the capacity
run has warmed every worker).
"""

from __future__ import annotations

import time
from pathlib import Path

from loadtests.faults.load import SPAWN_SECONDS, Generators, keepalive_calls, score_body, soak_calls
from loadtests.faults.models import Models
from loadtests.faults.report import Report
from loadtests.faults.service import Service
from loadtests.faults.stats import Summary, describe, summarize

PROCESSES = 4
CAPACITY_SECONDS = 5.0
RSS_GROWTH_LIMIT = 0.05
SAMPLE_SECONDS = 1.0


def run(models: Models, workdir: Path, *, seconds: float = 60.0) -> Report:
    report = Report(f"soak ({seconds:g} s)")
    body = score_body(models.rows[:1])
    with Service(models.fast, workdir / "soak.log", workers=2) as svc:
        start_at = time.monotonic() + SPAWN_SECONDS
        with Generators(PROCESSES) as generators:
            for _ in range(PROCESSES):
                generators.add(keepalive_calls, svc.port, body, start_at, start_at + CAPACITY_SECONDS)
            capacity = summarize([call for run in generators.results(timeout=CAPACITY_SECONDS + 60) for call in run])
            rate = capacity.rate / 2
            soak_at = time.monotonic() + 0.5
            until = soak_at + seconds
            for _ in range(PROCESSES):
                generators.add(soak_calls, svc.port, body, soak_at, until, rate=rate / PROCESSES)
            samples = _sample_rss(svc, soak_at, until)
            soak = Summary.merge(generators.results(timeout=60)[PROCESSES:])
        running = svc.exit_code() is None

    start_rss, end_rss, peak_rss = samples[0], sum(samples[-3:]) / len(samples[-3:]), max(samples)
    growth = end_rss / start_rss - 1
    report.figure("capacity (4 closed-loop processes, 5 s)", f"{capacity.rate:,.0f} req/s, {capacity.errors} errors")
    report.figure("soak rate asked / held", f"{rate:,.0f} / {soak.rate:,.0f} req/s")
    report.figure("soak calls", f"{soak.calls:,}: {describe(soak.outcomes)}")
    report.figure("soak latency p50 / p99 / max", f"{soak.p50_ms:.2f} / {soak.p99_ms:.2f} / {soak.max_ms:.1f} ms")
    report.figure("tree RSS start / end / peak", f"{_mib(start_rss)} / {_mib(end_rss)} / {_mib(peak_rss)} MiB")
    report.check("soak errors = 0", str(soak.errors), soak.errors == 0 and soak.calls > 0 and running)
    report.check(f"tree RSS growth < {RSS_GROWTH_LIMIT:.0%}", f"{growth:+.1%}", growth < RSS_GROWTH_LIMIT)
    report.check("held ≥ 90% of the rate asked", f"{soak.rate / rate:.0%}", soak.rate >= 0.9 * rate)
    return report


def _sample_rss(svc: Service, start_at: float, until: float) -> list[int]:
    """The tree's RSS at `start_at`, then every SAMPLE_SECONDS until `until`."""
    samples = []
    moment = start_at
    while moment <= until:
        time.sleep(max(0.0, moment - time.monotonic()))
        samples.append(svc.tree_rss_bytes())
        moment += SAMPLE_SECONDS
    return samples


def _mib(value: float) -> str:
    return f"{value / 2**20:.1f}"
