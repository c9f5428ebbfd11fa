"""Which version a `models:/` URI names, with its content's identity, and its files, without MLflow.

Asked on every start of a registered model: an alias may point elsewhere since the last start, and
a version number may name other content (identity.py). MLflow's client costs 4-6 s of imports to
answer it; two stores answer it directly, in milliseconds:
- the embedded SQLite store: one read-only query (registry_sqlite.py);
- an MLflow tracking server: one REST call (registry_rest.py), with a short timeout.
Anything else (another database, Databricks, a setting only MLflow honours, an answer this code does
not know, a server that does not answer in time) gives None, and the caller asks through MLflow. So
this is a shortcut that can only be skipped, never a second way to get a wrong answer.

A version not downloaded yet is fetched the same way (`quick_download`), into the same cache folder
MLflow's client would fill: copied from the embedded store's artifact folder, or over the tracking
server's artifact proxy. With MLflow's import (~3 s on the 2-core machine) the preparation child
was the first to know the files, so a first start waited for MLflow and scikit-learn before it
could answer (5.2 s); with the files here at once, a linear model is served from its arrays while
the child verifies it (model/provisional.py), as a local folder's first start is.
"""

from __future__ import annotations

from pathlib import Path

from diabetes_store.errors import StoreError, Unsupported
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


def quick_download(tracking_uri: str, identity: VersionIdentity, target: Path) -> bool:
    """`identity`'s files put in place at `target` (cache.install), fetched without MLflow where the
    store allows; False when not done here (the caller leaves it to MLflow's client), with `target`
    untouched and no staging folder left."""
    from diabetes_store.cache import install

    if target.is_dir():
        return True
    if mlflow_only_settings():
        return False
    if tracking_uri.startswith("sqlite:///"):
        import shutil

        from diabetes_store.registry_sqlite import local_files

        source = local_files(tracking_uri, identity)
        if source is None:
            return False
        try:
            install(target, lambda staging: shutil.copytree(source, staging, dirs_exist_ok=True))
        except OSError:  # unreadable, removed meanwhile, a full disk: MLflow's client says what it is
            return False
        return True
    from diabetes_store import registry_rest

    if not registry_rest.applies(tracking_uri):
        return False
    client = registry_rest.RegistryClient(tracking_uri, timeout=TIMEOUT_SECONDS)
    pinned = RegisteredUri(f"models:/{identity.name}/{identity.version}", identity.name, None, identity.version)

    def fill(staging: Path) -> None:
        client.download(identity, staging)
        # The files are fetched by name and number: the same content only if the record still names
        # it (a version registered again meanwhile would otherwise land under the old content's key).
        if client.find_version(pinned) != identity:
            raise StoreError(f"{pinned.uri} was registered again while it was downloaded")

    try:
        install(target, fill)
    except (StoreError, Unsupported, OSError, ValueError):  # not proxied, an error answer, unreachable
        return False
    return True
