"""Resolve and download a registered model from an MLflow tracking server over its REST API.

Why not MLflow's client: the serving image must resolve `models:/` URIs to follow an alias from
inside a pod, and mlflow-skinny with its dependencies measured 117 MB installed (the image would
pass its 350 MB budget) and about 2 s of CPU to import on every check. The calls needed are four
documented REST endpoints, over `requests`, which the service already has:
- `registered-models/alias` and `model-versions/search` pin an alias or `latest` to a version;
- `model-versions/get-download-uri` gives where its files are;
- `mlflow-artifacts/artifacts` lists and serves them, when the server proxies artifacts (the
  default for `mlflow server`). Any other artifact store needs MLflow's client: Unsupported says so.
Credentials come from MLflow's own variables: `MLFLOW_TRACKING_TOKEN` (bearer), or
`MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD` (basic).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import quote

import requests

from diabetes_service.errors import ModelLoadError

TIMEOUT_SECONDS = 10.0
ARTIFACTS_SCHEME = "mlflow-artifacts:/"


class Unsupported(Exception):
    """The server keeps the files where only MLflow's own client can fetch them."""


def is_rest_server(tracking_uri: str) -> bool:
    return tracking_uri.startswith(("http://", "https://"))


class RegistryServer:
    def __init__(self, tracking_uri: str) -> None:
        self.base = tracking_uri.rstrip("/")
        self.session = requests.Session()
        token = os.environ.get("MLFLOW_TRACKING_TOKEN")
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        elif os.environ.get("MLFLOW_TRACKING_USERNAME"):
            self.session.auth = (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ.get("MLFLOW_TRACKING_PASSWORD", ""))

    def _get(self, endpoint: str, **params: str) -> requests.Response:
        try:
            answer = self.session.get(f"{self.base}{endpoint}", params=params, timeout=TIMEOUT_SECONDS)
        except requests.RequestException as exc:
            raise ModelLoadError(f"cannot reach the tracking server at {self.base}: {type(exc).__name__}") from None
        if answer.status_code != 200:
            try:
                message = answer.json().get("message", "")
            except ValueError:
                message = ""
            raise ModelLoadError(f"the tracking server answered {answer.status_code}: {message or answer.reason}")
        return answer

    def version_for(self, name: str, alias: str | None, version: str | None) -> str:
        """The version an alias or `latest` points at now; a number as given."""
        if alias:
            found = self._get("/api/2.0/mlflow/registered-models/alias", name=name, alias=alias).json()
            return str(found["model_version"]["version"])
        if version == "latest":
            found = self._get("/api/2.0/mlflow/model-versions/search", filter=f"name='{name}'").json()
            versions = [int(v["version"]) for v in found.get("model_versions", [])]
            if not versions:
                raise ModelLoadError(f"registered model {name!r} has no versions")
            return str(max(versions))
        return str(version)

    def download(self, name: str, version: str, target: Path) -> None:
        """The version's files into `target`, through a temporary folder renamed into place."""
        location = self._get("/api/2.0/mlflow/model-versions/get-download-uri", name=name, version=version)
        uri = location.json()["artifact_uri"]
        if not uri.startswith(ARTIFACTS_SCHEME):
            raise Unsupported(uri)
        root = uri.removeprefix(ARTIFACTS_SCHEME).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=target.parent))
        try:
            self._fetch_tree(root, staging)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _fetch_tree(self, remote: str, local: Path) -> None:
        listing = self._get("/api/2.0/mlflow-artifacts/artifacts", path=remote).json()
        for entry in listing.get("files", []):
            name = entry["path"].rsplit("/", 1)[-1]
            if name in ("", ".", "..") or "/" in name:
                raise ModelLoadError(f"the tracking server listed an unsafe artifact name: {entry['path']!r}")
            child = f"{remote}/{name}"
            if entry.get("is_dir"):
                (local / name).mkdir()
                self._fetch_tree(child, local / name)
                continue
            answer = self._get(f"/api/2.0/mlflow-artifacts/artifacts/{quote(child)}")
            (local / name).write_bytes(answer.content)
