"""Run the benchmark: train into a temporary store, start each server in turn, load it with wrk, report.

Servers run one at a time on loopback, each stopped before the next starts (and on Ctrl-C, SIGTERM
or any error), so they never share the machine with each other, only with the load generator.
"""

from __future__ import annotations

import argparse
import itertools
import json
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from loadtests.bench import grpc_case, mixed, report, servers, shadow, v2
from loadtests.bench.data import example_test_rows, save_pipeline, take_rows
from loadtests.bench.probe import ProbeError, check_scored, post, wait_until_scoring
from loadtests.bench.processes import ServerProcess, free_port
from loadtests.bench.results import Cell, Results, Startup
from loadtests.bench.store import download_model_folder, train
from loadtests.bench.targets import checks, payload_checks
from loadtests.bench.wrk import WrkError, run_wrk, wrk_binary


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("expected at least one number, each ≥ 1")
    return values


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.bench",
        description="Benchmark `diabetes serve` against `mlflow models serve` and a constant-reply ASGI app "
        "(the ceiling of the same uvicorn + httptools + uvloop stack) with wrk on loopback, and check "
        "issue 3's targets as ratios measured in the same run.",
    )
    parser.add_argument("--duration", type=int, default=5, help="seconds of each measured wrk run (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of wrk before each measured run (default 1)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of every server (default 2)")
    parser.add_argument("--rows", type=_int_list, default=(1, 100), help="rows per request (default 1,100)")
    parser.add_argument("--connections", type=_int_list, default=(1, 16), help="wrk connections (default 1,16)")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (default 1: it shares the cores)")
    parser.add_argument("--skip-mlflow", action="store_true", help="leave out `mlflow models serve` (slow to start)")
    parser.add_argument(
        "--also-no-access-log",
        action="store_true",
        help="also measure `diabetes serve` with DIABETES_ACCESS_LOG=false (the default run keeps it on, as shipped)",
    )
    parser.add_argument(
        "--also-pipeline",
        action="store_true",
        help="also measure a StandardScaler + Ridge pipeline (served by scikit-learn itself), with concurrent "
        "requests gathered into one call and with one call each (DIABETES_GATHER_REQUESTS=false)",
    )
    parser.add_argument(
        "--also-baseline",
        type=Path,
        metavar="DIR",
        help="also measure, 1-row only, another checkout's service code (DIR holds its service/ folder, e.g. "
        "`git archive main service | tar -x -C DIR`) against this one, alternating --ab-rounds times; the "
        "check compares their median req/s",
    )
    parser.add_argument("--ab-rounds", type=int, default=3, help="rounds of the --also-baseline A/B (default 3)")
    parser.add_argument(
        "--rate-limit",
        metavar="RATE",
        help="run this checkout's `diabetes serve` with --rate-limit RATE (DIABETES_RATE_LIMIT; e.g. 1000000/s, far "
        "above the load, to measure the limiter's cost against --also-baseline)",
    )
    parser.add_argument(
        "--log-payloads",
        action="store_true",
        help="with --also-baseline: run this checkout's side of the A/B with payload logging at 100%% sampling "
        "(DIABETES_LOG_PAYLOADS, a temporary folder), over every --rows; a check per row count holds it to "
        "issue 24's targets (>= 95%% of the baseline's req/s at 1 row, >= 90%% at 100 rows)",
    )
    parser.add_argument(
        "--ab-grpc",
        action="store_true",
        help="with --also-baseline: also alternate V2 gRPC ModelInfer calls (1-row, grpc_load.py) between the "
        "two checkouts in each round; a second check compares their median calls/s",
    )
    parser.add_argument(
        "--also-starlette",
        action="store_true",
        help="also measure the scoring app with its own router and with Starlette's route matching, "
        "on the same processes in the bench's worker harness (the gap is the router's)",
    )
    parser.add_argument(
        "--also-v2",
        action="store_true",
        help="also measure the Open Inference Protocol (V2) REST route (JSON and binary tensors) beside /score, "
        "and MLServer with its scikit-learn runtime on the same model (its own virtualenv, built once under "
        "the cache folder), and check issue 12's targets",
    )
    parser.add_argument(
        "--also-mixed",
        action="store_true",
        help="also measure the mixed-type pipeline (diabetes train --task pipeline: a string and an integer "
        "column) on /invocations, /score and V2, and `mlflow models serve` on the same model and body, 1-row",
    )
    parser.add_argument(
        "--also-shadow",
        action="store_true",
        help="also measure the champion's 1-row p99 with a shadow challenger on against off, at half the "
        "saturation load, alternating --ab-rounds times (issue 25's target: at most 1.1x)",
    )
    parser.add_argument("--ready-timeout", type=float, default=120.0, help="seconds a server may take to be ready")
    parser.add_argument("--json", type=Path, help="also write the measurements to this file")
    args = parser.parse_args(argv)
    if args.duration < 1 or args.warmup < 0 or args.workers < 1 or args.threads < 1 or args.ab_rounds < 1:
        parser.error("--duration, --workers, --threads and --ab-rounds must be ≥ 1, --warmup ≥ 0")
    if args.also_baseline and not (args.also_baseline / "service" / "diabetes_service").is_dir():
        parser.error(f"--also-baseline {args.also_baseline}: no service/diabetes_service there")
    if args.ab_grpc and not args.also_baseline:
        parser.error("--ab-grpc needs --also-baseline")
    if args.log_payloads and not args.also_baseline:
        parser.error("--log-payloads needs --also-baseline")
    return args


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _startup(proc: ServerProcess) -> Startup:
    assert proc.ready_seconds is not None
    assert proc.scoring_seconds is not None
    return Startup(proc.ready_seconds, proc.scoring_seconds)


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.running: list[ServerProcess] = []
        self.starts = itertools.count(1)
        self.results = Results([])
        self.shadow_lines: list[str] = []  # --also-shadow's figures (shadow.py)

    def launch(self, server: servers.Server, test_rows: list[list[float]]) -> ServerProcess:
        port = free_port()
        proc = ServerProcess(
            server.label,
            server.cmd(port),
            port=port,
            ready_path=server.ready_path,
            env=server.env,
            # One file per start: the worker-warm lines of an earlier start must not count.
            log=self.workdir / f"{server.key}-{next(self.starts)}.log",
            cwd=servers.REPO,
        )
        self.running.append(proc)
        progress(f"starting {server.label}")
        proc.start(self.args.ready_timeout)
        if server.worker_ready_line:
            proc.wait_for_log_lines(server.worker_ready_line, self.args.workers, self.args.ready_timeout)
        one_row = take_rows(test_rows, 1)
        wait_until_scoring(
            server.label,
            port,
            server.score_path,
            server.body(one_row),
            1 if server.predicts else None,
            consecutive=4 * self.args.workers,
            timeout=self.args.ready_timeout,
            headers=server.headers,
        )
        proc.scoring_seconds = time.monotonic() - proc.started_at
        progress(
            f"{server.label} ready in {proc.ready_seconds:.2f} s, "
            f"every worker scoring after {proc.scoring_seconds:.2f} s"
        )
        return proc

    def stop(self, proc: ServerProcess) -> None:
        proc.stop()
        self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.running):
            self.stop(proc)

    def measure(
        self, server: servers.Server, test_rows: list[list[float]], rows_list: tuple[int, ...] | None = None
    ) -> Startup:
        """Every cell of `server`; its routes (`server.routes()`) one after the other on the same
        process for each body size and connection count, so that the machine's other load shifts
        their ratio as little as it can."""
        proc = self.launch(server, test_rows)
        assert proc.ready_seconds is not None
        for rows in rows_list or self.args.rows:
            body_files = []
            for route in server.routes():
                body = route.body(take_rows(test_rows, rows))
                body_file = self.workdir / f"{route.key}-{rows}.json"
                body_file.write_bytes(body)
                answer = post(proc.port, route.score_path, body, route.headers)
                check_scored(route.label, *answer, rows if server.predicts else None)
                body_files.append((route, body_file))
            for connections in self.args.connections:
                options = {"connections": connections, "threads": self.args.threads, "timeout": 10.0}
                for route, body_file in body_files:
                    url = f"http://127.0.0.1:{proc.port}{route.score_path}"
                    if self.args.warmup:
                        run_wrk(url, body_file, seconds=self.args.warmup, headers=route.headers, **options)
                    cpu_before = proc.tree_cpu_seconds()
                    result = run_wrk(url, body_file, seconds=self.args.duration, headers=route.headers, **options)
                    cpu_us = (proc.tree_cpu_seconds() - cpu_before) * 1e6 / max(1, result.requests)
                    rss = proc.tree_rss_mib()
                    cell = Cell(route.key, route.label, rows, connections, result, rss, proc.ready_seconds, cpu_us)
                    self.results.cells.append(cell)
                    progress(
                        f"{route.label}: {rows} rows x {connections} conns: {result.req_per_s:,.0f} req/s, "
                        f"p50 {result.p50_ms:.3f} ms, {result.errors} errors, {cpu_us:.0f} µs server CPU/req"
                    )
        self.stop(proc)
        return _startup(proc)

    def startup_only(self, server: servers.Server, test_rows: list[list[float]]) -> Startup:
        proc = self.launch(server, test_rows)
        self.stop(proc)
        return _startup(proc)

    def run(self) -> Results:
        args, workdir = self.args, self.workdir
        progress("training and registering the worked example in a temporary embedded store (diabetes train)")
        store = train(self._mkdir("store"))
        folder = download_model_folder(store, self._mkdir("local-model"))
        test_rows = example_test_rows()
        cache = workdir / "model-cache"
        # Start-up first, while nothing else of ours runs: a local folder, then models:/ (which downloads).
        local = servers.ours(store, str(folder), args.workers, cache)
        self.results.local_folder = self.startup_only(local, test_rows)
        ours = servers.ours(store, store.model_uri, args.workers, cache)
        if args.rate_limit:
            ours = replace(ours, env={**ours.env, "DIABETES_RATE_LIMIT": args.rate_limit})
        measured = servers.with_invocations(ours)
        if args.also_v2:
            measured = servers.with_v2(measured, store.model_name)
        self.results.registry = self.measure(measured, test_rows)
        if args.also_baseline:
            # Alternated, so that whatever else the machine does falls on both sides alike.
            this = replace(ours, key="ours-ab", label="diabetes serve, this checkout (A/B)")
            ab_rows: tuple[int, ...] = (1,)
            if args.log_payloads:
                logged = {**this.env, "DIABETES_LOG_PAYLOADS": str(self._mkdir("payloads"))}
                this = replace(this, label="diabetes serve, this checkout, payload logging (A/B)", env=logged)
                ab_rows = args.rows
            peer = servers.baseline(store, store.model_uri, args.workers, cache, args.also_baseline)
            for _ in range(args.ab_rounds):
                self.measure(peer, test_rows, ab_rows)
                self.measure(this, test_rows, ab_rows)
                if args.ab_grpc:
                    grpc_case.ab_round(self, store, peer, this, test_rows)
        if args.also_no_access_log:
            quiet = servers.ours(store, store.model_uri, args.workers, cache, access_log=False)
            self.results.registry_cached = self.measure(quiet, test_rows)
        if args.also_pipeline:
            model = save_pipeline(self._mkdir("pipeline") / "model.pkl")
            for gather in (True, False):
                self.measure(servers.pipeline(store, model, args.workers, cache, gather=gather), test_rows)
        if args.also_starlette:
            self.measure(servers.routed(folder, args.workers), test_rows)
        self.measure(servers.constant(args.workers), test_rows)
        if not args.skip_mlflow:
            self.measure(servers.mlflow_serve(store, args.workers), test_rows)
        if args.also_v2:
            assert grpc_case.case in v2.EXTRA_CASES  # the gRPC 100-row case, after MLServer's REST cells
            v2.measure_peers(self, store, folder, test_rows, progress)
        if args.also_mixed:
            mixed.measure(self, store, cache, progress)
        if args.also_shadow:
            self.shadow_lines = shadow.measure(self, store, cache, test_rows, progress)
        return self.results

    def _mkdir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir()
        return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    # Also when started in the background, where the shell leaves SIGINT ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        wrk_binary()
    except WrkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="diabetes-bench-") as tmp:
        bench = Bench(args, Path(tmp))
        try:
            results = bench.run()
        except KeyboardInterrupt:
            progress("interrupted: stopping the servers")
            return 130
        except (RuntimeError, TimeoutError, OSError, ProbeError, WrkError, subprocess.CalledProcessError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            bench.stop_all()
    found = checks(results, connections=args.connections, workers=args.workers)
    if args.log_payloads:
        found += payload_checks(results, max(args.connections), args.rows)
    found += v2.checks(results, max(args.connections))
    found += mixed.checks(results, max(args.connections))
    print(
        f"wrk on loopback, {args.duration} s per cell after {args.warmup} s of warm-up, {args.threads} wrk thread(s), "
        f"{args.workers} workers per server; errors = non-2xx answers + socket errors"
    )
    print()
    print(report.results_table(results))
    print()
    for line in report.ready_lines(results):
        print(line)
    print()
    print(report.checks_table(found))
    for line in bench.shadow_lines:
        print(line)
    cpu = report.cpu_lines(results, connections=max(args.connections))
    if cpu:
        print()
        print("\n".join(cpu))
    progress(f"done in {time.monotonic() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(_as_json(results, found), indent=2))
    return 0


def _as_json(results: Results, found: list) -> dict:
    return {
        "cells": [
            {
                "server": c.server,
                "rows": c.rows,
                "connections": c.connections,
                "req_per_s": c.wrk.req_per_s,
                "rows_per_s": c.rows_per_s,
                "p50_ms": c.wrk.p50_ms,
                "p99_ms": c.wrk.p99_ms,
                "errors": c.wrk.errors,
                "rss_mib": c.rss_mib,
                "ready_seconds": c.ready_seconds,
                "cpu_us_per_request": c.cpu_us_per_request,
            }
            for c in results.cells
        ],
        "startup": {
            name: None if value is None else {"ready": value.ready, "scoring": value.scoring}
            for name, value in (
                ("local_folder", results.local_folder),
                ("registry", results.registry),
                ("registry_cached", results.registry_cached),
            )
        },
        "targets": [{"name": c.name, "measured": c.measured, "passed": c.passed} for c in found],
    }
