"""A registered version's record, and where its files are, read from MLflow's SQLite store.

MLflow's client costs 4-6 s of imports (pandas, SQLAlchemy, alembic, FastAPI) to answer "which
version, with which content": the embedded store answers it with one SELECT on its own tables
(measured on the shared 2-core machine at load average 13: importing sqlite3 28 ms, a lookup 4.6 ms
p25 and 14 ms median over 200, against a restart of ~1.5 s there; the query is by primary key).
The database is opened read-only (so a missing one is never created), and any doubt (another
schema, a lock, a version being registered or deleted) gives None: MLflow's client then asks, in
its own words. The same holds for where a version's files are (`local_files`): the embedded store
keeps them in a folder on this machine, which a first start copies itself (registry.quick_download)
instead of importing MLflow (~3 s of the 5.2 s a first start took) to copy the same folder.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import urllib.parse
from pathlib import Path

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
    # Where MLflow's own client downloads a version from: its storage location, else its source
    # (SqlAlchemyStore.get_model_version_download_uri), with the fields that name its content.
    "location": (
        "SELECT v.storage_location, v.source, v.run_id, v.creation_time FROM model_versions v"
        " WHERE v.workspace = 'default' AND v.name = ? AND v.version = ?"
        " AND v.current_stage != 'Deleted_Internal' AND v.status = 'READY'"
    ),
}


def _query(tracking_uri: str, query: str, params: tuple) -> list[tuple] | None:
    """The rows of one read-only query; None when the store cannot answer it here."""
    path = sqlite_path(tracking_uri)
    if path is None or not path.is_file():
        return None
    try:
        uri = "file:" + urllib.parse.quote(os.fspath(path)) + "?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=TIMEOUT_SECONDS)) as db:
            return db.execute(query, params).fetchall()
    except sqlite3.Error:  # another schema (older MLflow: no workspace column), locked, not a database
        return None


def find_version(tracking_uri: str, ref: RegisteredUri) -> VersionIdentity | None:
    """The record of the version `ref` names in the SQLite store at `tracking_uri`; None when not known here."""
    if ref.alias:
        query, params = _QUERIES["alias"], (ref.name, ref.alias)
    elif ref.version == "latest":
        query, params = _QUERIES["latest"], (ref.name,)
    elif ref.pinned:
        query, params = _QUERIES["version"], (ref.name, int(ref.version or 0))
    else:
        return None
    rows = _query(tracking_uri, query, params)
    if rows is None or len(rows) != 1 or not isinstance(rows[0][1], int):
        return None  # not there: MLflow's child says so in its own words
    name, version, run_id, source, created, status = rows[0]
    if status != "READY":  # still being registered, or failed to: MLflow's client decides
        return None
    return VersionIdentity.from_record(
        {"name": name, "version": version, "run_id": run_id, "source": source, "creation_timestamp": created}
    )


def local_files(tracking_uri: str, identity: VersionIdentity) -> Path | None:
    """The folder on this machine holding the files of `identity`'s version, as the store records it
    now; None when they are elsewhere (a remote artifact store: MLflow's client fetches them), the
    record no longer names the same content, or anything else is in doubt."""
    if not identity.version.isdigit():
        return None
    rows = _query(tracking_uri, _QUERIES["location"], (identity.name, int(identity.version)))
    if rows is None or len(rows) != 1:
        return None
    location, source, run_id, created = rows[0]
    now = (str(source or ""), str(run_id or ""), str(created or ""))
    if now != (identity.source, identity.run_id, identity.created):
        return None  # registered again since the lookup: the caller's identity is not this content
    where = urllib.parse.urlparse(str(location or source or ""))
    if where.scheme != "file" or where.netloc not in ("", "localhost"):
        return None
    folder = Path(urllib.parse.unquote(where.path))
    return folder if folder.is_absolute() and (folder / "MLmodel").is_file() else None
