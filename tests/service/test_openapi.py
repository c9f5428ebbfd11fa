"""The API description covers every route of every protocol, every status each can answer, and its
schemas accept exactly the bodies the service accepts (checked with a JSON Schema validator)."""

from __future__ import annotations

import json

import pytest
import requests
from jsonschema import Draft202012Validator

from tests.conftest import FEATURES

KEY = "openapi-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def svc(example_model_pkl, tmp_path_factory):
    from tests.support.service import ServiceProcess

    env = {"DIABETES_API_KEYS": KEY, "DIABETES_MAX_ROWS": "50"}
    with ServiceProcess(str(example_model_pkl), env=env, log=tmp_path_factory.mktemp("log") / "s.log") as service:
        yield service


@pytest.fixture(scope="module")
def document(svc):
    return requests.get(svc.url + "/swagger.json", timeout=5).json()


def validator(document: dict, name: str) -> Draft202012Validator:
    """A JSON Schema validator for one component, reading OpenAPI 3.0's `nullable` as a null branch."""
    return Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": _nullable_as_null(document["components"])}
    )


def _nullable_as_null(schema):
    if isinstance(schema, list):
        return [_nullable_as_null(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _nullable_as_null(value) for key, value in schema.items() if key != "nullable"}
    if schema.get("nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


def test_every_route_of_every_protocol_is_described(svc, document):
    assert document["openapi"] == "3.0.3"
    described = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    assert described == {
        ("/", "GET"),
        ("/score", "POST"),
        ("/swagger.json", "GET"),
        ("/health/ready", "GET"),
        ("/metrics", "GET"),
        ("/ping", "GET"),
        ("/health", "GET"),
        ("/version", "GET"),
        ("/invocations", "POST"),
        ("/v2", "GET"),
        ("/v2/health/live", "GET"),
        ("/v2/health/ready", "GET"),
        ("/v2/models/{name}", "GET"),
        ("/v2/models/{name}/versions/{version}", "GET"),
        ("/v2/models/{name}/ready", "GET"),
        ("/v2/models/{name}/versions/{version}/ready", "GET"),
        ("/v2/models/{name}/infer", "POST"),
        ("/v2/models/{name}/versions/{version}/infer", "POST"),
    }
    for path, method in described:  # and each is really served, for the parameters described
        operation = document["paths"][path][method.lower()]
        url = path
        for parameter in operation.get("parameters", []):
            (value,) = parameter["schema"]["enum"]  # the served model's name and version
            url = url.replace("{" + parameter["name"] + "}", value)
        answer = requests.request(method, svc.url + url, headers=AUTH, timeout=5)
        assert answer.status_code != 404, path
    operation_ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids))


def test_every_reference_resolves(document):
    text = json.dumps(document)
    names = {part.split('"')[0] for part in text.split('"$ref": "#/components/schemas/')[1:]}
    assert names
    assert names <= set(document["components"]["schemas"])


