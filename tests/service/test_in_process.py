"""Every HTTP protocol of the scoring app in process, through its ASGI interface (tests/support/asgi.py).

The fast tier's view of the wire (docs/testing.md): the example's `model.pkl` loaded into the app in
this process, each protocol's body and its bad-input answer, in milliseconds instead of a service start.
The same calls against the real `diabetes serve` are in test_scoring.py, test_mlflow_protocol.py and
test_v2_rest.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd
import pytest

from tests.conftest import FEATURES
from tests.support.asgi import InProcess


@pytest.fixture(scope="module")
def app(example_model_pkl) -> Iterator[InProcess]:
    from diabetes_service.settings import ServiceSettings
    from diabetes_service.transport.app import ScoringApp

    scoring = ScoringApp(ServiceSettings(model_path=str(example_model_pkl), access_log=False, allow_pickle=True))
    scoring.lifecycle.load()
    client = InProcess(scoring)
    client.name = scoring.state.core.identity.name  # type: ignore[attr-defined,union-attr]
    yield client
    client.close()


@pytest.fixture(scope="module")
def expected(example_model_pkl, example_data) -> list[float]:
    import joblib

    model = joblib.load(example_model_pkl)
    return model.predict(pd.DataFrame(example_data.x_test[:3], columns=FEATURES)).tolist()


def test_the_probes_answer(app):
    for path in ("/health/ready", "/"):
        status, _ = app.loop.run_until_complete(app._run("GET", path, b"", {}))
        assert status == 200, path
    assert app.call("GET", f"/v2/models/{app.name}/ready")[0] == 200


def test_azureml_score_gives_the_models_answers(app, example_data, expected):
    status, answer = app.call("POST", "/score", {"data": example_data.x_test[:3]})
    assert status == 200, answer
    assert answer == pytest.approx(expected, rel=1e-12)
    rows = [dict(zip(FEATURES, row, strict=True)) for row in example_data.x_test[:3]]
    status, answer = app.call("POST", "/score", {"data": rows})
    assert status == 200, answer
    assert answer == pytest.approx(expected, rel=1e-12)


def test_mlflow_invocations_gives_the_models_answers(app, example_data, expected):
    split = {"dataframe_split": {"columns": FEATURES, "data": example_data.x_test[:3]}}
    status, answer = app.call("POST", "/invocations", split)
    assert status == 200, answer
    assert answer["predictions"] == pytest.approx(expected, rel=1e-12)
    records = [dict(zip(FEATURES, row, strict=True)) for row in example_data.x_test[:3]]
    status, answer = app.call("POST", "/invocations", {"dataframe_records": records})
    assert status == 200, answer
    assert answer["predictions"] == pytest.approx(expected, rel=1e-12)


def test_v2_infer_gives_the_models_answers(app, example_data, expected):
    status, metadata = app.call("GET", f"/v2/models/{app.name}")
    assert status == 200, metadata
    assert metadata["name"] == app.name
    rows = example_data.x_test[:3]
    body = {
        "inputs": [{"name": "input-0", "shape": [3, 10], "datatype": "FP64", "data": [v for row in rows for v in row]}]
    }
    status, answer = app.call("POST", f"/v2/models/{app.name}/infer", body)
    assert status == 200, answer
    (output,) = answer["outputs"]
    assert output["shape"][0] == 3
    assert output["data"] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/score", {"data": [[1.0, 2.0]]}, 422, "data[0]: has 2 values, expected 10"),
        ("/score", {"rows": [[0.0] * 10]}, 422, 'data: is required; did you mean "data"?'),
        (
            "/invocations",
            {"dataframe_split": {"columns": FEATURES[:3], "data": [[1.0, 2.0, 3.0]]}},
            400,
            "dataframe_split.columns: missing feature",
        ),
        (
            "/v2/models/{name}/infer",
            {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1]}]},
            400,
            "inputs[0].data: holds 1 elements; shape [1, 2] needs 2",
        ),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field(app, path, body, status, words):
    got, answer = app.call("POST", path.format(name=app.name), body)
    assert got == status, answer
    assert words in str(answer), answer
