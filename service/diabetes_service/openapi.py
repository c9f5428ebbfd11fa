"""The OpenAPI document of `/score`, built from the served model's signature.

One schema property per feature (name and type), so that the Swagger page, code generators and
`diabetes_client` all learn the model's inputs from the service itself.
"""

from __future__ import annotations

from typing import Any

from diabetes_service.core import ScoringCore

# MLflow column types to JSON Schema.
_JSON_TYPES = {
    "double": {"type": "number", "format": "double"},
    "float": {"type": "number", "format": "float"},
    "long": {"type": "integer", "format": "int64"},
    "integer": {"type": "integer", "format": "int32"},
    "boolean": {"type": "number"},
}


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def openapi_document(core: ScoringCore, *, title: str, auth_enabled: bool) -> dict[str, Any]:
    names = list(core.feature_names)
    properties = {f.name: dict(_JSON_TYPES.get(f.type, {"type": "number"})) for f in core.features}
    # Feature-keyed example rows: the Swagger page then shows every feature name in the example body.
    example_rows = [dict(zip(names, row, strict=True)) for row in core.example_rows[:1]]
    result_schema: dict[str, Any] = {
        "type": "array",
        "description": "One entry per row: a number for predict, a list of class probabilities for predict_proba.",
        "items": {"oneOf": [{"type": "number"}, {"type": "array", "items": {"type": "number"}}]},
    }
    document: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {
            "title": title,
            "version": core.identity.version,
            "description": f"Scores the registered model `{core.identity.name}` version {core.identity.version} "
            f"({core.model_class}). Methods: {', '.join(core.methods)}. "
            f"Features, in order: {', '.join(f'{f.name} ({f.type})' for f in core.features)}.",
        },
        "paths": {
            "/score": {
                "post": {
                    "summary": "Score rows with the model",
                    "operationId": "score",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {"$ref": "#/components/schemas/ScoreRequest"},
                                "example": {"data": example_rows, "method": core.default_method},
                            }
                        },
                    },
                    "responses": {
                        "200": {
                            "description": "Predictions",
                            "content": {"application/json": {"schema": result_schema}},
                        },
                        "400": _error("Malformed JSON"),
                        "401": _error("Missing or invalid API key"),
                        "408": _error("The prediction took longer than the scoring timeout"),
                        "413": _error("Body or row count over the limit"),
                        "415": _error("Content type is not application/json"),
                        "422": _error("Invalid input: the message names the field and the problem"),
                        "503": _error("Too many requests in flight, or the model not loaded yet: retry"),
                    },
                }
            },
            "/": {
                "get": {
                    "summary": "Liveness",
                    "operationId": "liveness",
                    "responses": {"200": {"description": "Healthy"}},
                }
            },
            "/health/ready": {
                "get": {
                    "summary": "Readiness",
                    "operationId": "readiness",
                    "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready"}},
                }
            },
        },
        "components": {
            "schemas": {
                "Row": {
                    "type": "object",
                    "description": "One row keyed by feature name.",
                    "properties": properties,
                    "required": names,
                    "additionalProperties": False,
                },
                "RowValues": {
                    "type": "array",
                    "description": f"One row as {len(names)} numbers in this order: {', '.join(names)}.",
                    "items": {"type": "number"},
                    "minItems": len(names),
                    "maxItems": len(names),
                },
                "ScoreRequest": {
                    "type": "object",
                    "required": ["data"],
                    "additionalProperties": False,
                    "properties": {
                        "data": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": core.max_rows,
                            "items": {
                                "oneOf": [
                                    {"$ref": "#/components/schemas/RowValues"},
                                    {"$ref": "#/components/schemas/Row"},
                                ]
                            },
                        },
                        "method": {
                            "type": "string",
                            # null means left out, as in the wire schema (OpenAPI 3.0 wants it in the enum too).
                            "nullable": True,
                            "enum": [*core.methods, None],
                            "description": f"Left out: {core.default_method}.",
                        },
                    },
                },
                "Error": {
                    "type": "object",
                    "required": ["message"],
                    "properties": {
                        "message": {"type": "string"},
                        "field": {"type": "string", "nullable": True},
                    },
                },
            },
        },
    }
    if auth_enabled:
        document["components"]["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
        document["paths"]["/score"]["post"]["security"] = [{"bearerAuth": []}]
    return document
