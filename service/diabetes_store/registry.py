"""Which version a `models:/` URI names, with its content's identity, asked without importing MLflow.

Asked on every start of a registered model: an alias may point elsewhere since the last start, and
a version number may name other content (identity.py). MLflow's client costs 4-6 s of imports to
answer it; two stores answer it directly, in milliseconds:
- the embedded SQLite store: one read-only query (registry_sqlite.py);
- an MLflow tracking server: one REST call (registry_rest.py), with a short timeout.
Anything else (another database, Databricks, a setting only MLflow honours, an answer this code does
not know, a server that does not answer in time) gives None, and the caller asks through MLflow. So
this is a shortcut that can only be skipped, never a second way to get a wrong answer.
"""

from __future__ import annotations

from diabetes_store.errors import StoreError
from diabetes_store.identity import VersionIdentity
from diabetes_store.tracking_uri import mlflow_only_settings
from diabetes_store.uris import RegisteredUri

# Short: the supervisor waits meanwhile, and a lookup that gives up only hands the question to MLflow.
TIMEOUT_SECONDS = 2.0


def quick_lookup(tracking_uri: str, ref: RegisteredUri) -> VersionIdentity | None:
    """The record of the version `ref` names in the registry at `tracking_uri`; None when not asked here."""
    if ref.alias is None and ref.version != "latest" and not ref.pinned:
        return None  # not a valid version: MLflow's child says so
    if mlflow_only_settings():
        return None
    if tracking_uri.startswith("sqlite:///"):
        from diabetes_store.registry_sqlite import find_version

        return find_version(tracking_uri, ref)
    # Imported only here: urllib's HTTP machinery costs a start from the embedded store ~0.03 s.
    from diabetes_store import registry_rest

    if not registry_rest.applies(tracking_uri):
        return None
    try:
        return registry_rest.RegistryClient(tracking_uri, timeout=TIMEOUT_SECONDS).find_version(ref)
    except (StoreError, OSError, ValueError):  # unreachable, an error answer, another format, a TLS setting
        return None
