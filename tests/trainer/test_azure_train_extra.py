"""`pip install '.[azure-train]'`: one install line, one consistent environment, the trainer's whole path.

Microsoft's azureml-mlflow plugin pins mlflow-skinny<=3.15.0; the extra holds MLflow to the same
release. A throwaway virtualenv gets the extra (pip's cache is left on, so a second run downloads
little; about two minutes on a cold cache here), then the trainer runs in it against the embedded
store and a real `mlflow server` of that MLflow, and against a workspace's `azureml://` URI through
the plugin, up to the network call: `network_guard.py` lets nothing leave loopback and records what
the plugin would have sent.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.mlflow_server import MlflowServer
from tests.support.processes import REPO
from tests.trainer.helpers import assert_one_line_failure, train

PLUGIN_PIN = (3, 15, 0)  # azureml-mlflow's mlflow-skinny<=3.15.0
WORKSPACE_PATH = (
    "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg"
    "/providers/Microsoft.MachineLearningServices/workspaces/ws"
)
WORKSPACE_URI = "azureml://westeurope.api.azureml.ms/mlflow/v1.0" + WORKSPACE_PATH
CONFIG = {"subscription_id": "00000000-0000-0000-0000-000000000000", "resource_group": "rg", "workspace_name": "ws"}

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Env:
    root: Path

    @property
    def python(self) -> str:
        return str(self.root / "bin" / "python")

    @property
    def diabetes(self) -> str:
        return str(self.root / "bin" / "diabetes")

    @property
    def mlflow(self) -> str:
        return str(self.root / "bin" / "mlflow")

    def run(self, script: str, **env: str) -> str:
        done = subprocess.run([self.python, "-c", script], capture_output=True, text=True, timeout=300, env=env or None)
        assert done.returncode == 0, done.stderr[-3000:]
        return done.stdout


@pytest.fixture(scope="module")
def azure_train(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    reuse = os.environ.get("DIABETES_AZURE_TRAIN_VENV")
    if reuse:  # a developer's environment built once with the extra (CI always builds its own)
        yield Env(Path(reuse))
        return
    root = tmp_path_factory.mktemp("azure-train") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=120)
    installed = subprocess.run(
        [str(root / "bin" / "python"), "-m", "pip", "install", "--quiet", ".[azure-train]"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if installed.returncode != 0 and "No matching distribution" in installed.stderr:
        pytest.skip("package index unreachable")
    assert installed.returncode == 0, installed.stderr[-3000:]
    yield Env(root)
    shutil.rmtree(root, ignore_errors=True)


def test_one_mlflow_at_the_version_the_plugin_allows(azure_train: Env) -> None:
    check = subprocess.run([azure_train.python, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    versions = json.loads(
        azure_train.run(
            "import json, importlib.metadata as m, mlflow, azureml.mlflow, azureml.core; print(json.dumps("
            "{d: m.version(d) for d in ('mlflow', 'mlflow-skinny', 'mlflow-tracing', 'azureml-mlflow')}"
            " | {'imported': mlflow.__version__}))"
        )
    )
    # mlflow, mlflow-skinny and mlflow-tracing are one release: no two MLflows over one package.
    assert versions["mlflow"] == versions["mlflow-skinny"] == versions["mlflow-tracing"] == versions["imported"]
    assert (3, 0, 0) <= tuple(int(p) for p in versions["mlflow"].split(".")[:3]) <= PLUGIN_PIN


def test_trainer_into_the_embedded_store(azure_train: Env, tmp_path: Path) -> None:
    outcome = train("--json", home=tmp_path, program=azure_train.diabetes)
    assert outcome.returncode == 0, outcome.stderr
    result = outcome.json()
    assert (result["model_version"], result["champion"]) == (1, True)
    predictions = azure_train.run(
        "import mlflow, sklearn.datasets as d; mlflow.set_tracking_uri('sqlite:///"
        + str(tmp_path / "mlruns.db")
        + "'); m = mlflow.sklearn.load_model('models:/diabetes_model@champion');"
        " print(len(m.predict(d.load_diabetes().data[:3])))"
    )
    assert predictions.strip() == "3"


def test_trainer_against_that_mlflows_server(azure_train: Env, tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    with MlflowServer(tmp_path / "server", mlflow=azure_train.mlflow) as server:
        outcome = train("--json", "--tracking-uri", server.uri, home=tmp_path / "home", program=azure_train.diabetes)
        assert outcome.returncode == 0, outcome.stderr
        assert outcome.json()["model_version"] == 1
        champion = azure_train.run(
            f"from mlflow import MlflowClient; c = MlflowClient('{server.uri}');"
            " v = c.get_model_version_by_alias('diabetes_model', 'champion');"
            " print(v.version, sorted(a.path for a in c.list_artifacts(v.run_id)))"
        )
    assert champion.startswith("1 ")
    assert "model.pkl" in champion
    assert not (tmp_path / "home" / "mlruns.db").exists()


def _guard(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / "guard"
    folder.mkdir()
    shutil.copy(Path(__file__).with_name("network_guard.py"), folder / "sitecustomize.py")
    return folder, tmp_path / "network.jsonl"


def _recorded(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _token() -> str:
    """A JWT-shaped token (the plugin reads its expiry); nothing ever checks its signature here."""

    def part(doc: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()

    return part({"alg": "HS256", "typ": "JWT"}) + "." + part({"exp": 4_102_444_800}) + ".c2lnbmF0dXJl"


def test_plugin_turns_the_workspace_uri_into_its_mlflow_api(azure_train: Env, tmp_path: Path) -> None:
    """As an Azure ML job runs it (MLFLOW_TRACKING_URI and a token in its environment): the trainer's
    first call goes to the workspace's MLflow REST API, with the token, and stops at name resolution."""
    guard, log = _guard(tmp_path)
    outcome = train(
        "--json",
        home=tmp_path,
        program=azure_train.diabetes,
        PYTHONPATH=str(guard),
        NETWORK_GUARD_LOG=str(log),
        MLFLOW_TRACKING_URI=WORKSPACE_URI,
        MLFLOW_TRACKING_TOKEN=_token(),
        MLFLOW_RUN_ID="0123456789abcdef0123456789abcdef",
        MLFLOW_EXPERIMENT_NAME="experiment_with_mlflow",
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
    )
    line = assert_one_line_failure(outcome, "experiment_with_mlflow", WORKSPACE_URI)
    assert "install the azureml-mlflow plugin" not in line  # it is installed: the real reason is given
    requests_sent = [r for r in _recorded(log) if "url" in r]
    api = [r for r in requests_sent if r["url"].startswith("https://westeurope.api.azureml.ms/")]
    assert api, requests_sent
    assert api[0]["url"] == (
        "https://westeurope.api.azureml.ms/mlflow/v2.0"
        + WORKSPACE_PATH
        + "/api/2.0/mlflow/experiments/get-by-name?experiment_name=experiment_with_mlflow"
    )
    assert api[0]["authorized"] is True
    # Nothing left loopback: every destination was refused at resolution.
    assert {"resolve": "westeurope.api.azureml.ms"} in _recorded(log)
    assert not any("connect" in r for r in _recorded(log))
    assert not (tmp_path / "mlruns.db").exists()


