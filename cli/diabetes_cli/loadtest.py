"""`diabetes loadtest`: a bounded headless Locust run, its CSV and HTML report, and an SLO gate.

Before the load it asks the service whether keys are on and stops at once when the run's key cannot
match (preflight.py); while the load runs it prints a progress line every few seconds; the gate fails
on a missed SLO and on any wrong answer the checks found (checks.py), whatever the failure ratio.

Also `--workers N` (Locust's master/worker mode on loopback) and `--find-saturation` (a step load
that reports the highest req/s held within the p95 SLO). Locust and PyYAML are imported inside the
handler, so `diabetes --help` stays fast on a client-only install.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from diabetes_cli.errors import CommandError

if TYPE_CHECKING:
    from diabetes_loadtest.launch import LocustRun

DEFAULT_HOST = "http://127.0.0.1:8080"
PROBA_CHOICES = {"auto": "auto", "on": "1", "off": "0"}
MAX_FAILURE_LINES = 5


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `diabetes loadtest` and its options."""
    parser = subparsers.add_parser(
        "loadtest",
        help="load-test a scoring service with Locust and gate on SLOs",
        description=(
            "Check that --host answers and that its keys match --key, run loadtests/locustfile.py "
            "headless against it for a bounded time with a progress line every 5 s, write Locust's "
            "CSV and HTML report to --output-dir, and check the SLOs of --slo and every answer: one "
            "line per SLO and one for the checks, exit 1 when an SLO is missed or an answer was wrong."
        ),
    )
    parser.add_argument(
        "--host",
        default=os.environ.get("DIABETES_LOADTEST_HOST", DEFAULT_HOST),
        help="the service's base URL; an Azure ML scoring URI's path prefix is kept, requests go to "
        f"<host>/score (default: $DIABETES_LOADTEST_HOST or {DEFAULT_HOST})",
    )
    parser.add_argument("--key", help="API key sent as a bearer token (default: $DIABETES_API_KEY)")
    parser.add_argument("--users", type=_positive_int, default=10, help="concurrent users (default 10)")
    parser.add_argument("--spawn-rate", type=_positive_float, default=5.0, help="users started per second (default 5)")
    parser.add_argument("--run-time", default="30s", help="run length: 45s, 2m, 1h30m (default 30s)")
    parser.add_argument(
        "--output-dir",
        type=Path,
        help="where the CSV files, report.html and logs go (default loadtests/reports)",
    )
    parser.add_argument("--slo", type=Path, help="SLO file (default loadtests/diabetes_loadtest/slo.yaml)")
    parser.add_argument("--locustfile", type=Path, help="locustfile to run (default loadtests/locustfile.py)")
    parser.add_argument(
        "--workers",
        type=_non_negative_int,
        default=0,
        help="run a Locust master and this many local worker processes on loopback (default 0: one process)",
    )
    parser.add_argument(
        "--proba",
        choices=tuple(PROBA_CHOICES),
        default="auto",
        help="run the predict_proba users: auto (if the model has predict_proba), on, off (default auto)",
    )
    parser.add_argument("--batch-sizes", help="rows per request, comma-separated (default 1,10,100)")
    parser.add_argument(
        "--wait", help="seconds each user waits between requests, MIN,MAX (default 0.05,0.25; 0 for no pause)"
    )
    parser.add_argument(
        "--invalid-share", type=float, help="share of invalid requests that must get a 4xx (default 0.05)"
    )
    saturation = parser.add_argument_group("saturation finder")
    saturation.add_argument(
        "--find-saturation",
        action="store_true",
        help="step the load up until p95 crosses its SLO and print the highest req/s held within it",
    )
    saturation.add_argument("--step-users", type=_positive_int, default=2, help="users added per step (2)")
    saturation.add_argument("--step-time", default="10s", help="length of each step (default 10s)")
    saturation.add_argument("--max-users", type=_positive_int, default=50, help="stop at this many users (50)")
    saturation.add_argument(
        "--max-time", default="5m", help="stop the search after this long (default 5m); --run-time is ignored"
    )
    parser.set_defaults(handler=run)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return value


def _seconds(option: str, text: str) -> int:
    from diabetes_loadtest.launch import parse_duration

    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise CommandError(f"{option}: {exc}") from None
    if seconds < 1:
        raise CommandError(f"{option} must be at least 1s")
    return seconds


