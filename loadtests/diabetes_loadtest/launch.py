"""Starting Locust for `diabetes loadtest`: one headless process, or a master and local workers.

Locust runs as its own processes (`python -m locust`), as a user would run it: the locustfile,
its options and its exit status are exactly those of the documented command lines. The API key
travels in the environment, never on a command line.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import diabetes_loadtest

LOADTESTS_DIR = Path(diabetes_loadtest.__file__).resolve().parent.parent
LOCUSTFILE = LOADTESTS_DIR / "locustfile.py"
SATURATION_LOCUSTFILE = LOADTESTS_DIR / "saturation.py"
DEFAULT_SLO_FILE = Path(diabetes_loadtest.__file__).resolve().with_name("slo.yaml")  # package data
DEFAULT_REPORT_DIR = LOADTESTS_DIR / "reports"  # git-ignored
CSV_PREFIX = "locust"
HTML_REPORT = "report.html"
# Beyond the run time: start-up (imports, the predict_proba probe), workers joining, shutdown.
GRACE_SECONDS = 90.0
WORKER_GRACE_SECONDS = 30.0
# How often a run reports progress: Locust rewrites its stats CSV every 1 s and flushes it every 10 s.
TICK_SECONDS = 5.0
_DURATION = re.compile(r"^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")


class LaunchError(RuntimeError):
    """Locust could not be started or did not finish cleanly."""


def parse_duration(text: str) -> int:
    """Seconds in a Locust duration: `90`, `45s`, `2m`, `1h30m`, `1m30s`."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    match = _DURATION.match(text)
    if not text or not match:
        raise ValueError(f"{text!r} is not a duration such as 30s, 2m or 1h30m")
    hours, minutes, seconds = (int(part or 0) for part in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def free_port() -> int:
    """A free TCP port on loopback, for the master's worker channel."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocustRun:
    """One bounded headless run's settings and where its files go."""

    host: str
    output_dir: Path
    locustfiles: list[Path]
    users: int
    spawn_rate: float
    run_seconds: int | None  # None: a shape decides when to stop
    workers: int = 0
    env: dict[str, str] = field(default_factory=dict)

    @property
    def stats_csv(self) -> Path:
        """Locust's per-request-name statistics, with the "Aggregated" row."""
        return self.output_dir / f"{CSV_PREFIX}_stats.csv"

    @property
    def failures_csv(self) -> Path:
        """Locust's failures, one row per (name, error)."""
        return self.output_dir / f"{CSV_PREFIX}_failures.csv"

    @property
    def html_report(self) -> Path:
        """Locust's HTML report."""
        return self.output_dir / HTML_REPORT

    def _base(self) -> list[str]:
        return [sys.executable, "-m", "locust", "-f", ",".join(str(path) for path in self.locustfiles)]

    def master_command(self, master_port: int | None = None) -> list[str]:
        """The headless (master) process: it owns the statistics and the reports."""
        cmd = [
            *self._base(),
            "--headless",
            "--host",
            self.host,
            "--csv",
            str(self.output_dir / CSV_PREFIX),
            "--html",
            str(self.html_report),
            "--only-summary",
            # The SLO gate judges failures; Locust's own exit code then only reports crashes.
            "--exit-code-on-error",
            "0",
        ]
        if self.run_seconds is not None:
            cmd += ["--users", str(self.users), "--spawn-rate", str(self.spawn_rate)]
            cmd += ["--run-time", f"{self.run_seconds}s"]
        if master_port is not None:
            cmd += ["--master", "--expect-workers", str(self.workers)]
            cmd += ["--master-bind-host", "127.0.0.1", "--master-bind-port", str(master_port)]
        return cmd

    def worker_command(self, master_port: int) -> list[str]:
        """One worker process, connecting to the master on loopback."""
        return [*self._base(), "--worker", "--master-host", "127.0.0.1", "--master-port", str(master_port)]

    def timeout(self, max_seconds: float) -> float:
        """How long to wait for the master before stopping it."""
        return (self.run_seconds if self.run_seconds is not None else max_seconds) + GRACE_SECONDS

    def run(
        self,
        max_seconds: float = 0.0,
        on_tick: Callable[[float], None] | None = None,
        tick_seconds: float = TICK_SECONDS,
    ) -> None:
        """Run Locust to the end; raise LaunchError when it crashed or overran its time.

        `on_tick(elapsed_seconds)` is called every `tick_seconds` while it runs, to show progress.
        """
        self.output_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        workers: list[subprocess.Popen] = []
        master_port = free_port() if self.workers else None
        code: int | None = None
        with open(self.output_dir / "locust.log", "wb") as log:
            master = _start(self.master_command(master_port), env, log)
            try:
                for i in range(self.workers):
                    assert master_port is not None
                    worker_log = self.output_dir / f"worker-{i + 1}.log"
                    with open(worker_log, "wb") as out:
                        workers.append(_start(self.worker_command(master_port), env, out))
                code = self._wait(master, self.timeout(max_seconds), on_tick, tick_seconds)
            finally:
                _stop(master, grace=0.0)
                # Workers quit when their master tells them; after a crash they would wait for it.
                for worker in workers:
                    _stop(worker, grace=WORKER_GRACE_SECONDS if code == 0 else 2.0)
        if code != 0:
            raise LaunchError(f"Locust exited with status {code}: {_last_line(self.output_dir / 'locust.log')}")

    def _wait(
        self, master: subprocess.Popen, timeout: float, on_tick: Callable[[float], None] | None, tick: float
    ) -> int:
        """The master's exit status, calling `on_tick` between waits; LaunchError past `timeout`."""
        started = time.monotonic()
        while True:
            elapsed = time.monotonic() - started
            try:
                return master.wait(timeout=max(0.0, min(tick, timeout - elapsed)))
            except subprocess.TimeoutExpired:
                elapsed = time.monotonic() - started
                if elapsed >= timeout:
                    raise LaunchError(
                        f"Locust did not finish within {timeout:.0f} s; stopped it "
                        f"(log: {self.output_dir / 'locust.log'})"
                    ) from None
                if on_tick is not None:
                    on_tick(elapsed)


def _start(cmd: list[str], env: dict[str, str], out: BinaryIO) -> subprocess.Popen:
    return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _stop(proc: subprocess.Popen, *, grace: float) -> None:
    """Give a process `grace` seconds to end on its own, then SIGTERM, then SIGKILL."""
    for sig, timeout in ((None, grace), (signal.SIGTERM, 20.0), (signal.SIGKILL, 10.0)):
        if sig is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout)
            return
        except subprocess.TimeoutExpired:
            continue


def _last_line(log: Path) -> str:
    """The last meaningful line of a log, for a one-line error."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"