def test_workspace_config_reaches_the_plugin_and_azure_login(azure_train: Env, tmp_path: Path) -> None:
    """`--workspace-config`: the workspace's azureml:// URI goes to the plugin, which asks Azure's
    credential chain for a token; with nothing reachable that fails, in one line, before any MLflow call."""
    guard, log = _guard(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))
    outcome = train(
        "--json",
        "--workspace-config",
        "config.json",
        home=tmp_path,
        program=azure_train.diabetes,
        PYTHONPATH=str(guard),
        NETWORK_GUARD_LOG=str(log),
        NETWORK_GUARD_WORKSPACE_URI=WORKSPACE_URI,
        MLFLOW_HTTP_REQUEST_MAX_RETRIES="0",
    )
    line = assert_one_line_failure(outcome, WORKSPACE_URI, "ClientAuthenticationError")
    assert "install the azureml-mlflow plugin" not in line
    recorded = _recorded(log)
    assert recorded[0] == {"workspace_from_config": "config.json"}
    # The managed-identity endpoint was tried, and refused here before any packet left.
    assert {"resolve": "169.254.169.254"} in recorded
    assert not any("connect" in r for r in recorded)
    assert not any(r.get("url", "").startswith("https://westeurope.api.azureml.ms/") for r in recorded)
