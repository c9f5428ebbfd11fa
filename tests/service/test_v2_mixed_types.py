"""A mixed-type model over the Open Inference Protocol (V2, issue 16): one input per column, as
pandas-style V2 clients send a DataFrame (BYTES for strings, BOOL, INT64, FP64), with Triton's own
client, `tritonclient.http`, against the real service; every type mistake a 400 naming the input;
predict_proba saying its classes. Then the same rows through every protocol of the app in process
(/score, /invocations, Azure ML v2, V2) give the same answers as the model itself."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import requests
import tritonclient.http as triton

from tests.support.asgi import InProcess
from tests.support.mixed import COLUMNS, records, save_mixed_model
from tests.support.service import ServiceProcess

V2_TYPES = {"smoker": "BYTES", "age": "INT64", "active": "BOOL", "bmi": "FP64", "note": "BYTES"}
NUMPY = {"BYTES": np.object_, "INT64": np.int64, "INT32": np.int32, "BOOL": np.bool_, "FP64": np.float64}


@pytest.fixture(scope="module")
def mixed_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed-v2") / "model"
    model, frame = save_mixed_model(folder)
    return folder, model, frame


@pytest.fixture(scope="module")
def svc(mixed_model, tmp_path_factory):
    folder, _, _ = mixed_model
    log = tmp_path_factory.mktemp("log") / "s.log"
    with ServiceProcess(str(folder), log=log, ready_timeout=120, grpc=True) as service:
        answer = requests.post(service.url + "/score", json={"data": records(mixed_model[2].head(1))}, timeout=10)
        service.model_name = answer.headers["x-model-name"]  # type: ignore[attr-defined]
        yield service


def _frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS).astype({"note": object})


def _triton_inputs(rows: list[dict], binary: bool, types: dict[str, str] = V2_TYPES) -> list[triton.InferInput]:
    inputs = []
    for column in COLUMNS:
        datatype = types[column]
        values = np.array([row[column] for row in rows], dtype=NUMPY[datatype])
        tensor = triton.InferInput(column, [len(rows)], datatype)
        tensor.set_data_from_numpy(values, binary_data=binary)
        inputs.append(tensor)
    return inputs


def _v2_body(rows: list[dict], types: dict[str, str] = V2_TYPES, outputs=("predict",)) -> dict:
    inputs = [
        {"name": c, "datatype": types[c], "shape": [len(rows), 1], "data": [row[c] for row in rows]} for c in COLUMNS
    ]
    return {"inputs": inputs, "outputs": [{"name": name} for name in outputs]}


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_sends_one_input_per_column(svc, mixed_model, binary):
    _, model, frame = mixed_model
    rows = [row for row in records(frame.head(12)) if row["note"] is not None]  # tritonclient has no null
    client = triton.InferenceServerClient(svc.url.removeprefix("http://"))
    try:
        outputs = [triton.InferRequestedOutput(name, binary_data=binary) for name in ("predict", "predict_proba")]
        result = client.infer(svc.model_name, _triton_inputs(rows, binary), outputs=outputs)
        labels = [label.decode() if isinstance(label, bytes) else label for label in result.as_numpy("predict")]
        assert labels == model.predict(_frame(rows)).tolist()
        np.testing.assert_allclose(result.as_numpy("predict_proba"), model.predict_proba(_frame(rows)), rtol=1e-12)
        proba = result.get_output("predict_proba")
        assert json.loads(proba["parameters"]["classes"]) == ["high", "low"] == model.classes_.tolist()
        meta = client.get_model_metadata(svc.model_name)
    finally:
        client.close()
    assert [(i["name"], i["datatype"], i["shape"]) for i in meta["inputs"]] == [(c, V2_TYPES[c], [-1]) for c in COLUMNS]
    by_name = {i["name"]: i["parameters"] for i in meta["inputs"]}
    assert by_name["note"] == {"mlflow_type": "string", "optional": True, "content_type": "str"}
    assert by_name["age"] == {"mlflow_type": "long", "optional": False}
    described = {o["name"]: o for o in meta["outputs"]}
    assert json.loads(described["predict_proba"]["parameters"]["classes"]) == ["high", "low"]
    assert described["predict"]["datatype"] == "BYTES"


def test_narrower_or_wider_numbers_are_taken_where_they_fit(svc, mixed_model):
    """A long column takes INT32 too, a double column INT64 and FP32: what a V2 client's DataFrame may hold."""
    _, model, frame = mixed_model
    rows = records(frame.head(5))
    types = {**V2_TYPES, "age": "INT32", "bmi": "INT64"}
    whole = [{**row, "bmi": int(row["bmi"])} for row in rows]
    answer = requests.post(f"{svc.url}/v2/models/{svc.model_name}/infer", json=_v2_body(whole, types), timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"][0]["data"] == model.predict(_frame(whole)).tolist()


@pytest.mark.parametrize(
    ("column", "datatype", "data", "field", "words"),
    [
        ("age", "FP64", [30.0, 41.0], "inputs[1].datatype", "datatype FP64 does not fit column 'age' (long)"),
        ("smoker", "BOOL", [True, False], "inputs[0].datatype", "(string); send BYTES"),
        ("active", "INT64", [1, 0], "inputs[2].datatype", "send BOOL"),
        ("bmi", "BYTES", ["22.5", "30"], "inputs[3].datatype", "send FP64 or FP32"),
        ("smoker", "BYTES", ["no", None], "inputs.smoker[1]", "must not be null (the column is required)"),
        ("smoker", "BYTES", ["no", 3], "inputs[0].data[1]", "must be a string"),
        ("age", "INT64", [30, 1.5], "inputs[1].data", "whole numbers"),
        ("active", "BOOL", [True, "yes"], "inputs[2].data[1]", "must be true or false"),
        ("age", "INT32", [30, 2**31], "inputs[1].data", "out of the range of INT32"),
    ],
)
def test_every_type_mistake_is_a_400_naming_the_input(svc, mixed_model, column, datatype, data, field, words):
    body = _v2_body(records(mixed_model[2].head(2)))
    tensor = body["inputs"][COLUMNS.index(column)]
    tensor.update(datatype=datatype, data=data)
    answer = requests.post(f"{svc.url}/v2/models/{svc.model_name}/infer", json=body, timeout=10)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error.startswith(f"{field}: "), error
    assert words in error


def test_missing_unknown_or_repeated_columns_are_400s(svc, mixed_model):
    rows = records(mixed_model[2].head(2))
    url = f"{svc.url}/v2/models/{svc.model_name}/infer"
    body = _v2_body(rows)
    missing = {"inputs": body["inputs"][:-1]}
    assert requests.post(url, json=missing, timeout=10).json() == {
        "error": "inputs: missing input 'note': this model takes one tensor per column (smoker, age, active, bmi, note)"
    }
    matrix = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 5], "data": [0.0] * 5}]}
    answer = requests.post(url, json=matrix, timeout=10)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("inputs[0].name: unknown input 'input-0'")
    twice = {"inputs": [*body["inputs"], body["inputs"][0]]}
    assert "given twice" in requests.post(url, json=twice, timeout=10).json()["error"]


