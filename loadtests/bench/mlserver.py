"""Seldon MLServer with its scikit-learn runtime, the Open Inference Protocol (V2) peer of the bench.

MLServer 1.7.1 pins its own dependencies, so it runs from a virtualenv of its own, built once under
the user's cache folder (`$XDG_CACHE_HOME/diabetes-bench`, else `~/.cache/diabetes-bench`) and
reused. uvloop is held at 0.21 or older there: newer uvloop crashes MLServer's parallel inference
workers. scikit-learn and joblib are pinned to this environment's versions, so that the same fitted
estimator, dumped here with joblib, loads there unchanged.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from loadtests.bench.data import v2_body
from loadtests.bench.processes import free_port
from loadtests.bench.servers import Server
from loadtests.bench.store import clean_env

MLSERVER = "1.7.1"


def _requirements() -> list[str]:
    return [
        f"mlserver=={MLSERVER}",
        f"mlserver-sklearn=={MLSERVER}",
        "uvloop<=0.21",
        f"scikit-learn=={version('scikit-learn')}",
        f"joblib=={version('joblib')}",
    ]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "diabetes-bench"


def virtualenv(progress) -> Path:
    """MLServer's own virtualenv, created (or completed) on first use; its `bin` folder."""
    venv = cache_dir() / f"mlserver-{MLSERVER}"
    marker = venv / "bench-requirements.txt"
    wanted = "\n".join(_requirements())
    if marker.is_file() and marker.read_text() == wanted:
        return venv / "bin"
    progress(f"installing MLServer {MLSERVER} into its own virtualenv at {venv} (once; a few minutes)")
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", *_requirements()],
        check=True,
        timeout=1800,
        env=clean_env(),
    )
    marker.write_text(wanted)
    return venv / "bin"


def model_repository(folder: Path, estimator_file: Path, model_name: str, model_version: str, workers: int) -> Path:
    """MLServer's settings and one model folder (model-settings.json and the joblib file) under `folder`."""
    model = folder / model_name
    model.mkdir(parents=True, exist_ok=True)
    (model / "model.joblib").write_bytes(estimator_file.read_bytes())
    settings = {
        "name": model_name,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": "./model.joblib", "version": model_version},
    }
    (model / "model-settings.json").write_text(json.dumps(settings))
    server = {
        # As many inference processes as our workers, on loopback, every port free.
        "parallel_workers": workers,
        "host": "127.0.0.1",
        "grpc_port": free_port(),
        "metrics_port": free_port(),
        "debug": False,
    }
    (folder / "settings.json").write_text(json.dumps(server))
    return folder


DUMP = """
import sys, joblib
from diabetes_service.model.loading import load_model
joblib.dump(load_model(sys.argv[1]).estimator, sys.argv[2])
"""


def dump_estimator(model_folder: Path, target: Path) -> Path:
    """The registered model's estimator (loaded from its MLflow folder by our own loader), as joblib."""
    subprocess.run([sys.executable, "-c", DUMP, str(model_folder), str(target)], check=True, timeout=300)
    return target


def server(bin_dir: Path, repository: Path, model_name: str) -> Server:
    return Server(
        key="mlserver",
        label=f"MLServer {MLSERVER} (sklearn runtime)",
        # The port is known only at start: MLServer reads it from its environment.
        cmd=lambda port: ["env", f"MLSERVER_HTTP_PORT={port}", str(bin_dir / "mlserver"), "start", str(repository)],
        env=clean_env(PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"),
        ready_path="/v2/health/ready",
        score_path=f"/v2/models/{model_name}/infer",
        body=v2_body,
    )
