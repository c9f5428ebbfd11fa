"""A mixed-type model (strings, a long, a boolean, a double, an optional string) scored from Parquet:
Arrow's types reach the core's typed checks as JSON values would, the compiled or the estimator's
answers equal the model's own, and every refused row carries the service's message for that row."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests

from tests.batch.conftest import read_dir, run_batch
from tests.support.mixed import COLUMNS, records, save_mixed_model
from tests.support.service import ServiceProcess


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed") / "model"
    model, frame = save_mixed_model(folder)
    with ServiceProcess(str(folder), log=tmp_path_factory.mktemp("log") / "s.log", ready_timeout=120) as svc:
        yield folder, model, frame, svc


def test_typed_columns_scored_and_refused_as_the_service_does(mixed, tmp_path):
    folder, model, frame, svc = mixed
    rows = records(frame.head(12))
    # Row 3: a null where a string is required; row 6: a null long; row 8: an unseen category (scored).
    rows[3]["smoker"] = None
    rows[6]["age"] = None
    rows[8]["smoker"] = "sometimes"
    table = pa.table(
        {
            "id": pa.array([f"p{i}" for i in range(len(rows))]),
            "smoker": pa.array([r["smoker"] for r in rows], pa.string()).dictionary_encode(),
            "age": pa.array([r["age"] for r in rows], pa.int64()),  # an integer column with a null stays one
            "active": pa.array([r["active"] for r in rows], pa.bool_()),
            "bmi": pa.array([r["bmi"] for r in rows], pa.float64()),
            "note": pa.array([r["note"] for r in rows], pa.string()),
        }
    )
    pq.write_table(table, tmp_path / "rows.parquet")
    out = tmp_path / "out"
    done = run_batch(str(tmp_path / "rows.parquet"), "--model-uri", str(folder), "-o", str(out), "--keep", "id")
    assert done.returncode == 0, done.stderr

    scored = read_dir(out)
    assert scored.column_names == ["id", "prediction"]
    kept = [i for i in range(len(rows)) if i not in (3, 6)]
    assert scored.column("id").to_pylist() == [f"p{i}" for i in kept]
    good = pd.DataFrame([rows[i] for i in kept], columns=COLUMNS).astype({"age": "int64"})
    assert scored.column("prediction").to_pylist() == model.predict(good).tolist()
    answer = requests.post(svc.url + "/score", json={"data": [rows[i] for i in kept], "method": "predict"}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert scored.column("prediction").to_pylist() == answer.json()

    rejected = pq.read_table(out / "_rejected").to_pylist()
    assert [(r["id"], r["row_number"], r["column"]) for r in rejected] == [("p3", 3, "smoker"), ("p6", 6, "age")]
    for record in rejected:
        row = rows[record["row_number"]]
        answer = requests.post(
            svc.url + "/score", json={"data": [[row[c] for c in COLUMNS]], "method": "predict"}, timeout=30
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["message"] == f"data[0][{COLUMNS.index(record['column'])}]: {record['message']}"


def test_whole_doubles_feed_a_long_and_fractions_are_refused(mixed, tmp_path):
    """pandas writes an integer column with a missing value as doubles (mlflow #3798): whole values
    are taken as the integers they were; a fraction is refused in the service's words."""
    folder, model, frame, svc = mixed
    head = frame.head(5).copy()
    head["age"] = head["age"].astype("float64")
    head.loc[2, "age"] = 41.5
    pq.write_table(pa.Table.from_pandas(head, preserve_index=False), tmp_path / "rows.parquet")
    out = tmp_path / "out"
    done = run_batch(
        str(tmp_path / "rows.parquet"), "--model-uri", str(folder), "-o", str(out), "--method", "predict_proba",
        "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["rejected"] == 1
    scored = read_dir(out)
    assert scored.column_names == [str(label) for label in model.classes_]
    given = [row for i, row in enumerate(records(frame.head(5))) if i != 2]  # None for a missing note, as JSON
    expected = model.predict_proba(pd.DataFrame(given, columns=COLUMNS))
    got = np.column_stack([np.asarray(scored.column(i)) for i in range(scored.num_columns)])
    assert np.max(np.abs(got - expected)) <= 1e-9
    (record,) = pq.read_table(out / "_rejected").to_pylist()
    assert (record["row_number"], record["column"]) == (2, "age")
    row = records(frame.head(5))[2]
    row["age"] = 41.5
    answer = requests.post(svc.url + "/score", json={"data": [[row[c] for c in COLUMNS]]}, timeout=30)
    assert answer.json()["message"] == f"data[0][1]: {record['message']}"
