"""The benchmark's own embedded store: the worked example trained and registered by `diabetes train`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent
# Settings of the caller's shell must not send the benchmark to another store or service set-up.
FOREIGN_ENV_PREFIXES = ("DIABETES_", "MLFLOW_")


@dataclass(frozen=True)
class Store:
    home: Path
    model_name: str
    model_version: int

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.home / 'mlruns.db'}"

    @property
    def model_uri(self) -> str:
        return f"models:/{self.model_name}/{self.model_version}"


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without the caller's DIABETES_* / MLFLOW_* settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_ENV_PREFIXES)}
    # `mlflow models serve` runs `uvicorn` through a shell: the virtualenv's scripts must be on PATH
    # even when the benchmark is started as .venv/bin/python without activating it.
    path = os.pathsep.join([str(BIN), env.get("PATH", "")])
    return {**env, "PATH": path, "MLFLOW_DISABLE_TELEMETRY": "true", **extra}


def train(home: Path) -> Store:
    """Train and register the worked example into `home`'s embedded store with `diabetes train --json`."""
    done = subprocess.run(
        [str(BIN / "diabetes"), "train", "--json"],
        env=clean_env(DIABETES_HOME=str(home)),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"diabetes train failed: {done.stderr.strip()[-500:]}")
    result = json.loads(done.stdout)
    return Store(home, result["model_name"], int(result["model_version"]))


DOWNLOAD = """
import sys, mlflow
mlflow.set_tracking_uri(sys.argv[1])
print(mlflow.artifacts.download_artifacts(artifact_uri=sys.argv[2], dst_path=sys.argv[3]))
"""


def download_model_folder(store: Store, target: Path) -> Path:
    """The registered version's MLflow model folder, copied to `target` once (in a child: MLflow is heavy)."""
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", DOWNLOAD, store.tracking_uri, store.model_uri, str(target)],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"downloading {store.model_uri} failed: {done.stderr.strip()[-500:]}")
    return Path(done.stdout.strip().splitlines()[-1])
