"""An Azure ML workspace as the tracking store: `config.json` → Workspace → its MLflow URI.

Azure ML SDK v1 (`azureml-core`, the optional `azure` extra) reached end of support on
2026-06-30; it is still the way `Workspace.from_config` reads the `config.json` the portal hands
out. Models are registered with MLflow's own API against the workspace's tracking URI
(`azureml.mlflow.register_model` is deprecated).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from diabetes_trainer.errors import TrainerError

REQUIRED_KEYS = ("subscription_id", "resource_group", "workspace_name")

# Takes the config path, returns an object with `get_mlflow_tracking_uri()` (an azureml Workspace).
WorkspaceLoader = Callable[[Path], Any]


def read_workspace_config(path: str | Path) -> dict[str, str]:
    """The checked contents of an Azure ML `config.json`; a TrainerError names what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise TrainerError(f"workspace config {path} does not exist (download config.json from the portal)")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise TrainerError(f"workspace config {path} cannot be read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise TrainerError(f"workspace config {path} is not valid JSON: {exc.msg} at line {exc.lineno}") from exc
    if not isinstance(config, dict):
        raise TrainerError(f"workspace config {path} must hold a JSON object")
    missing = [key for key in REQUIRED_KEYS if not isinstance(config.get(key), str) or not config[key].strip()]
    if missing:
        raise TrainerError(f"workspace config {path} lacks {', '.join(missing)} (need {', '.join(REQUIRED_KEYS)})")
    return config


def azureml_workspace_loader(path: Path) -> Any:
    """The real loader: `azureml.core.Workspace.from_config` (authenticates as the SDK does)."""
    try:
        from azureml.core import Workspace
    except ImportError as exc:
        raise TrainerError(
            "--workspace-config needs the Azure ML SDK: install the 'azure' extra (diabetes-scoring[azure])"
        ) from exc
    return Workspace.from_config(path=str(path))


def workspace_tracking_uri(path: str | Path, loader: WorkspaceLoader | None = None) -> str:
    """The workspace's MLflow tracking URI, after checking its config file."""
    path = Path(path)
    config = read_workspace_config(path)
    loader = loader or azureml_workspace_loader
    try:
        workspace = loader(path)
        uri = workspace.get_mlflow_tracking_uri()
    except TrainerError:
        raise
    except Exception as exc:
        from diabetes_trainer.errors import short_reason

        raise TrainerError(f"cannot open Azure ML workspace {config['workspace_name']!r}: {short_reason(exc)}") from exc
    if not isinstance(uri, str) or not uri:
        raise TrainerError(f"Azure ML workspace {config['workspace_name']!r} gave no MLflow tracking URI")
    return uri
