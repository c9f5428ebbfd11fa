"""`diabetes batch` with the local engine on registered models: the predictions are the model's own
and the service's, rows the service refuses are set aside with its message, and a CSV input scores
as its Parquet twin."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest
import requests

from tests.batch.conftest import read_dir, run_batch
from tests.conftest import FEATURES
from tests.support.service import ServiceProcess


def _with_bad_rows(table: pa.Table) -> pa.Table:
    """Rows 2, 5 and 7 made unscorable: NaN, null and infinity in one feature each."""
    columns = {name: table.column(name).to_pylist() for name in table.column_names}
    columns["bmi"][2] = math.nan
    columns["s3"][5] = None
    columns["age"][7] = math.inf
    return pa.table(columns, schema=table.schema)


@pytest.fixture(scope="module")
def registered(embedded_store):
    version = embedded_store.regressor["model_version"]
    return f"models:/diabetes_model/{version}", embedded_store


@pytest.fixture(scope="module")
def regressor_service(registered, tmp_path_factory):
    uri, store = registered
    with ServiceProcess(uri, env=store.env, log=tmp_path_factory.mktemp("log") / "svc.log") as svc:
        yield svc


def test_predictions_are_the_models_and_the_services(registered, regressor_service, example_table, tmp_path):
    uri, store = registered
    data = tmp_path / "in"
    data.mkdir()
    table = _with_bad_rows(example_table)
    pq.write_table(table.slice(0, 40), data / "a.parquet")
    pq.write_table(table.slice(40), data / "b.parquet")
    out = tmp_path / "out"
    done = run_batch("--model-uri", uri, str(data), "--output", str(out), "--keep", "id", "--json", env=store.env)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert (summary["rows"], summary["scored"], summary["rejected"]) == (len(table), len(table) - 3, 3)
    assert summary["model"] == f"diabetes_model version {uri.rsplit('/', 1)[1]}"

    scored = read_dir(out).sort_by("id")
    assert scored.column_names == ["id", "prediction"]
    ids = scored.column("id").to_pylist()
    assert ids == [i for i in range(len(table)) if i not in (2, 5, 7)]
    good = [[table.column(name)[i].as_py() for name in FEATURES] for i in ids]

    import mlflow.sklearn

    mlflow.set_tracking_uri(store.tracking_uri)
    own = mlflow.sklearn.load_model(uri).predict(np.asarray(good))
    assert np.max(np.abs(np.asarray(scored.column("prediction")) - own)) <= 1e-9
    answer = requests.post(regressor_service.url + "/score", json={"data": good, "method": "predict"}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert np.max(np.abs(np.asarray(scored.column("prediction")) - np.asarray(answer.json()))) <= 1e-9

    rejected = pq.read_table(out / "_rejected").sort_by("id").to_pylist()
    assert [r["id"] for r in rejected] == [2, 5, 7]
    assert [r["column"] for r in rejected] == ["bmi", "s3", "age"]
    for record in rejected:
        i = record["id"]
        assert record["input_file"] == str(data / "a.parquet")
        assert record["row_number"] == i  # the first file holds rows 0-39
        # The service's answer for the same row alone: the same message, after the field it names.
        row = [table.column(name)[i].as_py() for name in FEATURES]
        # JSON has no NaN nor infinity: 1e999 parses as infinity, which /score refuses in NaN's words.
        body = json.dumps({"data": [row], "method": "predict"}).replace("NaN", "1e999").replace("Infinity", "1e999")
        answer = requests.post(
            regressor_service.url + "/score", data=body, headers={"Content-Type": "application/json"}, timeout=30
        )
        assert answer.status_code == 422, answer.text
        column = FEATURES.index(record["column"])
        assert answer.json()["message"] == f"data[0][{column}]: {record['message']}"


def test_csv_scores_as_its_parquet_twin(example_model_pkl, example_table, tmp_path):
    # A CSV file has no NaN apart from null (pyarrow reads "nan" as a missing value): null in both.
    table = _with_bad_rows(example_table)
    bmi = table.column("bmi").to_pylist()
    bmi[2] = None
    table = table.set_column(table.column_names.index("bmi"), "bmi", pa.array(bmi, pa.float64()))
    pq.write_table(table, tmp_path / "rows.parquet")
    pcsv.write_csv(table, tmp_path / "rows.csv")
    outputs = {}
    for kind in ("parquet", "csv"):
        out = tmp_path / f"out-{kind}"
        done = run_batch(
            "--model-uri", str(example_model_pkl), str(tmp_path / f"rows.{kind}"), "-o", str(out), "--keep", "id"
        )
        assert done.returncode == 0, done.stderr
        outputs[kind] = (read_dir(out), pq.read_table(out / "_rejected").drop(["input_file"]))
    assert outputs["csv"][0].equals(outputs["parquet"][0])
    assert outputs["csv"][1].equals(outputs["parquet"][1])
    assert outputs["csv"][1].num_rows == 3


def test_probabilities_are_named_after_the_labels(embedded_store, example_table, tmp_path):
    version = embedded_store.classifier["model_version"]
    uri = f"models:/diabetes_classifier/{version}"
    pq.write_table(example_table, tmp_path / "rows.parquet")
    out = tmp_path / "out"
    done = run_batch(
        "--model-uri", uri, str(tmp_path / "rows.parquet"), "-o", str(out), "--method", "predict_proba",
        env=embedded_store.env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    scored = read_dir(out)

    import mlflow.sklearn

    mlflow.set_tracking_uri(embedded_store.tracking_uri)
    model = mlflow.sklearn.load_model(uri)
    assert scored.column_names == [str(label) for label in model.classes_]
    x = np.asarray([[example_table.column(n)[i].as_py() for n in FEATURES] for i in range(example_table.num_rows)])
    expected = model.predict_proba(x)
    got = np.column_stack([np.asarray(scored.column(i)) for i in range(scored.num_columns)])
    assert np.max(np.abs(got - expected)) <= 1e-9
