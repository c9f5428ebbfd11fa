"""A real `mlflow models serve` on loopback, scoring one registered model of an embedded store."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.support.processes import BIN, free_port, start, stop, wait_http


class MlflowModelServer:
    """`with MlflowModelServer("models:/name/1", tracking_uri, log) as served: requests.post(served.url + ...)`."""

    def __init__(self, model_uri: str, tracking_uri: str, log: Path, *, ready_timeout: float = 180.0) -> None:
        self.model_uri = model_uri
        self.tracking_uri = tracking_uri
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.ready_timeout = ready_timeout
        self.proc: subprocess.Popen | None = None

    def start(self) -> MlflowModelServer:
        cmd = [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            self.model_uri,
            "--env-manager",
            "local",
            "-w",
            "1",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
        ]
        # MLflow 3 loads pickle-based models only when told that is acceptable (the trainer's are skops).
        env = {
            "MLFLOW_TRACKING_URI": self.tracking_uri,
            "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",
            # It starts `uvicorn` by name: the virtualenv's, as `--env-manager local` means.
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        self.proc = start(cmd, env=env, log=self.log)
        try:
            wait_http(self.url + "/ping", timeout=self.ready_timeout, proc=self.proc)
        except Exception:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self.proc:
            stop(self.proc)

    def __enter__(self) -> MlflowModelServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
