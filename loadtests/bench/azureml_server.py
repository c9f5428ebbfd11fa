"""The Azure ML inference server (`azmlinfsrv`, azureml-inference-server-http), the start-up bench's peer.

What Azure ML runs in its managed online endpoints: a Flask app under gunicorn that imports the
user's scoring script and calls its `init()` (load the model) and `run()` (score). Its packages pin
their own dependencies, so it runs from a virtualenv of its own, built once under the user's cache
folder (`$XDG_CACHE_HOME/diabetes-bench`, else `~/.cache/diabetes-bench`, as MLServer's) and reused.
scikit-learn and joblib are pinned to this environment's versions, so that the same fitted
estimator, dumped here with joblib (as an Azure ML scoring script loads it), loads there unchanged.
"""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from loadtests.bench.mlserver import cache_dir
from loadtests.bench.processes import free_port
from loadtests.bench.store import clean_env

AZMLINFSRV = "1.5.1"

# The scoring script an Azure ML user writes for a scikit-learn model: joblib in init(), predict in run().
SCORE = """
import json
import os

import joblib
import numpy as np

model = None


def init():
    global model
    model = joblib.load(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.joblib"))


def run(raw_data):
    return model.predict(np.asarray(json.loads(raw_data)["data"], dtype=float)).tolist()
"""


def _requirements() -> list[str]:
    return [
        f"azureml-inference-server-http=={AZMLINFSRV}",
        f"scikit-learn=={version('scikit-learn')}",
        f"joblib=={version('joblib')}",
    ]


def virtualenv(progress) -> Path:
    """The inference server's own virtualenv, created (or completed) on first use; its `bin` folder."""
    venv = cache_dir() / f"azureml-inference-server-{AZMLINFSRV}"
    marker = venv / "bench-requirements.txt"
    wanted = "\n".join(_requirements())
    if marker.is_file() and marker.read_text() == wanted:
        return venv / "bin"
    progress(f"installing azureml-inference-server-http {AZMLINFSRV} into its own virtualenv at {venv} (once)")
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


def model_dir(folder: Path, estimator_file: Path) -> Path:
    """`folder` with the scoring script and the model (`AZUREML_MODEL_DIR`) as Azure ML lays them out."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "score.py").write_text(SCORE)
    (folder / "model.joblib").write_bytes(estimator_file.read_bytes())
    return folder


def command(bin_dir: Path, folder: Path, port: int, workers: int) -> tuple[list[str], dict[str, str]]:
    """`azmlinfsrv` on `port` with as many workers as ours, and its environment. Its separate health
    port (default 5000) goes on a free port too."""
    cmd = [
        str(bin_dir / "azmlinfsrv"),
        "--entry_script",
        str(folder / "score.py"),
        "--model_dir",
        str(folder),
        "--port",
        str(port),
        "--health_port",
        str(free_port()),
        "--worker_count",
        str(workers),
    ]
    return cmd, clean_env(PATH=f"{bin_dir}{os.pathsep}{clean_env()['PATH']}")


if __name__ == "__main__":  # build the virtualenv ahead of a run
    print(virtualenv(lambda message: print(message, file=sys.stderr)))
