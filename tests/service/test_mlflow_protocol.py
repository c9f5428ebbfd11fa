"""The MLflow scoring protocol, differentially: our service and a real `mlflow models serve` on the same
registered model (the regressor and the classifier) get the same bodies and must agree."""

from __future__ import annotations

import json
import math

import pytest
import requests

from tests.conftest import FEATURES
from tests.support.mlflow_serve import MlflowModelServer
from tests.support.service import ServiceProcess

pytestmark = pytest.mark.slow

MLFLOW_CODES = {
    "BAD_REQUEST",
    "INVALID_PARAMETER_VALUE",
    "UNAUTHENTICATED",
    "RESOURCE_EXHAUSTED",
    "DEADLINE_EXCEEDED",
    "TEMPORARILY_UNAVAILABLE",
    "ENDPOINT_NOT_FOUND",
}
SECRET_LOOKING = "98765.4321"


@pytest.fixture(scope="module", params=["regressor", "classifier"])
def pair(request, embedded_store, tmp_path_factory):
    """(ours, theirs, kind): both serving `models:/<name>/<version>` of the same embedded store."""
    trained = getattr(embedded_store, request.param)
    uri = f"models:/{trained['model_name']}/{trained['model_version']}"
    logs = tmp_path_factory.mktemp(f"mlflow-{request.param}")
    with (
        ServiceProcess(uri, env=embedded_store.env, log=logs / "ours.log") as ours,
        MlflowModelServer(uri, embedded_store.tracking_uri, logs / "theirs.log") as theirs,
    ):
        yield ours, theirs, request.param


def invoke(url: str, body: object, content_type: str = "application/json") -> requests.Response:
    data = body if isinstance(body, str | bytes) else json.dumps(body)
    return requests.post(url + "/invocations", data=data, headers={"Content-Type": content_type}, timeout=30)


def csv_body(columns: list[str], rows: list[list[float]]) -> str:
    return "\n".join([",".join(columns), *(",".join(repr(v) for v in row) for row in rows)]) + "\n"


def body_forms(rows: list[list[float]]) -> dict[str, tuple[object, str]]:
    """Every body form MLflow answers, by name: (body, content type)."""
    reversed_columns = FEATURES[::-1]
    reversed_rows = [row[::-1] for row in rows]
    records = [dict(zip(FEATURES, row, strict=True)) for row in rows]
    json_type = "application/json"
    return {
        "dataframe_split": ({"dataframe_split": {"columns": FEATURES, "data": rows}}, json_type),
        "dataframe_split with index": (
            {"dataframe_split": {"index": list(range(10, 10 + len(rows))), "columns": FEATURES, "data": rows}},
            json_type,
        ),
        "dataframe_split, columns reversed": (
            {"dataframe_split": {"columns": reversed_columns, "data": reversed_rows}},
            json_type,
        ),
        "dataframe_split, an extra column": (
            {"dataframe_split": {"columns": [*FEATURES, "extra"], "data": [[*row, 1.0] for row in rows]}},
            json_type,
        ),
        "dataframe_records": ({"dataframe_records": records}, json_type),
        "dataframe_records, an extra key": ({"dataframe_records": [{**r, "extra": 2.0} for r in records]}, json_type),
        "instances as records": ({"instances": records}, json_type),
        "inputs as columns": (
            {"inputs": {name: [row[i] for row in rows] for i, name in enumerate(FEATURES)}},
            json_type,
        ),
        "params ignored": ({"dataframe_split": {"columns": FEATURES, "data": rows}, "params": {"x": 1}}, json_type),
        "json with charset": (
            {"dataframe_split": {"columns": FEATURES, "data": rows}},
            "application/json; charset=utf-8",
        ),
        "csv": (csv_body(FEATURES, rows), "text/csv"),
        "csv, columns reversed": (csv_body(reversed_columns, reversed_rows), "text/csv; charset=utf-8"),
    }


def assert_same_predictions(ours: list, theirs: list) -> None:
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        if isinstance(a, list):
            assert_same_predictions(a, b)
        else:
            assert math.isclose(a, b, rel_tol=1e-9), (a, b)


def test_every_body_form_gets_the_same_predictions(pair, example_data):
    ours, theirs, _ = pair
    for name, (body, content_type) in body_forms(example_data.x_test[:7]).items():
        mine, reference = invoke(ours.url, body, content_type), invoke(theirs.url, body, content_type)
        assert reference.status_code == 200, (name, reference.text)
        assert mine.status_code == 200, (name, mine.text)
        assert list(mine.json()) == ["predictions"], name
        assert_same_predictions(mine.json()["predictions"], reference.json()["predictions"])


