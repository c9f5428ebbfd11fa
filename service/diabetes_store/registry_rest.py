"""The one client of an MLflow tracking server's REST API: which version, with which content, and its files.

Why not MLflow's client: the serving image must resolve `models:/` URIs from inside a pod, and
mlflow-skinny with its dependencies measured 117 MB installed (the image would pass its 350 MB
budget) and about 2 s of CPU to import. Why the standard library's urllib and not `requests`: the
supervisor asks the registry on every start of a registered model (identity.py), and importing
`requests` measured ~0.1 s against ~0.03 s for urllib, in a restart of ~0.32 s. The calls are
documented REST endpoints:
- `registered-models/alias`, `model-versions/get` and `model-versions/search`: the record of the
  version an alias, a number or `latest` names (identity.py reads its content's identity from it);
- `model-versions/get-download-uri`: where its files are;
- `mlflow-artifacts/artifacts`: lists and serves them, when the server proxies artifacts (the
  default for `mlflow server`). Any other artifact store needs MLflow's client: Unsupported says so.
Credentials and TLS come from MLflow's own variables: `MLFLOW_TRACKING_TOKEN` (bearer), or
`MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD` (basic); `MLFLOW_TRACKING_INSECURE_TLS`,
`MLFLOW_TRACKING_SERVER_CERT_PATH` and `MLFLOW_TRACKING_CLIENT_CERT_PATH`. With a setting this
client does not know (`MLFLOW_WORKSPACE`, `MLFLOW_REGISTRY_URI`), `applies` says no and MLflow asks.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from diabetes_store.errors import StoreError, Unsupported
from diabetes_store.identity import VersionIdentity
from diabetes_store.tracking_uri import mlflow_only_settings
from diabetes_store.uris import RegisteredUri

TIMEOUT_SECONDS = 10.0
ARTIFACTS_SCHEME = "mlflow-artifacts:/"


def applies(tracking_uri: str) -> bool:
    """Whether this client speaks for the store at `tracking_uri` (an HTTP(S) server, no setting it ignores)."""
    return tracking_uri.startswith(("http://", "https://")) and not mlflow_only_settings()


class RegistryClient:
    def __init__(self, tracking_uri: str, timeout: float = TIMEOUT_SECONDS) -> None:
        if not tracking_uri.startswith(("http://", "https://")):
            raise StoreError(f"not an HTTP tracking server: {tracking_uri}")
        self.base = tracking_uri.rstrip("/")
        self.timeout = timeout
        self.headers = _auth_headers()
        self.context = _tls_context() if self.base.startswith("https://") else None

    def _open(self, endpoint: str, **params: str) -> Any:
        """The answer to GET `endpoint` (a response to read and close); StoreError for none or an error."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        # `base` is http(s) only (`applies`): no file: or custom scheme reaches urlopen.
        request = urllib.request.Request(f"{self.base}{endpoint}{query}", headers=self.headers)  # noqa: S310
        try:
            return urllib.request.urlopen(request, timeout=self.timeout, context=self.context)  # noqa: S310 - http(s)
        except urllib.error.HTTPError as exc:
            with exc:
                try:
                    message = json.loads(exc.read()).get("message", "")
                except (ValueError, AttributeError, OSError):
                    message = ""
            raise StoreError(f"the tracking server answered {exc.code}: {message or exc.reason}") from None
        except (OSError, ValueError) as exc:  # refused, timed out, unresolvable, TLS
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            name = type(reason).__name__ if isinstance(reason, BaseException) else type(exc).__name__
            raise StoreError(f"cannot reach the tracking server at {self.base}: {name}") from None

    def _json(self, endpoint: str, **params: str) -> dict:
        with self._open(endpoint, **params) as answer:
            try:
                body = json.loads(answer.read())
            except ValueError:
                raise StoreError(f"the tracking server at {self.base} answered something other than JSON") from None
        return body if isinstance(body, dict) else {}

    def find_version(self, ref: RegisteredUri) -> VersionIdentity:
        """The record of the version `ref` names now (an alias or `latest` may have moved since)."""
        if ref.alias:
            found = self._json("/api/2.0/mlflow/registered-models/alias", name=ref.name, alias=ref.alias)
            record = found.get("model_version")
        elif ref.version == "latest":
            found = self._json("/api/2.0/mlflow/model-versions/search", filter=f"name='{ref.name}'")
            versions = [v for v in found.get("model_versions", []) if str(v.get("version", "")).isdigit()]
            if not versions:
                raise StoreError(f"registered model {ref.name!r} has no versions")
            record = max(versions, key=lambda v: int(v["version"]))
        else:
            found = self._json("/api/2.0/mlflow/model-versions/get", name=ref.name, version=str(ref.version))
            record = found.get("model_version")
        if not isinstance(record, dict) or not str(record.get("version", "")).isdigit():
            raise StoreError(f"the tracking server at {self.base} answered an unknown format for {ref.uri}")
        return VersionIdentity.from_record(record)

    def download(self, identity: VersionIdentity, into: Path) -> None:
        """The version's files into the empty folder `into` (cache.install renames it into place)."""
        location = self._json(
            "/api/2.0/mlflow/model-versions/get-download-uri", name=identity.name, version=identity.version
        )
        uri = str(location.get("artifact_uri", ""))
        if not uri.startswith(ARTIFACTS_SCHEME):
            raise Unsupported(uri)
        self._fetch_tree(uri.removeprefix(ARTIFACTS_SCHEME).lstrip("/"), into)

    def _fetch_tree(self, remote: str, local: Path) -> None:
        listing = self._json("/api/2.0/mlflow-artifacts/artifacts", path=remote)
        for entry in listing.get("files", []):
            name = str(entry.get("path", "")).rsplit("/", 1)[-1]
            if name in ("", ".", "..") or "/" in name:
                raise StoreError(f"the tracking server listed an unsafe artifact name: {entry.get('path')!r}")
            child = f"{remote}/{name}"
            if entry.get("is_dir"):
                (local / name).mkdir()
                self._fetch_tree(child, local / name)
                continue
            endpoint = f"/api/2.0/mlflow-artifacts/artifacts/{urllib.parse.quote(child)}"
            with self._open(endpoint) as answer, (local / name).open("wb") as file:
                shutil.copyfileobj(answer, file)


def _auth_headers() -> dict[str, str]:
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    if token:
        return {"Authorization": f"Bearer {token}"}
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    if user:
        pair = f"{user}:{os.environ.get('MLFLOW_TRACKING_PASSWORD', '')}".encode()
        return {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}
    return {}


def _tls_context() -> Any:
    import ssl

    context = ssl.create_default_context(cafile=os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None)
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    client_cert = os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH")
    if client_cert:
        context.load_cert_chain(client_cert)
    return context
