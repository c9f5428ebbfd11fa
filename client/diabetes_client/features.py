"""Reading the model's features (names and types) from the service's OpenAPI description.

The description comes from this service, from Azure ML's own scoring containers (Swagger 2.0,
``definitions``) or from anything else that documents ``POST /score`` with a ``data`` array of
rows; ``$ref`` chains and ``oneOf``/``anyOf`` row variants are followed until an object schema with
one property per feature turns up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_MAX_DEPTH = 32


@dataclass(frozen=True)
class Feature:
    """One input feature of the served model.

    Attributes:
        name: the feature's name, as rows keyed by name must spell it (``"bmi"``).
        type: its JSON schema type (``"number"``, ``"integer"``, ``"string"``, ``"boolean"``).
        format: its JSON schema format when the description gives one (``"double"``), else ``None``.
    """

    name: str
    type: str
    format: str | None = None


def features_from_openapi(document: Any) -> tuple[Feature, ...]:
    """The features of the row schema of ``POST /score``, in the description's order.

    Returns an empty tuple when the description documents no row schema with named properties.
    """
    if not isinstance(document, dict):
        return ()
    reader = _Reader(document)
    body = reader.score_body()
    row = reader.row_object(body) if body is not None else None
    if row is None:
        return ()
    return tuple(_feature(name, reader.resolve(schema)) for name, schema in row.get("properties", {}).items())


def _feature(name: str, schema: dict[str, Any]) -> Feature:
    kind = schema.get("type")
    if isinstance(kind, list):  # JSON schema 2020-12: ["number", "null"]
        kind = next((k for k in kind if k != "null"), None)
    if kind is None:
        for variant in schema.get("anyOf", []) or schema.get("oneOf", []):
            if isinstance(variant, dict) and variant.get("type") not in (None, "null"):
                kind = variant["type"]
                break
    form = schema.get("format")
    return Feature(name=name, type=str(kind or "number"), format=form if isinstance(form, str) else None)


class _Reader:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document

    def resolve(self, schema: Any) -> dict[str, Any]:
        """Follow ``$ref`` (local ones only) until a schema object turns up."""
        for _ in range(_MAX_DEPTH):
            if not isinstance(schema, dict):
                return {}
            ref = schema.get("$ref")
            if not isinstance(ref, str) or not ref.startswith("#/"):
                return schema
            target: Any = self.document
            for part in ref[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                target = target.get(part) if isinstance(target, dict) else None
            schema = target
        return {}

    def score_body(self) -> dict[str, Any] | None:
        """The request body schema of ``POST .../score`` (OpenAPI 3 or Swagger 2)."""
        paths = self.document.get("paths")
        if not isinstance(paths, dict):
            return None
        candidates = sorted(
            (path for path in paths if isinstance(path, str) and path.rstrip("/").endswith("/score")),
            key=len,
        )
        for path in candidates:
            operation = paths[path].get("post") if isinstance(paths[path], dict) else None
            if not isinstance(operation, dict):
                continue
            body = self.resolve(operation.get("requestBody"))
            content = body.get("content")
            if isinstance(content, dict) and content:
                media = content.get("application/json") or next(iter(content.values()))
                if isinstance(media, dict):
                    return self.resolve(media.get("schema"))
            for parameter in operation.get("parameters", []):
                parameter = self.resolve(parameter)
                if parameter.get("in") == "body":
                    return self.resolve(parameter.get("schema"))
        return None

    def row_object(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The object schema of one row: ``body.properties.data.items``, variants followed (a body
        that may take several forms, such as v1 ``data`` or v2 ``input_data``, is ``anyOf`` them)."""
        for key in ("anyOf", "oneOf"):
            for variant in body.get(key, []) or []:
                variant = self.resolve(variant)
                if "data" in (variant.get("properties") or {}):
                    body = variant
                    break
        data = self.resolve(body.get("properties", {}).get("data"))
        items = self.resolve(data.get("items"))
        return self._object_with_properties(items, 0)

    def _object_with_properties(self, schema: dict[str, Any], depth: int) -> dict[str, Any] | None:
        if depth > _MAX_DEPTH:
            return None
        properties = schema.get("properties")
        if isinstance(properties, dict) and properties:
            return schema
        for key in ("oneOf", "anyOf", "allOf"):
            for variant in schema.get(key, []) or []:
                found = self._object_with_properties(self.resolve(variant), depth + 1)
                if found is not None:
                    return found
        return None
