"""Which version an alias names, asked of the registry without importing MLflow.

An alias must be asked on every start (it may point elsewhere since the last one), but MLflow's
client costs 4-6 s of imports here (pandas, SQLAlchemy, alembic, FastAPI) to answer one question.
Two stores answer it directly:
- the embedded SQLite store: one read-only SELECT on MLflow's `registered_model_aliases` table
  (opened read-only, so a missing database is never created);
- an MLflow tracking server: its REST endpoint `GET /api/2.0/mlflow/registered-models/alias`.
Anything else (another database, Databricks, credentials or a workspace in the environment, a schema
or an answer this code does not know) gives None, and the preparation child asks through MLflow as
before. So this is a shortcut that can only be skipped, never a second way to get a wrong answer:
the version it returns is then located and verified like any pinned version.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import urllib.error
import urllib.parse
import urllib.request

# Short: the supervisor waits meanwhile, and a lookup that gives up only hands the question to MLflow.
TIMEOUT_SECONDS = 2
# Settings MLflow's own client would honour that this shortcut does not: with any set, MLflow asks.
MLFLOW_ONLY_ENV = (
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_INSECURE_TLS",
    "MLFLOW_TRACKING_SERVER_CERT_PATH",
    "MLFLOW_TRACKING_CLIENT_CERT_PATH",
    "MLFLOW_WORKSPACE",
    "MLFLOW_REGISTRY_URI",
)


def alias_version(tracking_uri: str, name: str, alias: str) -> str | None:
    """The version `name@alias` names in the registry at `tracking_uri`; None when not asked here."""
    if any(os.environ.get(var) for var in MLFLOW_ONLY_ENV):
        return None
    if tracking_uri.startswith("sqlite:///"):
        return _from_sqlite(tracking_uri.removeprefix("sqlite:///"), name, alias)
    if tracking_uri.startswith(("http://", "https://")):
        return _from_server(tracking_uri, name, alias)
    return None


def _from_sqlite(path: str, name: str, alias: str) -> str | None:
    # sqlite:////abs/path leaves "/abs/path"; sqlite:///rel leaves "rel", as SQLAlchemy reads them.
    if not path or not os.path.isfile(path):
        return None
    try:
        uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=TIMEOUT_SECONDS)) as db:
            rows = db.execute(
                "SELECT version FROM registered_model_aliases WHERE workspace = 'default' AND name = ? AND alias = ?",
                (name, alias),
            ).fetchall()
    except sqlite3.Error:  # another schema (older MLflow: no workspace column), locked, not a database
        return None
    if len(rows) != 1 or not isinstance(rows[0][0], int):
        return None  # not there: MLflow's child says so in its own words
    return str(rows[0][0])


def _from_server(tracking_uri: str, name: str, alias: str) -> str | None:
    query = urllib.parse.urlencode({"name": name, "alias": alias})
    url = f"{tracking_uri.rstrip('/')}/api/2.0/mlflow/registered-models/alias?{query}"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_SECONDS) as answer:  # noqa: S310 - http(s) only
            body = json.loads(answer.read())
        version = body["model_version"]["version"]
    except (OSError, ValueError, KeyError, TypeError):  # unreachable, an error answer, another format
        return None
    return str(version) if str(version).isdigit() else None
