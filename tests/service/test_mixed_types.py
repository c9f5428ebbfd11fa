"""A mixed-type model (issue 16): a Pipeline with a ColumnTransformer selecting string, long,
boolean, double and optional columns by name, logged with MLflow's inferred signature, served by the
real service; every protocol's body scores it as the model itself does, and every type mistake is a
4xx naming the row and the column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import requests

from tests.support.mixed import COLUMNS, records, save_mixed_model
from tests.support.service import ServiceProcess


@pytest.fixture(scope="module")
def mixed_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed") / "model"
    model, frame = save_mixed_model(folder)
    return folder, model, frame


@pytest.fixture(scope="module")
def svc(mixed_model, tmp_path_factory):
    folder, _, _ = mixed_model
    with ServiceProcess(str(folder), log=tmp_path_factory.mktemp("log") / "s.log", ready_timeout=120) as service:
        yield service


def test_every_protocol_scores_as_the_model_does(svc, mixed_model):
    _, model, frame = mixed_model
    head = frame.head(8)
    expected = model.predict(head).tolist()
    expected_proba = model.predict_proba(head).tolist()
    rows = records(head)
    lists = [[r[c] for c in COLUMNS] for r in rows]
    assert set(expected) <= {"high", "low"}  # the model's own string labels, as predict answers them
    answers = {
        "score objects": requests.post(svc.url + "/score", json={"data": rows, "method": "predict"}, timeout=10),
        "score lists": requests.post(svc.url + "/score", json={"data": lists, "method": "predict"}, timeout=10),
        "azure v2": requests.post(
            svc.url + "/score",
            json={
                "input_data": {"columns": COLUMNS[::-1], "data": [row[::-1] for row in lists]},
                "params": {"method": "predict"},
            },
            timeout=10,
        ),
    }
    for name, answer in answers.items():
        assert answer.status_code == 200, (name, answer.text)
        assert answer.json() == expected, name
    invocations = [
        {"dataframe_split": {"columns": COLUMNS, "data": lists}},
        {"dataframe_records": rows},
        {"inputs": {c: [r[c] for r in rows] for c in COLUMNS}},
    ]
    for body in invocations:
        answer = requests.post(svc.url + "/invocations", json=body, timeout=10)
        assert answer.status_code == 200, (body, answer.text)
        assert answer.json() == {"predictions": expected}
    csv = "\n".join([",".join(COLUMNS)] + [",".join("" if v is None else str(v) for v in row) for row in lists]) + "\n"
    answer = requests.post(svc.url + "/invocations", data=csv, headers={"Content-Type": "text/csv"}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": expected}
    proba = requests.post(svc.url + "/score", json={"data": rows, "method": "predict_proba"}, timeout=10).json()
    np.testing.assert_allclose(proba, expected_proba, rtol=1e-9)
    decision = requests.post(svc.url + "/score", json={"data": rows, "method": "decision_function"}, timeout=10)
    np.testing.assert_allclose(decision.json(), model.decision_function(head), rtol=1e-9)


def test_an_unseen_category_is_the_models_business(svc, mixed_model):
    _, model, _ = mixed_model
    row = {"smoker": "never heard of it", "age": 50, "active": False, "bmi": 30.0, "note": None}
    answer = requests.post(svc.url + "/score", json={"data": [row], "method": "predict"}, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.json() == model.predict(pd.DataFrame([row]).astype({"note": object})).tolist()


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        ("age", 1.5, "must be an integer"),
        ("age", "1", "must be an integer"),
        ("active", 1, "must be a boolean"),
        ("smoker", 3, "must be a string"),
        ("bmi", "2.0", "must be a number"),
        ("smoker", None, "must not be null"),
    ],
)
def test_every_type_mistake_is_a_4xx_naming_row_and_column(svc, column, value, words):
    good = {"smoker": "no", "age": 30, "active": True, "bmi": 22.5, "note": "a"}
    body = {"data": [good, {**good, column: value}], "method": "predict"}
    answer = requests.post(svc.url + "/score", json=body, timeout=10)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == f"data[1].{column}"
    assert words in answer.json()["message"]
    mlflow_answer = requests.post(svc.url + "/invocations", json={"dataframe_records": body["data"]}, timeout=10)
    assert mlflow_answer.status_code == 400
    assert f"dataframe_records[1].{column}" in mlflow_answer.json()["message"]


def test_null_is_accepted_where_the_column_is_optional(svc, mixed_model):
    _, model, _ = mixed_model
    row = {"smoker": "yes", "age": 61, "active": True, "bmi": 31.0, "note": None}
    answer = requests.post(svc.url + "/score", json={"data": [row], "method": "predict_proba"}, timeout=10)
    assert answer.status_code == 200, answer.text
    np.testing.assert_allclose(answer.json(), model.predict_proba(pd.DataFrame([row]).astype({"note": object})))


def test_the_api_description_shows_real_types_categories_and_the_example(svc):
    document = requests.get(svc.url + "/swagger.json", timeout=10).json()
    row = document["components"]["schemas"]["Row"]["properties"]
    assert row["smoker"] == {"type": "string", "enum": ["former", "no", "yes"]}
    assert row["age"] == {"type": "integer", "format": "int64"}
    assert row["active"] == {"type": "boolean"}
    assert row["bmi"] == {"type": "number", "format": "double"}
    # Encoded after an imputer: the encoder's categories are not the input's, so no enum is claimed.
    assert row["note"] == {"type": "string", "nullable": True}
    assert "Classes, in the order of predict_proba's" in document["info"]["description"]
    example = document["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]["example"]
    assert example["data"][0] == {"smoker": "yes", "age": 20, "active": True, "bmi": 18.0, "note": None}
    answer = requests.post(svc.url + "/score", json=example, timeout=10)
    assert answer.status_code == 200, answer.text
    # V2: one input per column, of its datatype, the categories as an enum; its example is scored.
    schemas = document["components"]["schemas"]
    inputs = schemas["InferenceRequest"]["properties"]["inputs"]
    assert (inputs["minItems"], inputs["maxItems"]) == (5, 5)
    smoker = schemas["ColumnInput0"]["properties"]
    assert smoker["datatype"]["enum"] == ["BYTES"]
    assert smoker["data"]["items"] == {"type": "string", "enum": ["former", "no", "yes"]}
    assert schemas["ColumnInput1"]["properties"]["datatype"]["enum"][0] == "INT64"
    infer = document["paths"]["/v2/models/{name}/infer"]["post"]
    v2_example = infer["requestBody"]["content"]["application/json"]["example"]
    assert [(i["name"], i["datatype"]) for i in v2_example["inputs"]] == [
        ("smoker", "BYTES"),
        ("age", "INT64"),
        ("active", "BOOL"),
        ("bmi", "FP64"),
        ("note", "BYTES"),
    ]
    name = answer.headers["x-model-name"]
    answer = requests.post(f"{svc.url}/v2/models/{name}/infer", json=v2_example, timeout=10)
    assert answer.status_code == 200, answer.text


@pytest.mark.slow
def test_mlflow_models_serve_gives_the_same_answers(svc, mixed_model, tmp_path):
    """Differential: a real `mlflow models serve` on the same model folder, the same bodies."""
    import json

    from tests.support.mlflow_serve import MlflowModelServer

    folder, _, frame = mixed_model
    rows = records(frame.head(9))
    lists = [[r[c] for c in COLUMNS] for r in rows]
    csv = "\n".join([",".join(COLUMNS)] + [",".join("" if v is None else str(v) for v in row) for row in lists]) + "\n"
    bodies = [
        ({"dataframe_split": {"columns": COLUMNS, "data": lists}}, "application/json"),
        ({"dataframe_split": {"columns": COLUMNS[::-1], "data": [row[::-1] for row in lists]}}, "application/json"),
        ({"dataframe_records": rows}, "application/json"),
        ({"dataframe_records": [{**r, "extra": 1} for r in rows]}, "application/json"),
        (csv, "text/csv"),
    ]
    with MlflowModelServer(str(folder), f"sqlite:///{tmp_path / 'unused.db'}", tmp_path / "theirs.log") as theirs:
        for body, content_type in bodies:
            data = body if isinstance(body, str) else json.dumps(body)
            headers = {"Content-Type": content_type}
            mine = requests.post(svc.url + "/invocations", data=data, headers=headers, timeout=30)
            reference = requests.post(theirs.url + "/invocations", data=data, headers=headers, timeout=30)
            assert reference.status_code == 200, (body, reference.text)
            assert mine.status_code == 200, (body, mine.text)
            assert mine.json() == reference.json(), body
        # Deliberately stricter than MLflow: it scores a long given 1.5 (a silently truncated
        # value); the contract says a long takes integers only.
        bad = {"dataframe_records": [{**rows[0], "age": 1.5}]}
        assert requests.post(theirs.url + "/invocations", json=bad, timeout=30).status_code == 200
        refused = requests.post(svc.url + "/invocations", json=bad, timeout=30)
        assert refused.status_code == 400
        assert refused.json()["message"].startswith("dataframe_records[0].age: must be an integer")


@pytest.mark.slow
def test_diabetes_train_task_pipeline_is_served_with_its_string_and_integer_columns(tmp_path, service):
    from tests.conftest import run_train

    trained = run_train(tmp_path, "--task", "pipeline")
    assert trained["model_name"] == "diabetes_pipeline"
    env = {"DIABETES_HOME": str(tmp_path), "DIABETES_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns.db'}"}
    with service(f"models:/diabetes_pipeline/{trained['model_version']}", env=env, ready_timeout=120) as svc:
        document = requests.get(svc.url + "/swagger.json", timeout=10).json()
        row = document["components"]["schemas"]["Row"]["properties"]
        assert row["sex"] == {"type": "string", "enum": ["female", "male"]}
        assert row["age"] == {"type": "integer", "format": "int64"}
        example = document["paths"]["/score"]["post"]["requestBody"]["content"]["application/json"]["example"]
        answer = requests.post(svc.url + "/score", json=example, timeout=10)
        assert answer.status_code == 200, answer.text
        assert isinstance(answer.json()[0], float)
        bad = {"data": [{**example["data"][0], "sex": 0.05}]}
        assert requests.post(svc.url + "/score", json=bad, timeout=10).status_code == 422


def test_version_check_warns_on_a_minor_and_refuses_a_major_difference(caplog):
    from diabetes_service.errors import ModelLoadError
    from diabetes_service.model.versions import check_version

    with caplog.at_level("WARNING", logger="diabetes_service"):
        check_version("1.7.2", allow_mismatch=False, installed="1.9.1")
    assert "1.7.2" in caplog.text
    assert "1.9.1" in caplog.text
    with pytest.raises(ModelLoadError, match=r"0\.24\.2.*1\.9\.1.*--allow-version-mismatch"):
        check_version("0.24.2", allow_mismatch=False, installed="1.9.1")
    check_version("0.24.2", allow_mismatch=True, installed="1.9.1")  # allowed: a warning only
    check_version("1.9.0", allow_mismatch=False, installed="1.9.1")  # a patch release: nothing to say


def test_a_model_from_another_major_version_needs_the_flag(mixed_model, tmp_path, service):
    import shutil

    import yaml

    folder = tmp_path / "old"
    shutil.copytree(mixed_model[0], folder)
    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    mlmodel["flavors"]["sklearn"]["sklearn_version"] = "0.24.2"
    (folder / "MLmodel").write_text(yaml.safe_dump(mlmodel))
    refused = service(str(folder))
    with pytest.raises(RuntimeError):
        refused.start()
    assert "scikit-learn 0.24.2" in refused.output()
    assert "--allow-version-mismatch" in refused.output()
    with service(str(folder), args=["--allow-version-mismatch"]) as served:
        row = {"smoker": "no", "age": 30, "active": True, "bmi": 22.5, "note": "a"}
        assert requests.post(served.url + "/score", json={"data": [row]}, timeout=10).status_code == 200
    assert "served anyway" in served.output()
