"""A server under test: started in its own process group, timed to ready, measured, stopped."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import psutil

POLL_SECONDS = 0.02
STOP_TIMEOUT_SECONDS = 20.0


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _status(port: int, path: str) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


class ServerProcess:
    """One server command on `port`; `ready_seconds` is from start to the first 200 on `ready_path`."""

    def __init__(
        self, name: str, cmd: list[str], *, port: int, ready_path: str, env: dict[str, str], log: Path, cwd: Path
    ) -> None:
        self.name = name
        self.cmd = cmd
        self.port = port
        self.ready_path = ready_path
        self.env = env
        self.log = log
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.ready_seconds: float | None = None
        self.scoring_seconds: float | None = None  # set by whoever checks that every worker scores

    def start(self, timeout: float) -> ServerProcess:
        """Start the command and wait until it is ready; raise (after stopping it) if it is not."""
        with open(self.log, "ab") as out:
            started = self.started_at = time.monotonic()
            self.proc = subprocess.Popen(
                self.cmd, env=self.env, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before ready: {self.log_tail()}")
            if _status(self.port, self.ready_path) == 200:
                self.ready_seconds = time.monotonic() - started
                return self
            time.sleep(POLL_SECONDS)
        self.stop()
        raise TimeoutError(f"{self.name} was not ready within {timeout:g}s: {self.log_tail()}")

    def wait_for_log_lines(self, pattern: str, count: int, timeout: float) -> None:
        """Until the server's output holds `count` lines matching `pattern` (e.g. one per warm worker)."""
        regex = re.compile(pattern, re.MULTILINE)
        deadline = time.monotonic() + timeout
        while len(regex.findall(self.log.read_text(errors="replace"))) < count:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: fewer than {count} workers warm after {timeout:g}s")
            time.sleep(POLL_SECONDS)

    def log_tail(self) -> str:
        """The last line of the server's output (the log lives in a temporary folder removed at the end)."""
        try:
            lines = [line for line in self.log.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            return "no output"
        return lines[-1][:300] if lines else "no output"

    def _tree(self) -> list[psutil.Process]:
        assert self.proc is not None
        try:
            root = psutil.Process(self.proc.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def tree_rss_mib(self) -> float:
        """Resident memory of the process and all its descendants, summed, in MiB."""
        total = 0
        for proc in self._tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += proc.memory_info().rss
        return total / 2**20

    def tree_cpu_seconds(self) -> CpuSnapshot:
        """User + system CPU time used so far by the process and each live descendant (by pid): a
        difference of two snapshots counts only the processes alive in both, plus the new ones. A sum
        over the tree would go down when a descendant exits in between: the preparation child, which
        verifies a first start's served arrays in the background, measured -15 µs per request."""
        times: dict[int, float] = {}
        for proc in self._tree():
            with contextlib.suppress(psutil.NoSuchProcess):
                used = proc.cpu_times()
                times[proc.pid] = used.user + used.system
        return CpuSnapshot(times)

    def stop(self) -> None:
        """SIGTERM the whole process group; SIGKILL it if it lingers."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        # Workers that outlived their parent are still in the group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


class CpuSnapshot(dict):
    """CPU seconds by pid at one moment; `later - earlier` is the CPU the tree used in between."""

    def __sub__(self, earlier: dict[int, float]) -> float:
        return sum(max(0.0, used - earlier.get(pid, 0.0)) for pid, used in self.items())
