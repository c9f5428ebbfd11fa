"""Run the benchmark: train into a temporary store, start each server in turn, load it with wrk, report.

Servers run one at a time on loopback, each stopped before the next starts (and on Ctrl-C, SIGTERM
or any error), so they never share the machine with each other, only with the load generator.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

from loadtests.bench import report, servers
from loadtests.bench.data import example_test_rows, take_rows
from loadtests.bench.processes import ServerProcess, free_port
from loadtests.bench.results import Cell, Results
from loadtests.bench.store import download_model_folder, train
from loadtests.bench.targets import checks
from loadtests.bench.wrk import WrkError, run_wrk, wrk_binary

PROBE_TIMEOUT_SECONDS = 30


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
    parser.add_argument("--ready-timeout", type=float, default=120.0, help="seconds a server may take to be ready")
    parser.add_argument("--json", type=Path, help="also write the measurements to this file")
    args = parser.parse_args(argv)
    if args.duration < 1 or args.warmup < 0 or args.workers < 1 or args.threads < 1:
        parser.error("--duration, --workers and --threads must be ≥ 1, --warmup ≥ 0")
    return args


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _probe(proc: ServerProcess, server: servers.Server, body: bytes, rows: int) -> None:
    """One real request before the load: the server must score this body (not answer 4xx to all of wrk)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", proc.port, timeout=PROBE_TIMEOUT_SECONDS)
    try:
        conn.request("POST", server.score_path, body=body, headers={"Content-Type": "application/json"})
        answer = conn.getresponse()
        payload = answer.read()
    finally:
        conn.close()
    if answer.status != 200:
        raise RuntimeError(f"{server.label} answered {answer.status} to a {rows}-row body: {payload[:200]!r}")
    if server.predicts:
        doc = json.loads(payload)
        predictions = doc["predictions"] if isinstance(doc, dict) else doc
        if len(predictions) != rows:
            raise RuntimeError(f"{server.label} answered {len(predictions)} predictions to {rows} rows")


class Bench:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.running: list[ServerProcess] = []
        self.results = Results([])

    def launch(self, server: servers.Server) -> ServerProcess:
        port = free_port()
        proc = ServerProcess(
            server.label,
            server.cmd(port),
            port=port,
            ready_path=server.ready_path,
            env=server.env,
            log=self.workdir / f"{server.key}.log",
            cwd=servers.REPO,
        )
        self.running.append(proc)
        progress(f"starting {server.label}")
        proc.start(self.args.ready_timeout)
        progress(f"{server.label} ready in {proc.ready_seconds:.2f} s")
        return proc

    def stop(self, proc: ServerProcess) -> None:
        proc.stop()
        self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in list(self.running):
            self.stop(proc)

    def measure(self, server: servers.Server, test_rows: list[list[float]]) -> None:
        proc = self.launch(server)
        assert proc.ready_seconds is not None
        url = f"http://127.0.0.1:{proc.port}{server.score_path}"
        for rows in self.args.rows:
            body = server.body(take_rows(test_rows, rows))
            body_file = self.workdir / f"{server.key}-{rows}.json"
            body_file.write_bytes(body)
            _probe(proc, server, body, rows)
            for connections in self.args.connections:
                options = {"connections": connections, "threads": self.args.threads, "timeout": 10.0}
                if self.args.warmup:
                    run_wrk(url, body_file, seconds=self.args.warmup, **options)
                result = run_wrk(url, body_file, seconds=self.args.duration, **options)
                cell = Cell(
                    server.key, server.label, rows, connections, result, proc.tree_rss_mib(), proc.ready_seconds
                )
                self.results.cells.append(cell)
                progress(
                    f"{server.label}: {rows} rows x {connections} conns: {result.req_per_s:,.0f} req/s, "
                    f"p50 {result.p50_ms:.3f} ms, {result.errors} errors"
                )
        self.stop(proc)

    def ready_only(self, server: servers.Server) -> float:
        proc = self.launch(server)
        self.stop(proc)
        assert proc.ready_seconds is not None
        return proc.ready_seconds

    def run(self) -> Results:
        args, workdir = self.args, self.workdir
        progress("training and registering the worked example in a temporary embedded store (diabetes train)")
        store = train(self._mkdir("store"))
        folder = download_model_folder(store, self._mkdir("local-model"))
        test_rows = example_test_rows()
        cache = workdir / "model-cache"
        # Start-up first, while nothing else of ours runs: a local folder, then models:/ (which downloads).
        self.results.ready_local_folder = self.ready_only(servers.ours(store, str(folder), args.workers, cache))
        ours = servers.ours(store, store.model_uri, args.workers, cache)
        self.measure(ours, test_rows)
        self.results.ready_registry = self.results.cells[-1].ready_seconds
        if args.also_no_access_log:
            self.measure(servers.ours(store, store.model_uri, args.workers, cache, access_log=False), test_rows)
            self.results.ready_registry_cached = self.results.cells[-1].ready_seconds
        self.measure(servers.constant(args.workers), test_rows)
        if not args.skip_mlflow:
            self.measure(servers.mlflow_serve(store, args.workers), test_rows)
        return self.results

    def _mkdir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir()
        return path


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
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
        except (RuntimeError, TimeoutError, WrkError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            bench.stop_all()
    found = checks(results, connections=args.connections, workers=args.workers)
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
            }
            for c in results.cells
        ],
        "ready_local_folder": results.ready_local_folder,
        "ready_registry": results.ready_registry,
        "ready_registry_cached": results.ready_registry_cached,
        "targets": [{"name": c.name, "measured": c.measured, "passed": c.passed} for c in found],
    }
