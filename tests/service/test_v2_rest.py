"""The Open Inference Protocol (V2) over REST, against a real service process: Triton's own client,
`tritonclient.http`, unchanged (binary tensors by default, JSON on request), and raw HTTP for the
error bodies. The answers are compared with the same service's `/score` for the same rows."""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from tests.conftest import FEATURES
from tests.support.service import ServiceProcess

KEY = "v2-primary-key"
AUTH = {"Authorization": f"Bearer {KEY}"}


def auth() -> dict[str, str]:
    """A fresh headers dict for each tritonclient call: it adds its own headers to the dict it is given."""
    return dict(AUTH)


@pytest.fixture(scope="module", params=["regressor", "classifier"])
def served(request, embedded_store, tmp_path_factory):
    """(service, trained, kind): the registered model served by version."""
    trained = getattr(embedded_store, request.param)
    uri = f"models:/{trained['model_name']}/{trained['model_version']}"
    log = tmp_path_factory.mktemp(f"v2-{request.param}") / "service.log"
    with ServiceProcess(uri, env={**embedded_store.env, "DIABETES_API_KEYS": KEY}, log=log) as svc:
        yield svc, trained, request.param


@pytest.fixture
def client(served):
    svc, _, _ = served
    with_client = triton.InferenceServerClient(svc.url.removeprefix("http://"))
    yield with_client
    with_client.close()


def _name(served) -> str:
    return served[1]["model_name"]


def _version(served) -> str:
    return str(served[1]["model_version"])


