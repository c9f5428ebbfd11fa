"""Payload logging (`--log-payloads`, issue 24 item 1) against the real service on loopback: records read
back with pyarrow's dataset reader, the accounting read from /metrics, the sink broken under load."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pytest
import requests
import yaml

from tests.conftest import FEATURES
from tests.support.processes import DIABETES

OUTCOMES = ("written", "dropped", "sampled_out")


def payload_counts(url: str) -> dict[str, float]:
    """diabetes_payload_records_total by outcome, from the scoring port's /metrics."""
    found = {}
    for line in requests.get(url + "/metrics", timeout=5).text.splitlines():
        if line.startswith("diabetes_payload_records_total{"):
            outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
            found[outcome] = float(line.rsplit(" ", 1)[1])
    return found


def wait_counts(url: str, done, timeout: float = 20.0) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        counts = payload_counts(url)
        if done(counts) or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def read_records(folder: Path) -> pa.Table:
    return ds.dataset(folder, format="parquet", partitioning="hive").to_table()


def test_scored_rows_and_refusals_are_on_disk_after_sigterm(service, example_model_pkl, example_data, tmp_path) -> None:
    folder = tmp_path / "payloads"
    svc = service(
        str(example_model_pkl), workers=2, args=["--log-payloads", str(folder), "--metrics-port", "0"]
    ).start()
    # Every outcome is a series from start-up, at 0: an alert's increase() sees the first event.
    assert payload_counts(svc.url) == dict.fromkeys(OUTCOMES, 0.0)
    rows = example_data.x_test[:60]
    sent: dict[str, list[list[float]]] = {}
    session = requests.Session()
    for i in range(50):  # 50 x 60 = 3,000 rows, over three protocols
        request_id = f"req-{i}"
        if i % 3 == 0:
            answer = session.post(svc.url + "/score", json={"data": rows}, headers={"x-request-id": request_id})
        elif i % 3 == 1:
            answer = session.post(svc.url + "/invocations", json={"inputs": rows}, headers={"x-request-id": request_id})
        else:
            body = {
                "inputs": [
                    {"name": "x", "shape": [60, 10], "datatype": "FP64", "data": [v for row in rows for v in row]}
                ]
            }
            answer = session.post(svc.url + "/v2/models/model/infer", json=body, headers={"x-request-id": request_id})
        assert answer.status_code == 200, answer.text
        sent[request_id] = rows
    for i in range(20):  # 20 refusals: a short row, a string, an unknown method, malformed JSON
        bodies = [{"data": [[1.0, 2.0]]}, {"data": [["x"] * 10]}, {"data": rows[:1], "method": "nope"}, b"{"]
        body = bodies[i % 4]
        kwargs = {"data": body, "headers": {"content-type": "application/json"}} if isinstance(body, bytes) else {}
        answer = session.post(svc.url + "/score", json=None if kwargs else body, **kwargs)
        assert 400 <= answer.status_code < 500
    # Not scoring calls: never logged.
    assert session.get(svc.url + "/health/ready").status_code == 200
    assert session.post(svc.url + "/nowhere", json={}).status_code == 404
    # SIGTERM well before the 10 s flush: the drain writes every record.
    assert svc.stop() == 0
    table = read_records(folder)
    assert table.num_rows == 3020
    assert not list(folder.rglob(".*"))  # no partial file left behind
    partitions = {p.relative_to(folder).parts[:2] for p in folder.rglob("*.parquet")}
    assert partitions == {("model=model", "version=none")}
    scored = table.filter(pa.compute.equal(table["status"], 200))
    refused = table.filter(pa.compute.not_equal(table["status"], 200))
    assert scored.num_rows == 3000
    assert refused.num_rows == 20
    # The schema `diabetes monitor` reads.
    schema = table.schema
    assert schema.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert schema.field("status").type == pa.int32()
    assert schema.field("row").type == pa.int32()
    assert [schema.field(name).type for name in FEATURES] == [pa.float64()] * 10
    assert schema.field("prediction").type == pa.float64()
    assert sorted(set(scored["protocol"].to_pylist())) == ["azureml", "mlflow", "v2"]
    assert set(scored["transport"].to_pylist()) == {"http"}
    assert set(scored["method"].to_pylist()) == {"predict"}
    assert scored["error"].null_count == scored.num_rows
    # Each record is its request's row, in order, with the answer the caller got.
    records = scored.to_pylist()
    assert {r["request_id"] for r in records} == set(sent)
    for record in records[::97]:
        row = sent[record["request_id"]][record["row"]]
        assert [record[name] for name in FEATURES] == row
    by_request = {}
    for record in records:
        by_request.setdefault(record["request_id"], {})[record["row"]] = record["prediction"]
    assert all(sorted(rows_of) == list(range(60)) for rows_of in by_request.values())
    predictions = [by_request["req-0"][i] for i in range(60)]
    assert np.std(predictions) > 1  # real answers, not a constant
    # Refusals: status and message, no body, no row.
    for record in refused.to_pylist():
        assert record["route"] == "/score"
        assert record["protocol"] == "azureml"
        assert record["error"]
        assert record["method"] is None
        assert record["row"] is None
        assert all(record[name] is None for name in FEATURES)
    messages = set(refused["error"].to_pylist())
    assert any(m.startswith("method: unknown value") for m in messages)
    assert len(messages) == 4