def test_all_test_rows_agree(pair, example_data):
    ours, theirs, _ = pair
    body = {"dataframe_split": {"columns": FEATURES, "data": example_data.x_test}}
    mine, reference = invoke(ours.url, body).json(), invoke(theirs.url, body).json()
    assert len(mine["predictions"]) == 89
    assert_same_predictions(mine["predictions"], reference["predictions"])


def test_beyond_mlflow_rows_in_feature_order_score_the_same(pair, example_data):
    ours, _, _ = pair
    rows = example_data.x_test[:4]
    expected = invoke(ours.url, {"dataframe_split": {"columns": FEATURES, "data": rows}}).json()
    for body in ({"inputs": rows}, {"instances": rows}, {"dataframe_split": {"data": rows}}):
        answer = invoke(ours.url, body)
        assert answer.status_code == 200, (body, answer.text)
        assert answer.json() == expected


def test_params_method_picks_predict_proba(pair, example_data):
    ours, _, kind = pair
    rows = example_data.x_test[:3]
    answer = invoke(
        ours.url, {"dataframe_split": {"columns": FEATURES, "data": rows}, "params": {"method": "predict_proba"}}
    )
    if kind == "regressor":
        assert answer.status_code == 400
        assert answer.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        assert "predict_proba" in answer.json()["message"]
        return
    assert answer.status_code == 200, answer.text
    probabilities = answer.json()["predictions"]
    assert len(probabilities) == 3
    assert all(math.isclose(sum(p), 1.0) and len(p) == 2 for p in probabilities)
    same = requests.post(ours.url + "/score", json={"data": rows, "method": "predict_proba"}, timeout=10).json()
    assert probabilities == same


def row(*replace: tuple[int, object]) -> list[object]:
    values: list[object] = [0.01] * 10
    for index, value in replace:
        values[index] = value
    return values


BAD_BODIES = [
    # (name, raw body, content type): each one a 4xx from MLflow too
    ("malformed JSON", '{"dataframe_split": {"columns": ', "application/json"),
    ("a JSON list", json.dumps([row()]), "application/json"),
    ("no input field", json.dumps({"data": [row()]}), "application/json"),
    (
        "two input fields",
        json.dumps({"dataframe_split": {"columns": FEATURES, "data": [row()]}, "instances": [row()]}),
        "application/json",
    ),
    (
        "null value",
        json.dumps({"dataframe_split": {"columns": FEATURES, "data": [row((2, None))]}}),
        "application/json",
    ),
    (
        "NaN",
        json.dumps({"dataframe_split": {"columns": FEATURES, "data": [[1] * 10]}}).replace("[[1", "[[NaN", 1),
        "application/json",
    ),
    ("empty data", json.dumps({"dataframe_split": {"columns": FEATURES, "data": []}}), "application/json"),
    ("row too short", json.dumps({"dataframe_split": {"columns": FEATURES, "data": [row()[:9]]}}), "application/json"),
    (
        "missing column",
        json.dumps({"dataframe_split": {"columns": FEATURES[:9], "data": [row()[:9]]}}),
        "application/json",
    ),
    (
        "missing key",
        json.dumps({"dataframe_records": [dict(zip(FEATURES[1:], row()[1:], strict=True))]}),
        "application/json",
    ),
    (
        "data not a list",
        json.dumps({"dataframe_split": {"columns": FEATURES, "data": SECRET_LOOKING}}),
        "application/json",
    ),
    ("csv, unknown header", "a,b\n1,2\n", "text/csv"),
    ("csv, not a number", csv_body(FEATURES, [row()]).replace("0.01", "abc", 1), "text/csv"),
    ("text/plain", json.dumps({"dataframe_split": {"columns": FEATURES, "data": [row()]}}), "text/plain"),
    (
        "latin-1",
        json.dumps({"dataframe_split": {"columns": FEATURES, "data": [row()]}}),
        "application/json; charset=latin-1",
    ),
]