def _locust_env(args: argparse.Namespace) -> dict[str, str]:
    """The locustfile's settings, passed to every Locust process through its environment."""
    env = {"DIABETES_LOADTEST_PROBA": PROBA_CHOICES[args.proba]}
    key = args.key if args.key is not None else os.environ.get("DIABETES_API_KEY")
    if key:
        env["DIABETES_API_KEY"] = key
    if args.batch_sizes is not None:
        env["DIABETES_LOADTEST_BATCH_SIZES"] = args.batch_sizes
    if args.wait is not None:
        env["DIABETES_LOADTEST_WAIT"] = args.wait
    if args.invalid_share is not None:
        env["DIABETES_LOADTEST_INVALID_SHARE"] = str(args.invalid_share)
    return env


def run(args: argparse.Namespace) -> int:
    """Run the load, print the summary and one line per SLO; 1 when an SLO is missed."""
    from diabetes_loadtest.launch import (
        DEFAULT_REPORT_DIR,
        DEFAULT_SLO_FILE,
        LOCUSTFILE,
        SATURATION_LOCUSTFILE,
        LaunchError,
        LocustRun,
    )
    from diabetes_loadtest.preflight import PreflightError, check_keys
    from diabetes_loadtest.settings import Settings, SettingsError
    from diabetes_loadtest.slo import SloError, check_answers, evaluate, load_slos

    if importlib.util.find_spec("locust") is None:  # `make run` installs no load-test tooling
        raise CommandError("Locust is not installed here: run `make install` (or pip install -e '.[loadtest]')")
    slo_file = args.slo or DEFAULT_SLO_FILE
    try:
        slos = load_slos(slo_file)
    except SloError as exc:
        raise CommandError(str(exc)) from None
    locustfile = args.locustfile or LOCUSTFILE
    if not locustfile.is_file():
        raise CommandError(f"no locustfile at {locustfile}")
    if not args.host.startswith(("http://", "https://")):
        raise CommandError(f"--host must be an http:// or https:// URL, got {args.host!r}")

    output_dir: Path = args.output_dir or DEFAULT_REPORT_DIR
    env = _locust_env(args)
    try:
        settings = Settings.from_env({**os.environ, **env})
    except SettingsError as exc:
        raise CommandError(str(exc)) from None
    files = [locustfile]
    max_seconds = 0
    saturation_json = output_dir / "saturation.json"
    workers_json = output_dir / "workers.json"
    if args.find_saturation:
        p95 = next((slo.target for slo in slos if slo.kind.name == "p95_ms"), None)
        if p95 is None:
            raise CommandError(f"--find-saturation needs a p95_ms SLO in {slo_file}")
        failure_ratio = next((slo.target for slo in slos if slo.kind.name == "failure_ratio"), 0.01)
        max_seconds = _seconds("--max-time", args.max_time)
        files.append(SATURATION_LOCUSTFILE)
        env |= {
            "DIABETES_SATURATION_P95_MS": str(p95),
            "DIABETES_SATURATION_MAX_FAILURE_RATIO": str(failure_ratio),
            "DIABETES_SATURATION_STEP_USERS": str(args.step_users),
            "DIABETES_SATURATION_STEP_SECONDS": str(_seconds("--step-time", args.step_time)),
            "DIABETES_SATURATION_MAX_USERS": str(args.max_users),
            "DIABETES_SATURATION_MAX_SECONDS": str(max_seconds),
            "DIABETES_SATURATION_RESULT": str(saturation_json.resolve()),
        }
    if args.workers:
        env["DIABETES_LOADTEST_WORKER_REPORT"] = str(workers_json.resolve())

    locust = LocustRun(
        host=args.host,
        output_dir=output_dir,
        locustfiles=files,
        users=args.users,
        spawn_rate=args.spawn_rate,
        run_seconds=None if args.find_saturation else _seconds("--run-time", args.run_time),
        workers=args.workers,
        env=env,
    )
    # Results of an earlier run in the same folder must not pass for this one's.
    for stale in (locust.stats_csv, locust.failures_csv, locust.html_report, saturation_json, workers_json):
        stale.unlink(missing_ok=True)
    try:
        print(check_keys(args.host, settings.api_key).line(), flush=True)
    except PreflightError as exc:
        raise CommandError(str(exc)) from None
    length = f"up to {max_seconds} s" if args.find_saturation else f"{locust.run_seconds} s"
    print(f"loadtest: {args.users} users against {args.host} for {length} (reports: {output_dir})", flush=True)
    try:
        locust.run(max_seconds=max_seconds, on_tick=lambda elapsed: _print_progress(locust, elapsed))
        verdicts = evaluate(slos, locust.stats_csv)
        checks = check_answers(locust.failures_csv)
    except (LaunchError, SloError) as exc:
        raise CommandError(str(exc)) from None

    _print_summary(locust)
    if args.workers:
        _print_workers(workers_json)
    if args.find_saturation:
        return _report_saturation(saturation_json)
    for verdict in verdicts:
        print(verdict.line())
    print(checks.line())
    missed = [verdict.slo.kind.name for verdict in verdicts if not verdict.passed]
    reasons = [f"{len(missed)} of {len(verdicts)} SLOs missed: {', '.join(missed)}"] if missed else []
    if not checks.passed:
        reasons.append(f"{checks.wrong} wrong answers ({checks.commonest})")
    if reasons:
        raise CommandError("; ".join(reasons))
    print(f"loadtest: all {len(verdicts)} SLOs met, no wrong answer")
    return 0