def _score(served, rows, method: str) -> list:
    answer = requests.post(served[0].url + "/score", json={"data": rows, "method": method}, headers=auth(), timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _matrix_input(rows, binary: bool = True, datatype: str = "FP64") -> triton.InferInput:
    array = np.asarray(rows, dtype={"FP64": np.float64, "FP32": np.float32}[datatype])
    tensor = triton.InferInput("input-0", list(array.shape), datatype)
    tensor.set_data_from_numpy(array, binary_data=binary)
    return tensor


def test_health_and_metadata(served, client):
    name, version = _name(served), _version(served)
    assert client.is_server_live(headers=auth())
    assert client.is_server_ready(headers=auth())
    assert client.is_model_ready(name, headers=auth())
    assert client.is_model_ready(name, version, headers=auth())
    assert not client.is_model_ready("no_such_model", headers=auth())
    server = client.get_server_metadata(headers=auth())
    assert server["name"] == "diabetes-scoring"
    assert "binary_tensor_data" in server["extensions"]
    meta = client.get_model_metadata(name, headers=auth())
    assert meta["name"] == name
    assert meta["versions"] == [version]
    (matrix,) = meta["inputs"]
    assert (matrix["datatype"], matrix["shape"]) == ("FP64", [-1, 10])
    assert matrix["parameters"]["features"].split(",") == FEATURES
    outputs = {output["name"]: output for output in meta["outputs"]}
    assert outputs["predict"]["shape"] == [-1]
    if served[2] == "classifier":
        assert outputs["predict_proba"] == {
            "name": "predict_proba",
            "datatype": "FP64",
            "shape": [-1, 2],
            "parameters": {"classes": "[0, 1]"},  # the classifier's own labels, in classes_'s order
        }
    else:
        assert set(outputs) == {"predict"}


def test_probes_are_public_and_the_rest_needs_the_key(served):
    url = served[0].url
    assert requests.get(url + "/v2/health/live", timeout=5).json() == {"live": True}
    assert requests.get(url + "/v2/health/ready", timeout=5).json() == {"ready": True}
    refused = requests.get(url + "/v2", timeout=5)
    assert refused.status_code == 401
    assert "error" in refused.json()
    assert KEY not in refused.text


def test_infer_with_binary_tensors_by_default(served, client, example_data):
    rows = example_data.x_test[:5]
    result = client.infer(_name(served), [_matrix_input(rows)], headers=auth())
    predicted = result.as_numpy("predict")
    assert predicted.shape == (5,)
    assert predicted.tolist() == _score(served, rows, "predict")
    # tritonclient asked for every output in binary: the answer said so.
    (output,) = result.get_response()["outputs"]
    assert output["parameters"]["binary_data_size"] == predicted.nbytes
    if served[2] == "regressor":
        np.testing.assert_allclose(predicted[:2], [235.112, 246.799], atol=1e-3)


def test_infer_with_json_tensors_and_a_request_id(served, client, example_data):
    rows = example_data.x_test[:3]
    outputs = [triton.InferRequestedOutput("predict", binary_data=False)]
    result = client.infer(
        _name(served),
        [_matrix_input(rows, binary=False, datatype="FP32")],
        outputs=outputs,
        model_version=_version(served),
        request_id="req-42",
        headers=auth(),
    )
    response = result.get_response()
    assert response["id"] == "req-42"
    assert (response["model_name"], response["model_version"]) == (_name(served), _version(served))
    (output,) = response["outputs"]
    assert "data" in output
    assert output["shape"] == [3]
    expected = _score(served, np.asarray(rows, np.float32).astype(float).tolist(), "predict")
    np.testing.assert_allclose(result.as_numpy("predict"), expected, rtol=1e-12)


def test_outputs_by_name(served, client, example_data):
    rows = example_data.x_test[:4]
    name = _name(served)
    if served[2] == "regressor":
        with pytest.raises(InferenceServerException) as raised:
            client.infer(
                name, [_matrix_input(rows)], outputs=[triton.InferRequestedOutput("predict_proba")], headers=auth()
            )
        assert raised.value.status() == "400"
        assert "unknown output 'predict_proba'" in raised.value.message()
        return
    outputs = [triton.InferRequestedOutput("predict_proba"), triton.InferRequestedOutput("predict", binary_data=False)]
    result = client.infer(name, [_matrix_input(rows)], outputs=outputs, headers=auth())
    proba = result.as_numpy("predict_proba")
    assert proba.shape == (4, 2)
    np.testing.assert_allclose(proba, _score(served, rows, "predict_proba"), rtol=1e-12)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    # Sent binary, the output still says its classes beside binary_data_size.
    assert result.get_output("predict_proba")["parameters"]["classes"] == "[0, 1]"
    assert result.as_numpy("predict").tolist() == _score(served, rows, "predict")


def test_one_input_per_feature(served, client, example_data):
    rows = np.array(example_data.x_test[:6])
    inputs = []
    for name in reversed(FEATURES):
        tensor = triton.InferInput(name, [6, 1], "FP64")
        tensor.set_data_from_numpy(rows[:, [FEATURES.index(name)]])
        inputs.append(tensor)
    result = client.infer(_name(served), inputs, headers=auth())
    assert result.as_numpy("predict").tolist() == _score(served, rows.tolist(), "predict")


def test_a_wrong_shape_is_a_400_naming_it(served, client):
    with pytest.raises(InferenceServerException) as raised:
        client.infer(_name(served), [_matrix_input([[0.1] * 9])], headers=auth())
    assert raised.value.status() == "400"
    assert "inputs[0].shape" in raised.value.message()
    assert "expected [N, 10]" in raised.value.message()


def test_unknown_model_or_version_is_a_404(served, client):
    for name, version in [("no_such_model", ""), (_name(served), "999")]:
        with pytest.raises(InferenceServerException) as raised:
            client.infer(name, [_matrix_input([[0.1] * 10])], model_version=version, headers=auth())
        assert raised.value.status() == "404"
        assert _name(served) in raised.value.message()  # says what is served
        with pytest.raises(InferenceServerException) as raised:
            client.get_model_metadata(name, version, headers=auth())
        assert raised.value.status() == "404"


def _post(served, body: bytes | dict, headers: dict | None = None, path: str | None = None) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    path = path or f"/v2/models/{_name(served)}/infer"
    return requests.post(served[0].url + path, data=data, headers={**auth(), **(headers or {})}, timeout=10)


def _tensor(data, shape=(1, 10), datatype="FP64", name="input-0") -> dict:
    return {"name": name, "shape": list(shape), "datatype": datatype, "data": data}


@pytest.mark.parametrize(
    ("body", "headers", "status", "words"),
    [
        (b"{not json", None, 400, "malformed JSON"),
        (b"[]", None, 400, "JSON object"),
        ({"inputs": [_tensor([0.1] * 9 + ["0.1"])]}, None, 400, "inputs[0].data[9]: must be a number"),
        ({"inputs": [_tensor([0.1] * 9 + [True])]}, None, 400, "not a boolean"),
        ({"inputs": [_tensor([0.1] * 9)]}, None, 400, "shape [1, 10] needs 10"),
        ({"inputs": [_tensor([0.1] * 10, datatype="FP99")]}, None, 400, "inputs[0].datatype"),
        ({"inputs": [_tensor([0.1] * 10)], "outputs": [{"name": "nope"}]}, None, 400, "unknown output 'nope'"),
        ({"inputs": [{"name": "input-0", "shape": [1, 10], "datatype": "FP64"}]}, None, 400, "inputs[0].data"),
        ({"inputs": []}, None, 400, "inputs"),
        ({"inputs": [_tensor([0.1] * 10)]}, {"Content-Type": "text/csv"}, 415, "Content-Type"),
        ({"inputs": [_tensor([0.1] * 10)]}, {"Inference-Header-Content-Length": "99999"}, 400, "Inference-Header"),
        ({"inputs": [_tensor([1e308] * 10)]}, None, 400, "not finite"),
    ],
)
def test_bad_input_is_a_4xx_with_an_error_body(served, body, headers, status, words):
    if words == "not finite" and served[2] == "classifier":
        pytest.skip("the logistic function saturates: the classifier scores 1e308")
    answer = _post(served, body, headers)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]
    assert answer.headers["x-model-name"] == _name(served)


