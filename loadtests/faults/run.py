"""Run the fault cases against `diabetes serve` on loopback and print their figures and verdicts.

Each case starts its own service (2 workers) on a free loopback port and stops it, whatever
happens. Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from loadtests.faults.cases import hang, kill, oversized, sigterm, slowloris, soak
from loadtests.faults.models import Models, save_models
from loadtests.faults.report import Report, render

CASES: dict[str, Callable[..., Report]] = {
    "kill": kill.run,
    "sigterm": sigterm.run_under_load,
    "sigterm-restart": sigterm.run_during_restart,
    "hang": hang.run,
    "slowloris": slowloris.run,
    "oversized": oversized.run,
    "soak": soak.run,
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.faults",
        description="Hurt `diabetes serve` on purpose (SIGKILL, SIGTERM, SIGSTOP, slow and oversized headers, "
        "a soak) on loopback, and check the reliability targets of issue 10.",
    )
    parser.add_argument(
        "--only", help=f"comma-separated cases to run (default: all): {', '.join(CASES)}", default=",".join(CASES)
    )
    parser.add_argument(
        "--soak-seconds", type=float, default=60.0, help="length of the soak (default 60; 600 for 10 min)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures and checks to this file")
    args = parser.parse_args(argv)
    args.cases = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = sorted(set(args.cases) - set(CASES))
    if unknown or not args.cases:
        parser.error(f"unknown case(s) {', '.join(unknown) or '(none given)'}: choose among {', '.join(CASES)}")
    if args.soak_seconds < 10:
        parser.error("--soak-seconds must be at least 10")
    return args


def progress(message: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_case(name: str, models: Models, workdir: Path, args: argparse.Namespace) -> Report:
    options = {"seconds": args.soak_seconds} if name == "soak" else {}
    folder = workdir / name
    folder.mkdir()
    return CASES[name](models, folder, **options)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    reports: list[Report] = []
    with tempfile.TemporaryDirectory(prefix="diabetes-faults-") as tmp:
        workdir = Path(tmp)
        models = save_models(workdir / "models")
        for name in args.cases:
            progress(f"{name}: running")
            started = time.monotonic()
            report = run_case(name, models, workdir, args)
            reports.append(report)
            progress(f"{name}: {'PASS' if report.passed else 'FAIL'} in {time.monotonic() - started:.0f} s")
    print(render(reports))
    if args.json:
        args.json.write_text(json.dumps([asdict(report) for report in reports], indent=2))
    return 0 if all(report.passed for report in reports) else 1