def _print_progress(locust: LocustRun, elapsed: float) -> None:
    """`loadtest: 10 s of 30 s, 612 requests, 0 failures, 61.2 req/s` (counts once Locust flushed them)."""
    from diabetes_loadtest.slo import SloError, aggregated_row

    total = f" of {locust.run_seconds} s" if locust.run_seconds is not None else ""
    line = f"loadtest: {elapsed:.0f} s{total}"
    try:
        row = aggregated_row(locust.stats_csv)
        line += f", {row['Request Count']} requests, {row['Failure Count']} failures, "
        line += f"{float(row['Requests/s']):.1f} req/s"
    except (SloError, KeyError, ValueError):
        pass  # Locust has not flushed its statistics yet
    print(line, flush=True)


def _print_summary(locust: LocustRun) -> None:
    from diabetes_loadtest.slo import aggregated_row

    row = aggregated_row(locust.stats_csv)
    print(
        f"locust: {row['Request Count']} requests, {row['Failure Count']} failures, "
        f"{float(row['Requests/s']):.1f} req/s, p50 {row['50%']} ms, p95 {row['95%']} ms, "
        f"p99 {row['99%']} ms, max {float(row['Max Response Time']):.0f} ms"
    )
    print(f"report: {locust.html_report}  CSV: {locust.stats_csv}")
    try:
        with locust.failures_csv.open(newline="") as handle:
            failures = sorted(csv.DictReader(handle), key=lambda r: -int(r["Occurrences"]))
    except OSError:
        failures = []
    for failure in failures[:MAX_FAILURE_LINES]:
        print(f"failure: {failure['Name']}: {failure['Error']} (x{failure['Occurrences']})")


def _print_workers(workers_json: Path) -> None:
    try:
        per_worker = json.loads(workers_json.read_text())
    except (OSError, ValueError):
        raise CommandError(f"the master wrote no per-worker counts to {workers_json}") from None
    counts = ", ".join(str(n) for n in per_worker.values())
    print(f"workers: {len(per_worker)} reported, requests per worker: {counts}")


def _report_saturation(result_json: Path) -> int:
    from diabetes_loadtest.saturation import SaturationResult, Step

    try:
        doc = json.loads(result_json.read_text())
    except (OSError, ValueError):
        raise CommandError(f"the saturation finder wrote no result to {result_json}") from None
    result = SaturationResult(
        p95_target_ms=doc["p95_target_ms"],
        best=Step(**doc["best"]) if doc["best"] else None,
        stopped_because=doc["stopped_because"],
        steps=[Step(**step) for step in doc["steps"]],
    )
    for step in result.steps:
        print(
            f"step: {step.users} users, {step.rps:.1f} req/s, p95 {step.p95_ms} ms, "
            f"{step.failures}/{step.requests} failed"
        )
    print(result.summary())
    if result.best is None:
        raise CommandError(f"no step held p95 <= {result.p95_target_ms:g} ms")
    return 0
