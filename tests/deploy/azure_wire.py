"""A real azure-ai-ml `MLClient` whose HTTP requests end in memory instead of at Azure.

No workspace is reachable from here. Everything above the socket is azure-ai-ml's and azure-core's
own code (entities, REST models, serialisation, the ARM pipeline and long-running-operation
polling); only the `requests` adapter at the bottom is replaced. It records every request and
answers as Azure Resource Manager does for a resource that provisioned at once: PUT stores the
body and returns it with `provisioningState: Succeeded`, GET returns what was stored (404 before),
DELETE forgets it.
"""

from __future__ import annotations

import copy
import io
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
import urllib3
from requests.adapters import BaseAdapter

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "rg"
WORKSPACE = "ws"
LOCATION = "westeurope"
PRIMARY_KEY = "recorded-primary-key"  # what the in-memory workspace hands out, not a real key
SECONDARY_KEY = "recorded-secondary-key"


@dataclass
class Call:
    method: str
    path: str
    query: str
    body: dict[str, Any] | None
    headers: dict[str, str]


@dataclass
class Wire(BaseAdapter):
    calls: list[Call] = field(default_factory=list)
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    # What the in-memory workspace answers for an endpoint (None: Azure's form for its name).
    scoring_uri: str | None = None
    keys: tuple[str, str] = (PRIMARY_KEY, SECONDARY_KEY)
    # Path suffix -> (status, error code, message): Azure refusing that resource.
    refuse: dict[str, tuple[int, str, str]] = field(default_factory=dict)
    # Content hashes of code folders the workspace holds already: azure-ai-ml reuses such a code
    # version instead of uploading the folder to Blob storage (which cannot be reached from here).
    code_hashes: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        super().__init__()

    def close(self) -> None:
        pass

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        parts = urlsplit(request.url or "")
        raw = request.body.decode() if isinstance(request.body, bytes) else request.body
        body = json.loads(raw) if raw else None
        call = Call(request.method or "", parts.path, parts.query, body, dict(request.headers))
        self.calls.append(call)
        status, answer = self._answer(call)
        return _response(request, status, answer)

    def _answer(self, call: Call) -> tuple[int, dict[str, Any]]:
        path = call.path.rstrip("/")
        for suffix, (status, code, message) in self.refuse.items():
            if call.method == "PUT" and path.endswith(suffix):
                return status, {"error": {"code": code, "message": message}}
        if call.method == "PUT":
            doc = {**copy.deepcopy(call.body or {}), "id": path, "name": path.rsplit("/", 1)[-1]}
            doc.setdefault("location", LOCATION)
            doc.setdefault("properties", {})["provisioningState"] = "Succeeded"
            if "/onlineEndpoints/" in path and "/deployments/" not in path:
                azure_uri = f"https://{doc['name']}.{LOCATION}.inference.ml.azure.com/score"
                doc["properties"]["scoringUri"] = self.scoring_uri or azure_uri
            if "/batchEndpoints/" in path and "/deployments/" not in path:
                doc["properties"]["scoringUri"] = f"https://{doc['name']}.{LOCATION}.inference.ml.azure.com/jobs"
            self.resources[path] = doc
            return 200, doc
        if call.method == "GET":
            if path.endswith(f"/workspaces/{WORKSPACE}"):
                return 200, {"id": path, "name": WORKSPACE, "location": LOCATION, "properties": {}}
            if path in self.resources:
                return 200, self.resources[path]
            if path.endswith("/versions") and "/codes/" in path:
                return 200, {"value": self._code_versions(path, parse_qs(call.query).get("hash", [""])[0])}
            children = [d for p, d in self.resources.items() if p.rsplit("/", 1)[0] == path]
            if path.endswith(("/deployments", "/onlineEndpoints")):
                return 200, {"value": children}
            return 404, {"error": {"code": "ResourceNotFound", "message": f"{path} not found"}}
        if call.method == "POST" and path.endswith("/listKeys"):
            return 200, {"primaryKey": self.keys[0], "secondaryKey": self.keys[1]}
        if call.method == "DELETE":
            self.resources = {p: d for p, d in self.resources.items() if not p.startswith(path)}
            return 200, {}
        return 400, {"error": {"code": "BadRequest", "message": f"{call.method} {path} is not recorded"}}

    def _code_versions(self, path: str, content_hash: str) -> list[dict[str, Any]]:
        if content_hash not in self.code_hashes:
            return []
        version = f"{path.rsplit('/codes/', 1)[0]}/codes/uploaded-{content_hash[:12]}/versions/1"
        uri = f"https://store.blob.core.windows.net/code/{content_hash[:12]}"
        doc = {"id": version, "name": "1", "properties": {"codeUri": uri, "isAnonymous": True}}
        self.resources[version] = doc
        return [doc]

    def named(self, method: str, suffix: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path.rstrip("/").endswith(suffix)]


def _response(request: requests.PreparedRequest, status: int, doc: dict[str, Any]) -> requests.Response:
    data = json.dumps(doc).encode()
    response = requests.Response()
    response.status_code = status
    response.headers.update({"content-type": "application/json", "content-length": str(len(data))})
    response.raw = urllib3.HTTPResponse(
        body=io.BytesIO(data), headers=dict(response.headers), status=status, preload_content=False
    )
    response.url = request.url or ""
    response.request = request
    response.encoding = "utf-8"
    return response


class Credential:
    """A token credential that hands out a fixed token (azure-identity needs a real login)."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("recorded-token", 4_102_444_800)

    def get_token_info(self, *scopes: str, **kwargs: Any) -> Any:
        from azure.core.credentials import AccessTokenInfo

        return AccessTokenInfo("recorded-token", 4_102_444_800)


def ml_client(wire: Wire) -> Any:
    from azure.ai.ml import MLClient
    from azure.core.pipeline.transport import RequestsTransport

    session = requests.Session()
    session.mount("https://", wire)
    transport = RequestsTransport(session=session, session_owner=False)
    return MLClient(Credential(), SUBSCRIPTION, RESOURCE_GROUP, WORKSPACE, transport=transport)