def test_binary_input_declared_longer_than_sent(served):
    header = json.dumps(
        {"inputs": [{"name": "input-0", "shape": [1, 10], "datatype": "FP64", "parameters": {"binary_data_size": 80}}]}
    ).encode()
    answer = _post(served, header + b"\0" * 40, {"Inference-Header-Content-Length": str(len(header))})
    assert answer.status_code == 400
    assert "binary_data_size" in answer.json()["error"]


def test_versioned_routes_and_404_bodies(served):
    url, name, version = served[0].url, _name(served), _version(served)
    assert requests.get(f"{url}/v2/models/{name}/versions/{version}/ready", headers=auth(), timeout=5).json() == {
        "name": name,
        "ready": True,
    }
    missing = requests.get(f"{url}/v2/models/{name}/versions/0", headers=auth(), timeout=5)
    assert missing.status_code == 404
    assert "no version '0'" in missing.json()["error"]
    ok = _post(served, {"inputs": [_tensor([0.1] * 10)]}, path=f"/v2/models/{name}/versions/{version}/infer")
    assert ok.status_code == 200
    assert ok.json()["outputs"][0]["name"] == "predict"
    # Any other path under /v2 is the protocol's own 404 body; outside it, the default protocol's.
    for path in ("/v2/nope", f"/v2/models/{name}/versions/{version}/explain", f"/v2/models/{name}/infer/x"):
        unmatched = requests.get(url + path, headers=auth(), timeout=5)
        assert unmatched.status_code == 404
        assert list(unmatched.json()) == ["error"]
        assert unmatched.json()["error"].startswith(f"no route {path}: ")
        assert "/docs" in unmatched.json()["error"]
    outside = requests.get(url + "/v2nope", headers=auth(), timeout=5)
    assert outside.status_code == 404
    assert "error" not in outside.json()


def test_the_common_body_and_the_general_path_agree(served, example_data):
    """A flat FP64 tensor takes the short path (plain dicts); nested data, another datatype or a
    parameter take the general one: the same rows get the same answers either way."""
    rows = example_data.x_test[:3]
    flat = [value for row in rows for value in row]
    bodies = [
        {"inputs": [_tensor(flat, shape=(3, 10))], "id": "a"},
        {"inputs": [_tensor(rows, shape=(3, 10))], "id": "a"},
        {"inputs": [_tensor(flat, shape=(3, 10))], "id": "a", "parameters": {"binary_data_output": False}},
    ]
    answers = [_post(served, body) for body in bodies]
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert answers[0].json() == answers[1].json() == answers[2].json()
    assert answers[0].json()["outputs"][0]["data"] == _score(served, rows, "predict")
    # Refusals on the short path's body shape still come worded by the general path.
    refused = _post(served, {"inputs": [_tensor(flat[:29], shape=(3, 10))]})
    assert refused.status_code == 400
    assert "needs 30" in refused.json()["error"]
    refused = _post(
        served, b'{"inputs": [{"name": "x", "shape": [1, 10], "datatype": "FP64", "data": [NaN' + b", 0.1" * 9 + b"]}]}"
    )
    assert refused.status_code == 400
    assert "error" in refused.json()
