"""Talking to the tracking store from the trainer; the URI rule and SQLite paths are diabetes_store.tracking_uri.

Kept free of MLflow imports so that the CLI can decide the URI before paying for the import.
"""

from __future__ import annotations

import os
from urllib.parse import urlsplit, urlunsplit

# The rule lives in the store package, below the trainer and the service (which never import each other).
from diabetes_store.tracking_uri import (  # noqa: F401 - re-exported for the trainer's callers
    EMBEDDED_ARTIFACTS_NAME,
    EMBEDDED_DB_NAME,
    embedded_artifact_root,
    embedded_tracking_uri,
    is_embedded,
    project_dir,
    resolve_tracking_uri,
    sqlite_path,
)

# --- Talking to the store (still MLflow-free: decided before MLflow is imported) ---------------

# MLflow's HTTP client retries for about four minutes by default; a user waiting on a dead server
# deserves an answer within seconds. Values the user set in the environment win.
BOUNDED_HTTP_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
# No usage telemetry leaves this machine, and no progress bars garble a CLI's output.
QUIET_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
REACHABILITY_TIMEOUT = 5.0


def bound_mlflow_client_env() -> None:
    """Set MLflow's retry/timeout and quietness knobs (before MLflow is imported), unless set."""
    for key, value in {**BOUNDED_HTTP_ENV, **QUIET_ENV}.items():
        os.environ.setdefault(key, value)


def redact(uri: str) -> str:
    """The URI without any user:password part, fit for a message or a log."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, f"***@{netloc}", parts.path, parts.query, parts.fragment))


def is_http(uri: str) -> bool:
    return urlsplit(uri).scheme in ("http", "https")


def artifact_location_for(uri: str) -> str | None:
    """Where a new experiment's artifacts go, for stores that would otherwise pick `./mlruns`.

    A SQLite store keeps its artifacts in `mlartifacts` beside the database file (the embedded
    store: `<project>/mlartifacts`), whatever the working directory. Servers and workspaces
    choose their own (None).
    """
    if uri == embedded_tracking_uri():
        return embedded_artifact_root().as_uri()
    db = sqlite_path(uri)
    return (db.parent / EMBEDDED_ARTIFACTS_NAME).as_uri() if db else None


def check_reachable(uri: str, timeout: float = REACHABILITY_TIMEOUT) -> None:
    """Fail fast, with the reason, when an HTTP tracking server does not answer at all.

    Any HTTP answer counts as reachable (a server behind auth may answer 401 to `/health`);
    only a refused, timed-out or unresolvable connection is reported.
    """
    if not is_http(uri):
        return
    import requests

    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        reason = type(exc).__name__
        if isinstance(exc, requests.Timeout):
            reason = f"no answer within {timeout:g}s"
        elif isinstance(exc, requests.ConnectionError):
            reason = "connection failed"
        raise ConnectionError(f"tracking server {redact(uri)} is unreachable ({reason})") from exc


def check_sqlite_writable(uri: str, timeout: float = 10.0) -> None:
    """Fail fast when a SQLite store cannot be opened for writing.

    MLflow retries opening a database ten times with exponential back-off (about 100 seconds)
    before it gives up; a quick probe with the standard library answers at once.
    """
    path = sqlite_path(uri)
    if path is None:
        return
    import sqlite3

    if path.exists() and not path.is_file():
        raise PermissionError(f"tracking store {path} is not a database file")
    if not path.parent.is_dir():
        raise PermissionError(f"tracking store folder {path.parent} does not exist")
    if path.exists() and not os.access(path, os.W_OK):
        raise PermissionError(f"tracking store {path} is read-only")
    if not path.exists() and not os.access(path.parent, os.W_OK):
        raise PermissionError(f"tracking store folder {path.parent} is read-only")
    try:
        connection = sqlite3.connect(path, timeout=timeout)
        try:
            # Takes the write lock without writing: fails on a read-only file or folder.
            connection.execute("BEGIN IMMEDIATE")
            connection.rollback()
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise PermissionError(f"tracking store {path} cannot be written: {exc}") from exc
