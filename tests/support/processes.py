"""Real processes for the tests: free loopback ports, waiting on HTTP, stopping cleanly."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DIABETES = str(BIN / "diabetes")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, *, timeout: float = 60.0, status: int = 200, proc: subprocess.Popen | None = None) -> None:
    """Poll `url` until it answers `status`; fail early if `proc` dies meanwhile."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            answer = requests.get(url, timeout=2)
            if answer.status_code == status:
                return
            last = answer.status_code
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer {status} within {timeout}s (last: {last})")


def stop(proc: subprocess.Popen, *, timeout: float = 20.0) -> int:
    """SIGTERM the process group, then SIGKILL if it has not gone within `timeout`."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    return proc.returncode


def start(
    args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None, log: Path | None = None
) -> subprocess.Popen:
    """Start a process in its own group (so `stop` reaches its children), output to `log`."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        args,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
