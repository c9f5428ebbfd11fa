"""An Azure ML workspace as the store: everything up to the network call, with a stand-in workspace.

No workspace is reachable from here, and azureml-core (the `azure` extra) is not installed in the
development environment: a stand-in `azureml.core.Workspace` reads the same config.json and hands
out a tracking URI, and the tests check that the trainer checks the file, asks the workspace and
uses what it answers.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from diabetes_trainer.azure import azureml_workspace_loader, read_workspace_config, workspace_tracking_uri
from diabetes_trainer.errors import TrainerError
from tests.support.processes import REPO, free_port
from tests.trainer.helpers import assert_one_line_failure, mlflow_globals, store, train

VALID = {"subscription_id": "00000000-0000-0000-0000-000000000000", "resource_group": "rg", "workspace_name": "ws"}

FAKE_AZUREML_CORE = '''
"""Stand-in for azureml.core: records what the trainer asks of it."""
import json, os
from pathlib import Path


def _record(entry):
    with open(os.environ["FAKE_AZUREML_CALLS"], "a") as out:
        out.write(json.dumps(entry) + "\\n")


class Workspace:
    def __init__(self, config):
        self.config = config

    @classmethod
    def from_config(cls, path=None, **kwargs):
        config = json.loads(Path(path).read_text())
        _record({"call": "from_config", "path": path, "workspace_name": config["workspace_name"]})
        return cls(config)

    def get_mlflow_tracking_uri(self):
        _record({"call": "get_mlflow_tracking_uri"})
        return os.environ["FAKE_AZUREML_TRACKING_URI"]
'''


def write_config(folder: Path, content: object) -> Path:
    path = folder / "config.json"
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (None, "does not exist"),
        ("{not json", "is not valid JSON"),
        ("", "is not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
        ({"resource_group": "rg", "workspace_name": "ws"}, "lacks subscription_id"),
        ({"subscription_id": "s", "workspace_name": "ws"}, "lacks resource_group"),
        ({"subscription_id": "s", "resource_group": "rg"}, "lacks workspace_name"),
        ({**VALID, "workspace_name": "  "}, "lacks workspace_name"),
        ({**VALID, "resource_group": 7}, "lacks resource_group"),
    ],
)
def test_config_is_read_and_checked(tmp_path: Path, content: object, fragment: str) -> None:
    path = tmp_path / "config.json" if content is None else write_config(tmp_path, content)
    with pytest.raises(TrainerError, match=fragment):
        read_workspace_config(path)

    def never(path: Path) -> object:
        raise AssertionError("the workspace must not be opened with a bad config")

    with pytest.raises(TrainerError, match=fragment):
        workspace_tracking_uri(path, loader=never)


def test_valid_config_goes_to_the_workspace_which_gives_the_uri(tmp_path: Path) -> None:
    config = write_config(tmp_path, VALID)
    asked: list[Path] = []

    class StandIn:
        def get_mlflow_tracking_uri(self) -> str:
            return "azureml://westeurope.api.azureml.ms/mlflow/v1.0/subscriptions/s/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws"

    def loader(path: Path) -> StandIn:
        asked.append(path)
        return StandIn()

    uri = workspace_tracking_uri(config, loader=loader)
    assert asked == [config]
    assert uri.startswith("azureml://")
    assert uri.endswith("/workspaces/ws")


def test_workspace_failures_name_the_workspace(tmp_path: Path) -> None:
    config = write_config(tmp_path, VALID)

    def loader(path: Path) -> object:
        raise RuntimeError("interactive login required\nsecond line")

    with pytest.raises(TrainerError, match=r"cannot open Azure ML workspace 'ws': RuntimeError: interactive login"):
        workspace_tracking_uri(config, loader=loader)

    class Blank:
        def get_mlflow_tracking_uri(self) -> str:
            return ""

    with pytest.raises(TrainerError, match="gave no MLflow tracking URI"):
        workspace_tracking_uri(config, loader=lambda path: Blank())


@pytest.fixture
def fake_azureml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """`azureml.core` replaced by the stand-in, in this process and in subprocesses (PYTHONPATH)."""
    root = tmp_path / "fake-azureml"
    (root / "azureml" / "core").mkdir(parents=True)
    (root / "azureml" / "__init__.py").write_text("")
    (root / "azureml" / "core" / "__init__.py").write_text(FAKE_AZUREML_CORE)
    calls = tmp_path / "azureml-calls.jsonl"
    monkeypatch.setenv("FAKE_AZUREML_CALLS", str(calls))
    package = types.ModuleType("azureml")
    package.__path__ = [str(root / "azureml")]
    core = types.ModuleType("azureml.core")
    exec(compile(FAKE_AZUREML_CORE, "azureml/core/__init__.py", "exec"), core.__dict__)
    monkeypatch.setitem(sys.modules, "azureml", package)
    monkeypatch.setitem(sys.modules, "azureml.core", core)
    return root


def recorded_calls(tmp_path: Path) -> list[dict]:
    calls = tmp_path / "azureml-calls.jsonl"
    return [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


def test_real_loader_calls_workspace_from_config(tmp_path: Path, fake_azureml: Path, monkeypatch) -> None:
    config = write_config(tmp_path, VALID)
    monkeypatch.setenv("FAKE_AZUREML_TRACKING_URI", "azureml://example/ws")
    workspace = azureml_workspace_loader(config)
    assert workspace.get_mlflow_tracking_uri() == "azureml://example/ws"
    assert recorded_calls(tmp_path) == [
        {"call": "from_config", "path": str(config), "workspace_name": "ws"},
        {"call": "get_mlflow_tracking_uri"},
    ]


def test_training_uses_the_workspace_tracking_uri(
    tmp_path: Path, fake_azureml: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole trainer against the stand-in: the workspace's URI is where MLflow logs and registers.

    The stand-in answers with a SQLite URI: past the URI, Azure ML speaks MLflow's own API.
    """
    import mlflow

    from diabetes_trainer.training import TrainOptions
    from diabetes_trainer.training import train as train_in_process

    config = write_config(tmp_path, VALID)
    workspace_store = f"sqlite:///{tmp_path / 'workspace.db'}"
    monkeypatch.setenv("FAKE_AZUREML_TRACKING_URI", workspace_store)
    monkeypatch.setenv("DIABETES_HOME", str(tmp_path / "home"))
    for name in ("DIABETES_TRACKING_URI", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    with mlflow_globals():
        result = train_in_process(TrainOptions(workspace_config=config))
        assert mlflow.get_tracking_uri() == workspace_store
        assert mlflow.get_registry_uri() == workspace_store
    assert [c["call"] for c in recorded_calls(tmp_path)] == ["from_config", "get_mlflow_tracking_uri"]
    assert result.model_version == 1
    assert result.tracking_uri == workspace_store
    assert not (tmp_path / "home" / "mlruns.db").exists()
    with store(workspace_store) as client:
        version = client.get_model_version("diabetes_model", "1")
        assert version.run_id == result.run_id
        assert int(client.get_model_version_by_alias("diabetes_model", "champion").version) == 1


def test_cli_reaches_for_the_workspace_uri_and_reports_it_unreachable(tmp_path: Path, fake_azureml: Path) -> None:
    config = write_config(tmp_path, VALID)
    dead = f"http://127.0.0.1:{free_port()}/mlflow/v1.0/subscriptions/s"
    outcome = train(
        "--json",
        "--workspace-config",
        str(config),
        home=tmp_path,
        PYTHONPATH=str(fake_azureml),
        FAKE_AZUREML_CALLS=str(tmp_path / "azureml-calls.jsonl"),
        FAKE_AZUREML_TRACKING_URI=dead,
    )
    assert_one_line_failure(outcome, "unreachable", dead)
    assert [c["call"] for c in recorded_calls(tmp_path)] == ["from_config", "get_mlflow_tracking_uri"]


@pytest.mark.parametrize("content", [None, "{", {"subscription_id": "s"}])
def test_cli_bad_config_is_one_line(tmp_path: Path, content: object) -> None:
    path = tmp_path / "config.json" if content is None else write_config(tmp_path, content)
    outcome = train("--json", "--workspace-config", str(path), home=tmp_path)
    assert_one_line_failure(outcome, "workspace config", str(path))
    assert not (tmp_path / "mlruns.db").exists()


def test_cli_without_the_azure_extra_says_what_to_install(tmp_path: Path) -> None:
    if importlib.util.find_spec("azureml") is not None:
        pytest.skip("azureml is installed here")
    outcome = train("--workspace-config", str(write_config(tmp_path, VALID)), home=tmp_path)
    assert_one_line_failure(outcome, "azure", "extra")


def test_workspace_config_and_tracking_uri_exclude_each_other(tmp_path: Path) -> None:
    config = write_config(tmp_path, VALID)
    outcome = train("--workspace-config", str(config), "--tracking-uri", "sqlite:///x.db", home=tmp_path)
    assert outcome.returncode == 2
    assert "not allowed with argument" in outcome.stderr


@pytest.mark.slow
def test_azure_extra_resolves_with_current_mlflow(tmp_path: Path) -> None:
    """`pip install .[trainer,azure]` resolves (dry run: nothing is installed, .venv is untouched)."""
    pip = [sys.executable, "-m", "pip"]
    probe = subprocess.run([*pip, "index", "versions", "azureml-core"], capture_output=True, text=True, timeout=120)
    if probe.returncode != 0:
        pytest.skip(f"package index unreachable: {probe.stderr.strip()[-200:]}")
    report = tmp_path / "report.json"
    resolved = subprocess.run(
        [*pip, "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report), ".[trainer,azure]"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert resolved.returncode == 0, resolved.stderr[-3000:]
    versions = {
        item["metadata"]["name"].lower(): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert "azureml-core" in versions
    assert int(versions["mlflow"].split(".")[0]) >= 3, versions["mlflow"]


def test_cli_names_the_mlflow_plugin_an_azureml_uri_needs(tmp_path: Path, fake_azureml: Path) -> None:
    """A real workspace answers with an `azureml://` URI, which MLflow reads only through a plugin."""
    from mlflow.tracking._tracking_service.utils import _tracking_store_registry

    if "azureml" in _tracking_store_registry._registry:
        pytest.skip("the azureml-mlflow plugin is installed here")
    config = write_config(tmp_path, VALID)
    workspace_uri = (
        "azureml://westeurope.api.azureml.ms/mlflow/v1.0/subscriptions/s/resourceGroups/rg"
        "/providers/Microsoft.MachineLearningServices/workspaces/ws"
    )
    outcome = train(
        "--workspace-config",
        str(config),
        home=tmp_path,
        PYTHONPATH=str(fake_azureml),
        FAKE_AZUREML_CALLS=str(tmp_path / "azureml-calls.jsonl"),
        FAKE_AZUREML_TRACKING_URI=workspace_uri,
    )
    assert_one_line_failure(outcome, "azureml-mlflow", workspace_uri)
    assert [c["call"] for c in recorded_calls(tmp_path)] == ["from_config", "get_mlflow_tracking_uri"]
    assert not (tmp_path / "mlruns.db").exists()


@pytest.mark.slow
def test_azure_extra_installs_and_imports_beside_current_mlflow(tmp_path: Path) -> None:
    """A throwaway virtualenv with `.[trainer,azure]`: azureml-core imports next to MLflow 3."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    installed = subprocess.run(
        [python, "-m", "pip", "install", "--quiet", ".[trainer,azure]"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if installed.returncode != 0 and "No matching distribution" in installed.stderr:
        pytest.skip("package index unreachable")
    assert installed.returncode == 0, installed.stderr[-3000:]
    script = (
        "import azureml.core, mlflow; from azureml.core import Workspace; import diabetes_trainer.azure; "
        "print(azureml.core.VERSION, mlflow.__version__)"
    )
    done = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.split()[1].split(".")[0]) >= 3
