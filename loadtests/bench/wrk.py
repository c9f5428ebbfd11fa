"""One wrk run: a fixed POST body at a fixed number of connections, summarised exactly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

LUA_SCRIPT = Path(__file__).with_name("post.lua")
RESULT_PREFIX = "BENCH_RESULT "


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed no summary."""


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    status_errors: int  # answers with a status over 399
    socket_errors: int  # connect, read, write and timeout errors
    p50_ms: float
    p99_ms: float

    @property
    def req_per_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def errors(self) -> int:
        return self.status_errors + self.socket_errors


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if not found:
        raise WrkError("wrk is not installed (Debian package 'wrk': make system-deps)")
    return found


def run_wrk(
    url: str,
    body_file: Path,
    *,
    connections: int,
    threads: int,
    seconds: float,
    timeout: float,
    headers: tuple[tuple[str, str], ...] = (),
    delay_ms: int | None = None,
) -> WrkResult:
    """POST `body_file` to `url` for `seconds` over `connections` keep-alive connections, with `headers`
    besides Content-Type: application/json; `delay_ms`: each connection waits so long between requests
    (a paced load below saturation)."""
    cmd = [
        wrk_binary(),
        f"--threads={max(1, min(threads, connections))}",
        f"--connections={connections}",
        f"--duration={max(1, round(seconds))}s",
        f"--timeout={max(1, round(timeout))}s",
        f"--script={LUA_SCRIPT}",
        url,
    ]
    extra = "\n".join(f"{name}: {value}" for name, value in headers)
    env = {**os.environ, "BENCH_BODY_FILE": str(body_file), "BENCH_HEADERS": extra}
    if delay_ms is not None:
        env["BENCH_DELAY_MS"] = str(delay_ms)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + timeout + 30, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise WrkError(f"wrk failed on {url}: {detail[-1] if detail else done.returncode}")
    raw = json.loads(lines[-1][len(RESULT_PREFIX) :])
    return WrkResult(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        status_errors=raw["status"],
        socket_errors=raw["connect"] + raw["read"] + raw["write"] + raw["timeout"],
        p50_ms=raw["p50_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
    )
