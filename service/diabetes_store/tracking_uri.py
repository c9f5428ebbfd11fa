"""Where runs and registered models live: one rule, shared by `train`, `serve` and `deploy`, and
which file a SQLite store is (the trainer checks it is writable, the service reads it).

In the store package, below the trainer and the service and free of MLflow's imports, so that the
service decides a URI without importing the trainer, and the trainer without importing the service.
"""

from __future__ import annotations

import os
from pathlib import Path

EMBEDDED_DB_NAME = "mlruns.db"
EMBEDDED_ARTIFACTS_NAME = "mlartifacts"
# Settings that change where MLflow's own client looks (another registry, a workspace) which the
# store's shortcuts (registry.py) do not follow: with any set, MLflow's client is asked.
MLFLOW_ONLY_ENV = ("MLFLOW_WORKSPACE", "MLFLOW_REGISTRY_URI")


def project_dir() -> Path:
    """The folder that holds the embedded store: `DIABETES_HOME`, else the working directory."""
    return Path(os.environ.get("DIABETES_HOME") or Path.cwd()).resolve()


def embedded_tracking_uri() -> str:
    """MLflow on a SQLite file inside the project folder: no server to run."""
    return f"sqlite:///{project_dir() / EMBEDDED_DB_NAME}"


def embedded_artifact_root() -> Path:
    """The embedded store's artifact folder, beside its database."""
    return project_dir() / EMBEDDED_ARTIFACTS_NAME


def resolve_tracking_uri(explicit: str | None = None) -> str:
    """`--tracking-uri`, else `DIABETES_TRACKING_URI`, else `MLFLOW_TRACKING_URI`, else embedded."""
    for candidate in (
        explicit,
        os.environ.get("DIABETES_TRACKING_URI"),
        os.environ.get("MLFLOW_TRACKING_URI"),
    ):
        if candidate:
            return candidate
    return embedded_tracking_uri()


def is_embedded(uri: str) -> bool:
    """Whether `uri` is the embedded store of the current project folder."""
    return uri == embedded_tracking_uri()


def mlflow_only_settings() -> bool:
    """Whether a setting only MLflow's own client follows is in the environment."""
    return any(os.environ.get(var) for var in MLFLOW_ONLY_ENV)


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///path` URI (None for other stores and in-memory SQLite)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    # sqlite:////abs/path has an absolute path after the third slash; sqlite:///rel is relative.
    return Path(path).resolve()