def test_a_sink_that_breaks_and_recovers_fails_no_call(service, example_model_pkl, example_data, tmp_path) -> None:
    folder = tmp_path / "payloads"
    log = tmp_path / "serve.log"
    # From the environment this time (DIABETES_LOG_PAYLOADS), as a container sets it.
    env = {"DIABETES_LOG_PAYLOADS": str(folder)}
    svc = service(str(example_model_pkl), env=env, args=["--metrics-port", "0"], log=log).start()
    body = {"data": example_data.x_test[:5]}
    session = requests.Session()

    def score(calls: int) -> None:
        for _ in range(calls):
            assert session.post(svc.url + "/score", json=body, timeout=5).status_code == 200

    score(20)
    shutil.rmtree(folder, ignore_errors=True)
    folder.write_text("not a folder any more")  # the sink's folder replaced by a file mid-run
    score(40)
    counts = wait_counts(svc.url, lambda c: c["written"] + c["dropped"] == 300)
    assert counts["written"] + counts["dropped"] == 300  # every sampled record accounted for
    assert counts["dropped"] >= 200
    assert counts["sampled_out"] == 0
    folder.unlink()
    score(10)
    counts = wait_counts(svc.url, lambda c: c["written"] + c["dropped"] == 350)
    assert counts["written"] + counts["dropped"] == 350
    assert counts["written"] >= 50
    assert svc.stop() == 0
    output = svc.output()
    assert output.count("payload logging: cannot write") == 1  # one line when it breaks...
    assert output.count("payload logging: writing to") == 1  # ...and one when it recovers
    assert read_records(folder).num_rows == counts["written"]


def test_sampling_and_redaction_from_the_spec(service, example_model_pkl, example_data, tmp_path) -> None:
    folder = tmp_path / "payloads"
    spec = {
        "name": "payload-test",
        "model": {"name": "diabetes_model", "alias": "champion"},
        "auth": "none",
        "payload_logging": {"dir": str(folder), "sample_rate": 0.3, "redact": {"sex": "drop", "age": "hash"}},
    }
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    svc = service(str(example_model_pkl), args=["--spec", str(spec_file), "--metrics-port", "0"]).start()
    session = requests.Session()
    row = example_data.x_test[3]
    for _ in range(400):
        assert session.post(svc.url + "/score", json={"data": [row]}, timeout=5).status_code == 200
    counts = wait_counts(svc.url, lambda c: c["written"] + c["sampled_out"] == 400)
    assert counts["written"] + counts["dropped"] + counts["sampled_out"] == 400
    # 400 calls kept with p = 0.3: 120 expected, sd ~9.2; five sd either side.
    assert 74 <= counts["written"] <= 166
    assert svc.stop() == 0
    table = read_records(folder)
    assert table.num_rows == counts["written"]
    assert "sex" not in table.column_names
    assert set(table["age"].to_pylist()) == {hashlib.sha256(repr(row[0]).encode()).hexdigest()}
    assert table["bmi"].to_pylist()[0] == row[2]


