"""A real `mlflow server` on loopback: its own SQLite backend and artifact folder, a free port.

with MlflowServer(tmp_path) as server:
    subprocess.run([DIABETES, "train", "--tracking-uri", server.uri])
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.processes import BIN, free_port, start, stop, wait_http

MLFLOW = str(BIN / "mlflow")


class MlflowServer:
    """`mlflow server` started in `folder` (backend `mlflow.db`, artifacts `artifacts/`, log `server.log`)."""

    def __init__(
        self,
        folder: Path,
        *,
        ready_timeout: float = 180.0,
        env: dict[str, str] | None = None,
        mlflow: str = MLFLOW,
    ) -> None:
        self.folder = Path(folder)
        self.extra_env = env or {}
        self.mlflow = mlflow  # another environment's `mlflow` (the tests that build one of their own)
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.backend_uri = f"sqlite:///{self.folder / 'mlflow.db'}"
        self.artifacts = self.folder / "artifacts"
        self.log = self.folder / "server.log"
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None

    def start(self) -> MlflowServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        cmd = [
            self.mlflow,
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--backend-store-uri",
            self.backend_uri,
            "--artifacts-destination",
            str(self.artifacts),
        ]
        # Its working directory is its folder: nothing it writes by default lands in the repo.
        env = {"MLFLOW_DISABLE_TELEMETRY": "true", **self.extra_env}
        self.proc = start(cmd, env=env, cwd=self.folder, log=self.log)
        try:
            wait_http(self.uri + "/health", timeout=self.ready_timeout, proc=self.proc)
        except Exception as exc:
            self.stop()
            raise RuntimeError(f"mlflow server did not start: {exc}\n{self.output()[-3000:]}") from exc
        return self

    def stop(self) -> int | None:
        return stop(self.proc) if self.proc else None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
