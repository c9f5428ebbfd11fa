"""URL derivation for the three URL forms, and features read from Azure ML's own Swagger 2.0 description."""

from __future__ import annotations

import json

import pytest

from diabetes_client import Client, Endpoints, Feature
from diabetes_client.features import features_from_openapi
from tests.client.scripted_server import Answer, ScriptedServer


@pytest.mark.parametrize(
    ("url", "base"),
    [
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("http://127.0.0.1:8080/score", "http://127.0.0.1:8080"),
        (
            "http://20.1.2.3:80/api/v1/service/diabetes-service/score",
            "http://20.1.2.3:80/api/v1/service/diabetes-service",
        ),
        (
            "https://diabetes-ep.westeurope.inference.ml.azure.com/score",
            "https://diabetes-ep.westeurope.inference.ml.azure.com",
        ),
        (
            "https://diabetes-ep.westeurope.inference.ml.azure.com/score/",
            "https://diabetes-ep.westeurope.inference.ml.azure.com",
        ),
    ],
)
def test_every_url_is_derived_from_the_root_or_the_scoring_uri(url, base):
    endpoints = Endpoints.from_url(url)
    assert endpoints == Endpoints(
        base=base,
        score=base + "/score",
        swagger=base + "/swagger.json",
        live=base + "/",
        ready=base + "/health/ready",
    )


def test_a_query_string_stays_on_the_scoring_call_only():
    endpoints = Endpoints.from_url("https://fn.example.test/api/score?code=abc")
    assert endpoints.score == "https://fn.example.test/api/score?code=abc"
    assert endpoints.swagger == "https://fn.example.test/api/swagger.json"


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "ftp://host/score", "http://", ""])
def test_a_url_that_is_not_http_is_refused(url):
    with pytest.raises(ValueError, match="not an http"):
        Client(url)


@pytest.mark.parametrize(("kwargs", "match"), [({"retries": -1}, "retries"), ({"max_rows_per_request": 0}, "max_rows")])
def test_nonsense_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Client("http://127.0.0.1:8080", **kwargs)


# The shape Azure ML's inference-schema scoring containers publish (Swagger 2.0, `definitions`).
AZURE_ML_SWAGGER = {
    "swagger": "2.0",
    "info": {"title": "diabetes-service", "version": "1.0"},
    "basePath": "/",
    "paths": {
        "/": {"get": {"operationId": "ServiceHealthCheck", "responses": {"200": {"description": "Healthy"}}}},
        "/score": {
            "post": {
                "operationId": "RunMLService",
                "parameters": [
                    {"name": "serviceInputPayload", "in": "body", "schema": {"$ref": "#/definitions/ServiceInput"}}
                ],
                "responses": {"200": {"schema": {"$ref": "#/definitions/ServiceOutput"}}},
            }
        },
    },
    "definitions": {
        "ServiceInput": {
            "type": "object",
            "properties": {"data": {"type": "array", "items": {"$ref": "#/definitions/InputRow"}}},
        },
        "InputRow": {
            "type": "object",
            "required": ["age", "sex", "bmi"],
            "properties": {
                "age": {"type": "number", "format": "double"},
                "sex": {"type": "integer", "format": "int64"},
                "bmi": {"type": ["number", "null"]},
            },
        },
        "ServiceOutput": {"type": "array", "items": {"type": "number"}},
    },
}


def test_features_from_an_azure_ml_swagger_2_document():
    assert features_from_openapi(AZURE_ML_SWAGGER) == (
        Feature("age", "number", "double"),
        Feature("sex", "integer", "int64"),
        Feature("bmi", "number", None),
    )


@pytest.mark.parametrize("document", [None, [], {}, {"paths": {}}, {"paths": {"/score": {"post": {}}}}])
def test_a_description_without_a_row_schema_has_no_features(document):
    assert features_from_openapi(document) == ()


AKS_PATH = "/api/v1/service/diabetes-service/score"


def test_features_through_an_aks_scoring_uri():
    answer = Answer(200, json.dumps(AZURE_ML_SWAGGER).encode())
    with ScriptedServer([answer]) as server, Client(server.url + AKS_PATH, retries=0) as client:
        assert [f.name for f in client.features] == ["age", "sex", "bmi"]
        assert [f.name for f in client.features] == ["age", "sex", "bmi"]  # read once, then kept
    assert [r.path for r in server.received] == ["/api/v1/service/diabetes-service/swagger.json"]


def test_features_from_a_body_that_takes_several_forms():
    """This service's /score body: anyOf the v1 body (with `data`) and Azure ML's v2 body."""
    row = {"type": "object", "properties": {"age": {"type": "number", "format": "double"}, "bmi": {"type": "number"}}}
    v1 = {"type": "object", "properties": {"data": {"type": "array", "items": {"$ref": "#/components/schemas/Row"}}}}
    v2 = {"type": "object", "properties": {"input_data": {"type": "array"}}}
    document = {
        "openapi": "3.0.3",
        "paths": {
            "/score": {
                "post": {
                    "requestBody": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Body"}}}}
                }
            }
        },
        "components": {
            "schemas": {
                "Row": row,
                "V1": v1,
                "V2": v2,
                "Body": {"anyOf": [{"$ref": "#/components/schemas/V2"}, {"$ref": "#/components/schemas/V1"}]},
            }
        },
    }
    assert features_from_openapi(document) == (Feature("age", "number", "double"), Feature("bmi", "number"))
