"""A registered version's record, read from MLflow's SQLite store with one read-only query.

MLflow's client costs 4-6 s of imports (pandas, SQLAlchemy, alembic, FastAPI) to answer "which
version, with which content": the embedded store answers it with one SELECT on its own tables
(measured on the shared 2-core machine at load average 13: importing sqlite3 28 ms, a lookup 4.6 ms
p25 and 14 ms median over 200, against a restart of ~1.5 s there; the query is by primary key).
The database is opened read-only (so a missing one is never created), and any doubt (another
schema, a lock, a version being registered or deleted) gives None: MLflow's client then asks, in
its own words.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import urllib.parse

from diabetes_store.identity import VersionIdentity
from diabetes_store.tracking_uri import sqlite_path
from diabetes_store.uris import RegisteredUri

TIMEOUT_SECONDS = 2  # a locked database waits this long, then the question goes to MLflow

# MLflow keeps a deleted version's row, its stage set to "Deleted_Internal": never one of these.
# Whole literals, no string building: the only inputs are the `?` parameters.
_QUERIES = {
    "alias": (
        "SELECT v.name, v.version, v.run_id, v.source, v.creation_time, v.status"
        " FROM registered_model_aliases a JOIN model_versions v"
        " ON v.workspace = a.workspace AND v.name = a.name AND v.version = a.version"
        " WHERE a.workspace = 'default' AND a.name = ? AND a.alias = ?"
        " AND v.current_stage != 'Deleted_Internal'"
    ),
    "version": (
        "SELECT v.name, v.version, v.run_id, v.source, v.creation_time, v.status FROM model_versions v"
        " WHERE v.workspace = 'default' AND v.name = ? AND v.version = ?"
        " AND v.current_stage != 'Deleted_Internal'"
    ),
    "latest": (
        "SELECT v.name, v.version, v.run_id, v.source, v.creation_time, v.status FROM model_versions v"
        " WHERE v.workspace = 'default' AND v.name = ?"
        " AND v.current_stage != 'Deleted_Internal'"
        " ORDER BY v.version DESC LIMIT 1"
    ),
}


def find_version(tracking_uri: str, ref: RegisteredUri) -> VersionIdentity | None:
    """The record of the version `ref` names in the SQLite store at `tracking_uri`; None when not known here."""
    path = sqlite_path(tracking_uri)
    if path is None or not path.is_file():
        return None
    if ref.alias:
        query, params = _QUERIES["alias"], (ref.name, ref.alias)
    elif ref.version == "latest":
        query, params = _QUERIES["latest"], (ref.name,)
    elif ref.pinned:
        query, params = _QUERIES["version"], (ref.name, int(ref.version or 0))
    else:
        return None
    try:
        uri = "file:" + urllib.parse.quote(os.fspath(path)) + "?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=TIMEOUT_SECONDS)) as db:
            rows = db.execute(query, params).fetchall()
    except sqlite3.Error:  # another schema (older MLflow: no workspace column), locked, not a database
        return None
    if len(rows) != 1 or not isinstance(rows[0][1], int):
        return None  # not there: MLflow's child says so in its own words
    name, version, run_id, source, created, status = rows[0]
    if status != "READY":  # still being registered, or failed to: MLflow's client decides
        return None
    return VersionIdentity.from_record(
        {"name": name, "version": version, "run_id": run_id, "source": source, "creation_timestamp": created}
    )