def test_every_status_a_route_can_answer_is_listed(document):
    paths = document["paths"]
    assert set(paths["/score"]["post"]["responses"]) == {"200", "400", "401", "408", "413", "415", "422", "503"}
    assert set(paths["/invocations"]["post"]["responses"]) == {"200", "400", "401", "408", "413", "415", "503"}
    assert set(paths["/ping"]["get"]["responses"]) == {"200", "503"}  # a probe: no key
    assert set(paths["/version"]["get"]["responses"]) == {"200", "401"}
    assert set(paths["/swagger.json"]["get"]["responses"]) == {"200", "503"}
    error = paths["/score"]["post"]["responses"]["422"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorBody"}
    error = paths["/invocations"]["post"]["responses"]["400"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/MlflowError"}
    assert paths["/score"]["post"]["security"] == [{"bearerAuth": []}]
    assert "security" not in paths["/ping"]["get"]
    infer = paths["/v2/models/{name}/infer"]["post"]["responses"]
    assert set(infer) == {"200", "400", "401", "404", "408", "413", "415", "503"}
    assert infer["404"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/V2Error"}
    assert set(infer["200"]["content"]) == {"application/json", "application/octet-stream"}
    assert set(paths["/v2/health/live"]["get"]["responses"]) == {"200"}  # a probe: no key
    assert set(paths["/v2/models/{name}/ready"]["get"]["responses"]) == {"200", "401", "404", "503"}


ROW = [0.01] * 10
KEYED = dict(zip(FEATURES, ROW, strict=True))
SCORE_BODIES = [
    ({"data": [ROW]}, True),
    ({"data": [KEYED], "method": "predict"}, True),
    ({"input_data": {"columns": FEATURES, "index": [0], "data": [ROW]}}, True),
    ({"input_data": [ROW], "params": {"method": "predict"}}, True),
    ({"data": [ROW[:9]]}, False),
    ({"data": [{**KEYED, "x": 1.0}]}, False),
    ({"data": [ROW], "method": "predict_proba"}, False),  # the served regressor has no predict_proba
    ({"data": [[*ROW[:9], "1"]]}, False),
    ({"data": []}, False),
    ({"data": [ROW] * 51}, False),
    ({"input_data": {"columns": ["x"], "data": [ROW]}}, False),
    ({"input_data": 3}, False),
]
INVOCATION_BODIES = [
    ({"dataframe_split": {"columns": FEATURES, "data": [ROW]}}, True),
    ({"dataframe_records": [KEYED]}, True),
    ({"instances": [KEYED, ROW]}, True),
    ({"inputs": {name: [0.1] for name in FEATURES}}, True),
    ({"inputs": [ROW], "params": {"method": "predict"}}, True),
    ({"dataframe_split": {"columns": FEATURES, "data": [ROW[:9]]}}, False),
    ({"dataframe_records": [{"age": 1.0}]}, False),
    ({"inputs": {"age": ["x"]}}, False),
    ({"instances": [ROW], "params": {"method": "decision_function"}}, False),
]

TENSOR = {"name": "input-0", "shape": [1, 10], "datatype": "FP64", "data": ROW}
V2_BODIES = [
    ({"inputs": [TENSOR]}, True),
    ({"id": "7", "inputs": [TENSOR], "outputs": [{"name": "predict"}]}, True),
    ({"inputs": [TENSOR], "parameters": {"binary_data_output": False, "x": "y"}}, True),
    ({"inputs": [{**TENSOR, "data": ROW[:9]}]}, False),
    ({"inputs": [{**TENSOR, "shape": [1, 9]}]}, False),
    ({"inputs": [{**TENSOR, "datatype": "FP99"}]}, False),
    ({"inputs": [{**TENSOR, "data": [*ROW[:9], "1"]}]}, False),
    ({"inputs": [TENSOR], "outputs": [{"name": "predict_proba"}]}, False),
    ({"inputs": [TENSOR], "parameters": {"binary_data_output": "yes"}}, False),
    ({"inputs": []}, False),
]


@pytest.mark.parametrize(("body", "valid"), V2_BODIES)
def test_v2_infer_schema_agrees_with_the_service(svc, document, body, valid):
    operation = document["paths"]["/v2/models/{name}/infer"]["post"]
    (name,) = operation["parameters"][0]["schema"]["enum"]
    answer = requests.post(f"{svc.url}/v2/models/{name}/infer", json=body, headers=AUTH, timeout=5)
    assert (answer.status_code == 200) is valid, answer.text
    assert validator(document, "InferenceRequest").is_valid(body) is valid
    schema = "InferenceResponse" if valid else "V2Error"
    assert validator(document, schema).is_valid(answer.json())


@pytest.mark.parametrize(("body", "valid"), SCORE_BODIES)
def test_score_schema_agrees_with_the_service(svc, document, body, valid):
    answer = requests.post(svc.url + "/score", json=body, headers=AUTH, timeout=5)
    assert (answer.status_code == 200) is valid, answer.text
    assert validator(document, "ScoreBody").is_valid(body) is valid
    schema = "Predictions" if valid else "ErrorBody"
    assert validator(document, schema).is_valid(answer.json())


@pytest.mark.parametrize(("body", "valid"), INVOCATION_BODIES)
def test_invocations_schema_agrees_with_the_service(svc, document, body, valid):
    answer = requests.post(svc.url + "/invocations", json=body, headers=AUTH, timeout=5)
    assert (answer.status_code == 200) is valid, answer.text
    assert validator(document, "InvocationsRequest").is_valid(body) is valid
    schema = "MlflowPredictions" if valid else "MlflowError"
    assert validator(document, schema).is_valid(answer.json())


def test_examples_are_valid_requests(svc, document):
    for path in ("/score", "/invocations", "/v2/models/{name}/infer"):
        operation = document["paths"][path]["post"]
        content = operation["requestBody"]["content"]["application/json"]
        assert validator(document, content["schema"]["$ref"].rsplit("/", 1)[1]).is_valid(content["example"])
        url = path.replace("{name}", operation.get("parameters", [{"schema": {"enum": [""]}}])[0]["schema"]["enum"][0])
        answer = requests.post(svc.url + url, json=content["example"], headers=AUTH, timeout=5)
        assert answer.status_code == 200, (path, answer.text)