@pytest.mark.parametrize(("name", "body", "content_type"), BAD_BODIES, ids=[case[0] for case in BAD_BODIES])
def test_bad_bodies_are_a_4xx_from_both(pair, name, body, content_type):
    ours, theirs, _ = pair
    reference = invoke(theirs.url, body, content_type)
    assert 400 <= reference.status_code < 500, (name, reference.status_code)
    mine = invoke(ours.url, body, content_type)
    assert mine.status_code == (415 if reference.status_code == 415 else 400), (name, mine.text)
    payload = mine.json()
    assert set(payload) == {"error_code", "message"}
    assert payload["error_code"] in MLFLOW_CODES
    assert payload["message"]
    assert SECRET_LOOKING not in mine.text
    assert "Traceback" not in mine.text


def test_bad_values_name_their_place(pair):
    ours, _, _ = pair
    body = {"dataframe_split": {"columns": FEATURES, "data": [row(), row((3, "1.5"))]}}
    payload = invoke(ours.url, body).json()
    assert payload == {
        "error_code": "INVALID_PARAMETER_VALUE",
        "message": "dataframe_split.data[1][3]: must be a number, not a string",
    }


def test_parquet_is_415_naming_what_is_supported(pair, example_data):
    import io

    import pandas as pd

    ours, _, _ = pair
    buffer = io.BytesIO()
    pd.DataFrame(example_data.x_test[:2], columns=FEATURES).to_parquet(buffer)
    answer = invoke(ours.url, buffer.getvalue(), "application/vnd.apache.parquet")
    assert answer.status_code == 415
    assert "application/json" in answer.json()["message"]
    assert "text/csv" in answer.json()["message"]


def test_ping_health_version_as_mlflow_answers_them(pair):
    ours, theirs, _ = pair
    for path in ("/ping", "/health", "/version"):
        mine, reference = requests.get(ours.url + path, timeout=10), requests.get(theirs.url + path, timeout=10)
        assert (mine.status_code, mine.text) == (reference.status_code, reference.text), path
    assert requests.post(ours.url + "/ping", timeout=10).status_code == 405


def test_mlflow_scoring_client_works_unchanged(pair, example_data):
    import pandas as pd
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    ours, theirs, _ = pair
    frame = pd.DataFrame(example_data.x_test[:6], columns=FEATURES)
    answers = []
    for served in (ours, theirs):
        client = ScoringServerClient("127.0.0.1", served.port)
        client.wait_server_ready(timeout=30)
        assert client.get_version()
        answers.append(client.invoke(frame).get_predictions())
    mine, reference = answers
    assert mine.shape == reference.shape == (6, 1)
    assert_same_predictions(mine.iloc[:, 0].tolist(), reference.iloc[:, 0].tolist())


def test_metrics_and_access_log_count_invocations(pair, example_data):
    ours, _, _ = pair
    invoke(ours.url, {"dataframe_split": {"columns": FEATURES, "data": example_data.x_test[:3]}})
    metrics = requests.get(ours.url + "/metrics", timeout=10).text
    assert 'diabetes_http_requests_total{route="/invocations",status="200"}' in metrics
    assert 'diabetes_predictions_total{method="predict"}' in metrics


def test_the_default_method_is_the_one_mlmodel_names(tmp_path, example_data, service):
    """A classifier logged with pyfunc_predict_fn="predict_proba": both servers answer probabilities."""
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    frame = pd.DataFrame(example_data.x_train, columns=FEATURES)
    labels = [int(y > 140) for y in example_data.y_train]
    model = LogisticRegression().fit(frame, labels)
    folder = tmp_path / "proba-model"
    mlflow.sklearn.save_model(
        model, folder, signature=infer_signature(frame, model.predict_proba(frame)), pyfunc_predict_fn="predict_proba"
    )
    body = {"dataframe_split": {"columns": FEATURES, "data": example_data.x_test[:4]}}
    unused_store = f"sqlite:///{tmp_path / 'unused.db'}"
    with service(str(folder)) as ours, MlflowModelServer(str(folder), unused_store, tmp_path / "theirs.log") as theirs:
        mine, reference = invoke(ours.url, body), invoke(theirs.url, body)
        assert mine.status_code == reference.status_code == 200, mine.text
        assert_same_predictions(mine.json()["predictions"], reference.json()["predictions"])
        assert len(mine.json()["predictions"][0]) == 2
        # Azure ML v2 bodies on /score follow the same pyfunc method, as Azure's MLflow scoring script does.
        v2 = requests.post(ours.url + "/score", json={"input_data": example_data.x_test[:4]}, timeout=10)
        assert v2.json() == mine.json()["predictions"]
