"""Typed columns beyond the mixed pipeline's (issue 16): a `datetime`, an `integer` (int32) and a
`float` (float32) column, as MLflow infers them from a DataFrame, served by the real service: each
protocol's body scores as the model does on the DataFrame of those dtypes, the API description shows
each type, and each type's mistakes are 4xx naming the row and the column."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import requests
import yaml

from tests.support.service import ServiceProcess

COLUMNS = ["when", "visits", "weight", "region"]


def _training_frame() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(5)
    n = 60
    frame = pd.DataFrame(
        {
            "when": pd.to_datetime("2024-01-01") + pd.to_timedelta(rng.integers(0, 365 * 24, n), unit="h"),
            "visits": rng.integers(0, 40, n).astype("int32"),
            "weight": rng.normal(70, 12, n).astype("float32"),
            "region": rng.choice(["north", "south"], n).astype(object),
        }
    )
    target = frame["when"].dt.day_of_year * 0.1 + frame["visits"] * 2 + frame["weight"].astype(float) * 0.5
    return frame, target.to_numpy()


@pytest.fixture(scope="module")
def typed_model(tmp_path_factory):
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    frame, target = _training_frame()
    # The datetime column enters the model as its day of the year (a lambda: saved by value).
    day = FunctionTransformer(lambda x: x.apply(lambda column: column.dt.day_of_year).to_numpy(dtype=float))
    columns = ColumnTransformer(
        [
            ("day", day, ["when"]),
            ("numbers", StandardScaler(), ["visits", "weight"]),
            ("region", OneHotEncoder(handle_unknown="ignore"), ["region"]),
        ]
    )
    model = Pipeline([("columns", columns), ("model", LinearRegression())]).fit(frame, target)
    folder = tmp_path_factory.mktemp("typed") / "model"
    mlflow.sklearn.save_model(
        model,
        folder,
        signature=infer_signature(frame, model.predict(frame)),
        input_example=frame.head(2),
        serialization_format="cloudpickle",
    )
    return folder, model


@pytest.fixture(scope="module")
def svc(typed_model, tmp_path_factory):
    with ServiceProcess(str(typed_model[0]), log=tmp_path_factory.mktemp("log") / "s.log", ready_timeout=120) as s:
        yield s


ROWS = [
    {"when": "2024-05-01T13:45:00", "visits": 3, "weight": 71.5, "region": "north"},
    # An offset is turned into UTC, as pandas' naive datetime64 column holds it: 2024-12-31T23:30 UTC.
    {"when": "2025-01-01T01:30:00+02:00", "visits": 39, "weight": 55.25, "region": "south"},
    {"when": "2024-02-29", "visits": 0, "weight": 90.0, "region": "a region it never saw"},
]


def _expected(model) -> np.ndarray:
    frame = pd.DataFrame(
        {
            "when": pd.to_datetime(["2024-05-01T13:45:00", "2024-12-31T23:30:00", "2024-02-29"], format="ISO8601"),
            "visits": np.array([3, 39, 0], dtype="int32"),
            "weight": np.array([71.5, 55.25, 90.0], dtype="float32"),
            "region": pd.Series(["north", "south", "a region it never saw"], dtype=object),
        }
    )
    return model.predict(frame)


def test_the_signature_holds_datetime_integer_and_float(typed_model):
    mlmodel = yaml.safe_load((typed_model[0] / "MLmodel").read_text())
    import json

    types = {column["name"]: column["type"] for column in json.loads(mlmodel["signature"]["inputs"])}
    assert types == {"when": "datetime", "visits": "integer", "weight": "float", "region": "string"}


def test_every_protocol_scores_as_the_model(svc, typed_model):
    _, model = typed_model
    expected = _expected(model)
    lists = [[row[c] for c in COLUMNS] for row in ROWS]
    score = requests.post(svc.url + "/score", json={"data": ROWS}, timeout=10)
    assert score.status_code == 200, score.text
    np.testing.assert_allclose(score.json(), expected, rtol=1e-9)
    split = {"dataframe_split": {"columns": COLUMNS, "data": lists}}
    invocations = requests.post(svc.url + "/invocations", json=split, timeout=10)
    assert invocations.status_code == 200, invocations.text
    np.testing.assert_allclose(invocations.json()["predictions"], expected, rtol=1e-9)
    name = score.headers["x-model-name"]
    datatypes = {"when": "BYTES", "visits": "INT32", "weight": "FP32", "region": "BYTES"}
    inputs = [
        {"name": c, "datatype": datatypes[c], "shape": [len(ROWS)], "data": [row[c] for row in ROWS]} for c in COLUMNS
    ]
    v2 = requests.post(f"{svc.url}/v2/models/{name}/infer", json={"inputs": inputs}, timeout=10)
    assert v2.status_code == 200, v2.text
    np.testing.assert_allclose(v2.json()["outputs"][0]["data"], expected, rtol=1e-6)  # FP32 in: float32 values
    metadata = requests.get(f"{svc.url}/v2/models/{name}", timeout=10).json()
    assert [(i["name"], i["datatype"]) for i in metadata["inputs"]] == list(datatypes.items())
    assert metadata["inputs"][0]["parameters"]["content_type"] == "datetime"


def test_the_api_description_shows_each_type(svc):
    row = requests.get(svc.url + "/swagger.json", timeout=10).json()["components"]["schemas"]["Row"]["properties"]
    assert row["when"] == {"type": "string", "format": "date-time"}
    assert row["visits"] == {"type": "integer", "format": "int32"}
    assert row["weight"] == {"type": "number", "format": "float"}
    assert row["region"] == {"type": "string", "enum": ["north", "south"]}


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [
        ("when", "yesterday", "must be an ISO 8601 date-time"),
        ("when", 1714571100, "must be an ISO 8601 date-time string, not an integer"),
        ("visits", 2**31, "must be an integer between -2147483648 and 2147483647"),
        ("visits", 2.0, "must be an integer, not a number"),
        ("weight", "71.5", "must be a number, not a string"),
        ("region", None, "must not be null"),
    ],
)
def test_each_types_mistakes_are_4xx_naming_row_and_column(svc, column, value, words):
    rows = [dict(row) for row in ROWS]
    rows[1][column] = value
    answer = requests.post(svc.url + "/score", json={"data": rows}, timeout=10)
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == f"data[1].{column}"
    assert words in answer.json()["message"]
