"""`--also-shadow`: the champion's p99 with a shadow challenger on, against off, at half the saturation
load (issue 25's target: at most 1.1x).

The saturation load is this checkout's 1-row /score req/s at 16 connections (closed loop, as every
other cell). Half of it is then offered as a paced load: each of the 16 connections waits between
its requests (post.lua's `BENCH_DELAY_MS`, a pause calibrated once on the server without a rollout;
the rates reached are reported beside the figure), so that the server has headroom and p99 shows what the
shadow copies cost the answers, not the queue of a saturated server. The two servers (no rollout;
`--challenger` the same registered version, `--rollout shadow`: every answer also scored again)
alternate `--ab-rounds` times; the figure is the ratio of their median p99s, in the same run.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from loadtests.bench import servers
from loadtests.bench.data import azureml_body, take_rows
from loadtests.bench.results import Cell
from loadtests.bench.store import Store
from loadtests.bench.wrk import run_wrk

CONNECTIONS = 16
TARGET = 1.1


def measure(bench: Any, store: Store, cache: Any, test_rows: list[list[float]], progress: Callable) -> list[str]:
    """Measure, record the cells ("ours-noshadow", "ours-shadow") and return the report's lines."""
    args = bench.args
    plain = servers.ours(store, store.model_uri, args.workers, cache)
    plain = replace(plain, key="ours-noshadow", label="diabetes serve, no rollout")
    shadow = replace(
        plain,
        key="ours-shadow",
        label="diabetes serve, --rollout shadow",
        cmd=lambda port: [*plain.cmd(port), "--challenger", store.model_uri, "--rollout", "shadow"],
    )
    body_file = bench.workdir / "shadow-1.json"
    body_file.write_bytes(azureml_body(take_rows(test_rows, 1)))
    options = {"connections": CONNECTIONS, "threads": args.threads, "timeout": 10.0}

    proc = bench.launch(plain, test_rows)
    url = f"http://127.0.0.1:{proc.port}/score"
    run_wrk(url, body_file, seconds=max(1, args.warmup), **options)
    saturation = run_wrk(url, body_file, seconds=args.duration, **options)
    rate = saturation.req_per_s / 2
    # Each connection's period at half the load, less the answer's own time: guessed from the
    # saturated p50, then corrected once from what a paced run achieved on the same server.
    period_ms = CONNECTIONS * 1000 / rate
    pause_ms = max(0, round(period_ms - saturation.p50_ms / 2))
    trial = run_wrk(url, body_file, seconds=max(2, args.warmup), delay_ms=pause_ms, **options)
    answer_ms = CONNECTIONS * 1000 / max(1.0, trial.req_per_s) - pause_ms
    pause_ms = max(0, round(period_ms - answer_ms))
    bench.stop(proc)
    progress(f"shadow: saturation {saturation.req_per_s:,.0f} req/s; half of it paced at {pause_ms} ms a connection")

    p99: dict[str, list[float]] = {plain.key: [], shadow.key: []}
    offered: dict[str, list[float]] = {plain.key: [], shadow.key: []}
    for _ in range(args.ab_rounds):
        for server in (plain, shadow):
            proc = bench.launch(server, test_rows)
            url = f"http://127.0.0.1:{proc.port}/score"
            run_wrk(url, body_file, seconds=max(1, args.warmup), delay_ms=pause_ms, **options)
            cpu_before = proc.tree_cpu_seconds()
            result = run_wrk(url, body_file, seconds=args.duration, delay_ms=pause_ms, **options)
            cpu_us = (proc.tree_cpu_seconds() - cpu_before) * 1e6 / max(1, result.requests)
            bench.results.cells.append(
                Cell(server.key, server.label, 1, CONNECTIONS, result, proc.tree_rss_mib(), 0.0, cpu_us)
            )
            progress(
                f"{server.label}: {result.req_per_s:,.0f} req/s paced, p50 {result.p50_ms:.3f} ms, "
                f"p99 {result.p99_ms:.3f} ms, {result.errors} errors, {cpu_us:.0f} µs server CPU/req"
            )
            p99[server.key].append(result.p99_ms)
            offered[server.key].append(result.req_per_s)
            bench.stop(proc)
    off, on = statistics.median(p99[plain.key]), statistics.median(p99[shadow.key])
    ratio = on / off if off else float("inf")
    verdict = "PASS" if ratio <= TARGET else "FAIL"
    return [
        f"shadow (issue 25): saturation {saturation.req_per_s:,.0f} req/s (1 row, {CONNECTIONS} connections); "
        f"paced at ~{statistics.median(offered[plain.key]):,.0f} req/s off / "
        f"{statistics.median(offered[shadow.key]):,.0f} on",
        f"shadow (issue 25): champion p99 with shadow on {on:.3f} ms / off {off:.3f} ms = {ratio:.2f}x "
        f"(median of {args.ab_rounds} rounds; target <= {TARGET}x): {verdict}",
    ]