def test_null_where_optional_and_an_unseen_category_over_v2(svc, mixed_model):
    _, model, _ = mixed_model
    rows = [
        {"smoker": "never heard of it", "age": 50, "active": False, "bmi": 30.0, "note": None},
        {"smoker": "yes", "age": 61, "active": True, "bmi": 31.0, "note": "b"},
    ]
    body = _v2_body(rows, outputs=("predict_proba",))
    answer = requests.post(f"{svc.url}/v2/models/{svc.model_name}/infer", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    (output,) = answer.json()["outputs"]
    assert output["shape"] == [2, 2]
    np.testing.assert_allclose(np.reshape(output["data"], (2, 2)), model.predict_proba(_frame(rows)), rtol=1e-12)


def test_every_protocol_in_process_gives_the_models_answers(mixed_model):
    """The app in process, the same rows (a null, an unseen category) through each protocol's body."""
    from diabetes_service.settings import ServiceSettings
    from diabetes_service.transport.app import ScoringApp

    folder, model, frame = mixed_model
    rows = records(frame.head(7))
    rows.append({"smoker": "pipe", "age": 70, "active": False, "bmi": 35.5, "note": None})
    lists = [[row[c] for c in COLUMNS] for row in rows]
    expected = model.predict(_frame(rows)).tolist()
    expected_proba = model.predict_proba(_frame(rows))
    app = ScoringApp(ServiceSettings(model_path=str(folder), access_log=False, allow_pickle=True))
    app.lifecycle.load()
    client = InProcess(app)
    try:
        name = app.state.core.identity.name  # type: ignore[union-attr]
        bodies = {
            "/score": {"data": rows, "method": "{method}"},
            "/score lists": {"data": lists, "method": "{method}"},
            "azure v2": {"input_data": {"columns": COLUMNS, "data": lists}, "params": {"method": "{method}"}},
            "/invocations split": {
                "dataframe_split": {"columns": COLUMNS, "data": lists},
                "params": {"method": "{method}"},
            },
            "/invocations records": {"dataframe_records": rows, "params": {"method": "{method}"}},
        }
        for method, want in (("predict", expected), ("predict_proba", expected_proba)):
            for label, template in bodies.items():
                body = json.loads(json.dumps(template).replace("{method}", method))
                path = "/invocations" if label.startswith("/invocations") else "/score"
                status, answer = client.call("POST", path, body)
                assert status == 200, (label, answer)
                got = answer["predictions"] if path == "/invocations" else answer
                if method == "predict":
                    assert got == want, label
                else:
                    np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=label)
            status, answer = client.call("POST", f"/v2/models/{name}/infer", _v2_body(rows, outputs=(method,)))
            assert status == 200, answer
            (output,) = answer["outputs"]
            if method == "predict":
                assert output["data"] == want
            else:
                np.testing.assert_allclose(np.reshape(output["data"], output["shape"]), want, rtol=1e-12)
                assert json.loads(output["parameters"]["classes"]) == model.classes_.tolist()
    finally:
        client.close()


def test_grpc_takes_one_input_per_column_too(svc, mixed_model):
    """The same data plane over gRPC (tritonclient.grpc, raw contents): labels, probabilities, classes."""
    import tritonclient.grpc as triton_grpc

    _, model, frame = mixed_model
    rows = [row for row in records(frame.head(9)) if row["note"] is not None]
    inputs = []
    for column in COLUMNS:
        datatype = V2_TYPES[column]
        tensor = triton_grpc.InferInput(column, [len(rows)], datatype)
        tensor.set_data_from_numpy(np.array([row[column] for row in rows], dtype=NUMPY[datatype]))
        inputs.append(tensor)
    client = triton_grpc.InferenceServerClient(svc.grpc_target)
    try:
        outputs = [triton_grpc.InferRequestedOutput(name) for name in ("predict", "predict_proba")]
        result = client.infer(svc.model_name, inputs, outputs=outputs)
    finally:
        client.close()
    assert [label.decode() for label in result.as_numpy("predict")] == model.predict(_frame(rows)).tolist()
    np.testing.assert_allclose(result.as_numpy("predict_proba"), model.predict_proba(_frame(rows)), rtol=1e-12)
    proba = result.get_output("predict_proba")
    assert json.loads(proba.parameters["classes"].string_param) == model.classes_.tolist()
