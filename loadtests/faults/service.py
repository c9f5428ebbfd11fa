"""`diabetes serve` under test: started on a free loopback port, its workers found, signalled, timed.

The supervisor is started in a process group of its own, so that whatever happens to it, `close()`
leaves nothing behind (workers that outlived it included; stopped ones are continued first).
Standard output (the access log, one line per request) goes nowhere: a soak would fill the disk.
Standard error (start-up, restarts, crashes) goes to `log`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests

from loadtests.bench.processes import free_port
from loadtests.faults.models import SERVICE_ENV

DIABETES = str(Path(sys.executable).parent / "diabetes")
POLL_SECONDS = 0.01


class Service:
    def __init__(
        self, model: Path, log: Path, *, workers: int = 2, env: dict[str, str] | None = None, api_key: str = ""
    ) -> None:
        self.model = model
        self.log = log
        self.workers = workers
        self.env = {**SERVICE_ENV, **(env or {})}
        self.api_key = api_key
        if api_key:
            self.env["DIABETES_API_KEYS"] = api_key
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> Service:
        cmd = [DIABETES, "serve", "--model-uri", str(self.model), "--port", str(self.port)]
        # The cases' models are pickles this run has just written (models.py): trusted.
        cmd += ["--workers", str(self.workers), "--allow-pickle"]
        cmd += ["--grpc-port", "0"]  # HTTP faults only; gRPC's default port is fixed and may be taken
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(
                cmd,
                env={**os.environ, **self.env},
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )
        self.wait_ready(timeout)
        self.wait_workers(self.workers, timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        """Until readiness answers 200 (every worker warm); raise if the service dies or takes too long."""
        deadline = time.monotonic() + timeout
        while True:
            if self.exit_code() is not None:
                raise RuntimeError(f"diabetes serve exited with {self.exit_code()}: {self.log_tail()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.url + "/health/ready", timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"diabetes serve not ready within {timeout:g} s: {self.log_tail()}")
            time.sleep(0.05)

    # -- the process tree ------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def worker_pids(self) -> set[int]:
        """The supervisor's live children (zombies left out): its workers, once the model is prepared."""
        try:
            children = psutil.Process(self.pid).children()
        except psutil.NoSuchProcess:
            return set()
        live = set()
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                if child.status() != psutil.STATUS_ZOMBIE:
                    live.add(child.pid)
        return live

    def wait_workers(self, count: int, timeout: float, *, without: set[int] = frozenset()) -> set[int]:  # type: ignore[assignment]
        """Until `count` live workers, none of them in `without`, are running; their pids."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.worker_pids()
            if len(pids) == count and not pids & without:
                return pids
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(pids - without)} new workers of {count} after {timeout:g} s: {self.log_tail()}"
                )
            time.sleep(POLL_SECONDS)

    def tree_rss_bytes(self) -> int:
        """Resident memory of the supervisor and every descendant, summed."""
        try:
            root = psutil.Process(self.pid)
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0
        total = 0
        for proc in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += proc.memory_info().rss
        return total

    # -- signals and exit ------------------------------------------------------------------------

    def signal(self, signum: int) -> float:
        """Send `signum` to the supervisor alone (as Kubernetes and `docker stop` do); when it was sent."""
        os.kill(self.pid, signum)
        return time.monotonic()

    def signal_worker(self, pid: int, signum: int) -> float:
        """Send `signum` to one worker; when it was sent."""
        os.kill(pid, signum)
        return time.monotonic()

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def wait_exit(self, timeout: float) -> int | None:
        """The supervisor's exit status, or None if it is still running after `timeout` seconds."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        """Stop everything this service started: SIGTERM, then SIGKILL to the whole group."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGCONT)  # a stopped worker cannot act on SIGTERM
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=15)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "no output"
        kept = [line for line in text.splitlines() if line.strip()]
        return " | ".join(kept[-lines:])[-1500:] or "no output"

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
