"""The real scoring service, started as `diabetes serve` on a free loopback port."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.processes import DIABETES, free_port, start, stop, wait_http


class ServiceProcess:
    """`with ServiceProcess("path/or/models:/uri") as svc: requests.post(svc.url + "/score", ...)`."""

    def __init__(
        self,
        model_uri: str,
        *,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        log: Path | None = None,
        workers: int = 1,
        ready_timeout: float = 60.0,
        grpc: bool = False,
    ) -> None:
        self.port = free_port()
        self.grpc_port = free_port() if grpc else 0  # off by default (tests/conftest.py)
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        self.url = f"http://127.0.0.1:{self.port}"
        self.model_uri = model_uri
        self.env = env or {}
        self.args = args or []
        self.log = log
        self.workers = workers
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None

    def start(self) -> ServiceProcess:
        cmd = [
            DIABETES,
            "serve",
            "--model-uri",
            self.model_uri,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--grpc-port",
            str(self.grpc_port),
            *self.args,
        ]
        self.proc = start(cmd, env=self.env, log=self.log)
        try:
            wait_http(self.url + "/health/ready", timeout=self.ready_timeout, proc=self.proc)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> int | None:
        return stop(self.proc) if self.proc else None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log and self.log.exists() else ""

    def __enter__(self) -> ServiceProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
