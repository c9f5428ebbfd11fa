"""The client with a model of typed columns (issue 16), against the real service: rows as dicts of
strings, integers, booleans and null (or a pandas DataFrame of them), answered with the model's own
string labels; a type mistake is the service's 4xx, named by row and column; a row the numeric
schema would refuse is no longer refused before it is sent."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from diabetes_client import Client, InvalidInputError
from tests.support.mixed import COLUMNS, records, save_mixed_model
from tests.support.service import ServiceProcess


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed-client") / "model"
    model, frame = save_mixed_model(folder)
    with ServiceProcess(str(folder), log=folder.parent / "s.log", ready_timeout=120) as svc:
        yield svc, model, frame


def _frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=COLUMNS).astype({"note": object})


def test_typed_rows_get_the_models_string_labels(mixed):
    svc, model, frame = mixed
    rows = records(frame.head(10))
    rows.append({"smoker": "a category it never saw", "age": 44, "active": True, "bmi": 27.5, "note": None})
    with Client(svc.url) as client:
        labels = client.predict(rows)
        assert labels == model.predict(_frame(rows)).tolist()
        assert set(labels) <= {"high", "low"}
        probabilities = client.predict_proba(rows)
        np.testing.assert_allclose(probabilities, model.predict_proba(_frame(rows)), rtol=1e-9)
        decision = client.score(rows, "decision_function")
        assert decision == pytest.approx(model.decision_function(_frame(rows)).tolist(), rel=1e-9)
        # Lists in feature order and a DataFrame (its None kept as null) are the same rows.
        assert client.predict([[row[c] for c in COLUMNS] for row in rows]) == labels
        assert client.predict(_frame(rows)) == labels
        assert [(f.name, f.type) for f in client.features] == [
            ("smoker", "string"),
            ("age", "integer"),
            ("active", "boolean"),
            ("bmi", "number"),
            ("note", "string"),
        ]


@pytest.mark.parametrize(
    ("column", "value", "words"),
    [("age", 1.5, "must be an integer"), ("active", "yes", "must be a boolean"), ("smoker", None, "must not be null")],
)
def test_a_type_mistake_is_the_services_4xx_naming_row_and_column(mixed, column, value, words):
    svc, _, frame = mixed
    rows = records(frame.head(3))
    rows[2][column] = value
    with Client(svc.url) as client, pytest.raises(InvalidInputError) as raised:
        client.predict(rows)
    assert raised.value.field == f"data[2].{column}"
    assert words in str(raised.value)