def test_grpc_calls_and_a_classifier_are_logged(embedded_store, tmp_path) -> None:
    import tritonclient.grpc as triton
    from tritonclient.utils import InferenceServerException

    from tests.support.service import ServiceProcess

    trained = embedded_store.classifier
    name, version = trained["model_name"], str(trained["model_version"])
    folder = tmp_path / "payloads"
    with ServiceProcess(
        f"models:/{name}/{version}", env=embedded_store.env, grpc=True, args=["--log-payloads", str(folder)]
    ) as svc:
        client = triton.InferenceServerClient(svc.grpc_target)
        data = np.asarray([[0.01 * i] * 10 for i in range(4)], dtype=np.float64)
        tensor = triton.InferInput("input-0", list(data.shape), "FP64")
        tensor.set_data_from_numpy(data)
        outputs = [triton.InferRequestedOutput("predict_proba")]
        for i in range(3):
            client.infer(name, [tensor], outputs=outputs, request_id=f"grpc-{i}")
        wrong = triton.InferInput("input-0", [1, 3], "FP64")
        wrong.set_data_from_numpy(np.zeros((1, 3)))
        with pytest.raises(InferenceServerException):
            client.infer(name, [wrong], request_id="grpc-bad")
        http = requests.post(svc.url + "/score", json={"data": data.tolist(), "method": "predict"}, timeout=5)
        assert http.status_code == 200
        os.kill(svc.proc.pid, signal.SIGTERM)
        svc.proc.wait(timeout=30)
    table = read_records(folder)
    partitions = {p.relative_to(folder).parts[:2] for p in folder.rglob("*.parquet")}
    assert partitions == {(f"model={name}", f"version={version}")}
    grpc = table.filter(pa.compute.equal(table["transport"], "grpc")).to_pylist()
    assert len(grpc) == 3 * 4 + 1
    scored = [r for r in grpc if r["status"] == 200]
    assert {r["request_id"] for r in scored} == {"grpc-0", "grpc-1", "grpc-2"}
    assert {r["route"] for r in grpc} == {"grpc:inference.GRPCInferenceService/ModelInfer"}
    assert all(r["method"] == "predict_proba" and r["prediction"] is None for r in scored)
    probas = [c for c in table.column_names if c.startswith("proba_")]
    assert len(probas) >= 2
    assert all(abs(sum(r[c] for c in probas) - 1) < 1e-9 for r in scored)
    (bad,) = [r for r in grpc if r["status"] != 200]
    assert bad["request_id"] == "grpc-bad"
    assert bad["status"] == 400
    assert bad["error"]
    http_rows = table.filter(pa.compute.equal(table["transport"], "http")).to_pylist()
    assert len(http_rows) == 4
    assert all(r["method"] == "predict" and r["prediction"] is not None for r in http_rows)
    assert {r["model_name"] for r in http_rows} == {name}
    assert {r["model_version"] for r in http_rows} == {version}


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--log-sample-rate", "2"], {}, "log_sample_rate"),
        (["--log-payloads", "x"], {"DIABETES_LOG_REDACT": "age=blur"}, "COLUMN=drop or COLUMN=hash"),
    ],
)
def test_bad_payload_settings_are_refused_at_start(args, env, message, example_model_pkl) -> None:
    import subprocess

    done = subprocess.run(
        [DIABETES, "serve", "--model-uri", str(example_model_pkl), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert message in done.stderr


def test_typed_columns_keep_their_signature_types(tmp_path) -> None:
    """A mixed-type pipeline (string, long, boolean, double, optional string; string labels): each column
    under its own Arrow type, the label as a string, one proba column per class."""
    from tests.support.mixed import records, save_mixed_model
    from tests.support.service import ServiceProcess

    model, frame = save_mixed_model(tmp_path / "model")
    folder = tmp_path / "payloads"
    rows = records(frame.head(12))
    with ServiceProcess(str(tmp_path / "model"), args=["--log-payloads", str(folder)], ready_timeout=120) as svc:
        for method in ("predict", "predict_proba"):
            answer = requests.post(svc.url + "/score", json={"data": rows, "method": method}, timeout=10)
            assert answer.status_code == 200, answer.text
    table = read_records(folder)
    schema = table.schema
    assert schema.field("smoker").type == pa.string()
    assert schema.field("age").type == pa.int64()
    assert schema.field("active").type == pa.bool_()
    assert schema.field("bmi").type == pa.float64()
    assert schema.field("prediction").type == pa.string()
    assert sorted(c for c in table.column_names if c.startswith("proba_")) == ["proba_high", "proba_low"]
    predicted = table.filter(pa.compute.equal(table["method"], "predict")).sort_by("row").to_pylist()
    assert [r["prediction"] for r in predicted] == list(model.predict(frame.head(12)))
    assert [{c: r[c] for c in rows[0]} for r in predicted] == rows  # null notes stay null
    probas = table.filter(pa.compute.equal(table["method"], "predict_proba")).sort_by("row")
    assert probas["proba_high"].to_pylist() == pytest.approx(model.predict_proba(frame.head(12))[:, 0].tolist())
