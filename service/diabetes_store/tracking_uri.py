"""Where runs and registered models live: one rule, shared by `train`, `serve` and `deploy`.

In the store package, below the trainer and the service and free of MLflow's imports, so that the
service decides a URI without importing the trainer, and the trainer without importing the service.
"""

from __future__ import annotations

import os
from pathlib import Path

EMBEDDED_DB_NAME = "mlruns.db"
EMBEDDED_ARTIFACTS_NAME = "mlartifacts"


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
