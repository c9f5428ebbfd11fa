"""A first start: a linear skops model served from its arrays while scikit-learn verifies it.

The reader (model/compile/skops_linear.py) is checked against scikit-learn's own predictions on real skops
files written by MLflow, and against everything it must leave to the preparation child; the service
(`diabetes serve`, real processes on loopback) is checked end to end: it answers from the arrays,
verifies, caches, and stops when the verification fails.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import time
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests

from diabetes_service.model import prepared
from diabetes_service.model.compile import skops_linear
from diabetes_service.model.compile.linear import LinearRegressor, save
from diabetes_service.model.provisional import same_answers
from diabetes_service.model.resolution import ResolvedModel
from diabetes_service.model.trust import TrustPolicy, sha256_of
from tests.conftest import FEATURES
from tests.service.test_cold_start import HEAVY, mapped_packages, workers_of
from tests.support.processes import DIABETES, free_port, start, stop, wait_http

SERVED_FROM_ARRAYS = "served from its artifact's arrays"
VERIFIED = "verified, scikit-learn gives the answers served"


def save_mlflow(estimator: object, folder: Path, x: list[list[float]], fmt: str = "skops") -> Path:
    """`estimator`, fitted, saved as the trainer saves it: an MLflow folder with a signature."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    frame = pd.DataFrame(x, columns=FEATURES)
    mlflow.sklearn.save_model(
        estimator,
        str(folder),
        serialization_format=fmt,
        signature=infer_signature(frame, estimator.predict(frame)),  # type: ignore[attr-defined]
        input_example=frame.iloc[:2],
    )
    return folder


def read(folder: Path, policy: TrustPolicy | None = None) -> tuple[LinearRegressor, dict] | None:
    import yaml

    mlmodel = yaml.safe_load((folder / "MLmodel").read_text())
    artifact = folder / mlmodel["flavors"]["sklearn"]["pickled_model"]
    return skops_linear.read(folder, mlmodel, sha256_of(artifact), policy or TrustPolicy())


def rewrite_schema(folder: Path, change: object) -> None:
    """Rewrite the skops file's schema.json with `change(schema)`, keeping every other member."""
    artifact = folder / "model.skops"
    with zipfile.ZipFile(artifact) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    schema = json.loads(members["schema.json"])
    change(schema)  # type: ignore[operator]
    members["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(artifact, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)


@pytest.mark.parametrize("name", ["LinearRegression", "Ridge", "Lasso", "ElasticNet"])
def test_the_arrays_give_scikit_learns_own_predictions(tmp_path, example_data, name):
    import sklearn.linear_model

    params = {"alpha": 0.01} if name in ("Lasso", "ElasticNet") else {}
    estimator = getattr(sklearn.linear_model, name)(**params)
    estimator.fit(pd.DataFrame(example_data.x_train, columns=FEATURES), example_data.y_train)
    found = read(save_mlflow(estimator, tmp_path / "model", example_data.x_train))
    assert found is not None
    compiled, meta = found
    assert compiled.estimator_name == name
    assert [feature["name"] for feature in meta["features"]] == FEATURES
    assert meta["predict_fn"] == "predict"
    assert len(meta["input_example"]) == 2
    rows = np.asarray(example_data.x_test)
    want = estimator.predict(pd.DataFrame(rows, columns=FEATURES))
    assert np.allclose(compiled.predict(rows), want, rtol=1e-12, atol=1e-12)


def test_everything_else_is_left_to_the_preparation_child(tmp_path, example_data):
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = example_data.x_train, example_data.y_train
    frame = pd.DataFrame(x, columns=FEATURES)
    ridge = save_mlflow(Ridge().fit(frame, y), tmp_path / "ridge", x)
    assert read(ridge) is not None  # the control: what the cases below change is what refuses them

    pipeline = make_pipeline(StandardScaler(), Ridge()).fit(frame, y)
    assert read(save_mlflow(pipeline, tmp_path / "pipeline", x)) is None
    labels = [int(v > 150) for v in y]
    assert read(save_mlflow(LogisticRegression().fit(frame, labels), tmp_path / "logistic", x)) is None
    pickled = save_mlflow(Ridge().fit(frame, y), tmp_path / "cloudpickle", x, fmt="cloudpickle")
    assert read(pickled) is None  # a pickle is never opened here
    assert read(ridge, TrustPolicy(sha256="0" * 64)) is None  # a pin it does not match

    # Saved with another major version of scikit-learn: the load refuses it, so this does not read it.
    other_major = tmp_path / "other-major"
    shutil.copytree(ridge, other_major)
    mlmodel = (other_major / "MLmodel").read_text()
    (other_major / "MLmodel").write_text(re.sub(r"sklearn_version: \S+", "sklearn_version: 0.24.2", mlmodel))
    assert read(other_major) is None
    assert read(other_major, TrustPolicy(allow_version_mismatch=True)) is not None

    two_targets = Ridge().fit(frame, np.column_stack([y, y]))
    assert read(save_mlflow(two_targets, tmp_path / "two-targets", x)) is None

    # Fitted on the columns in another order than the signature's: scikit-learn maps them by name,
    # the arrays alone would not.
    shuffled = tmp_path / "shuffled"
    shutil.copytree(ridge, shuffled)
    rewrite_schema(
        shuffled,
        lambda schema: schema["content"]["content"]["feature_names_in_"]["content"].reverse(),
    )
    assert read(shuffled) is None

    # A file naming any type beyond the few expected: refused, whatever the trust policy says.
    foreign = tmp_path / "foreign"
    shutil.copytree(ridge, foreign)
    rewrite_schema(
        foreign,
        lambda schema: schema["content"]["content"].update(
            hook={"__class__": "system", "__module__": "os", "__loader__": "TypeNode", "__id__": 1}
        ),
    )
    assert read(foreign) is None
    assert read(foreign, TrustPolicy(trusted_types=("os.system",))) is None


def test_same_answers_compares_the_predictions(tmp_path):
    coef = np.arange(1.0, 4.0)
    meta = {"features": [{"name": f"x{i}", "type": "double"} for i in range(3)], "input_example": None}
    save(LinearRegressor(coef, np.asarray(0.5), "Ridge"), tmp_path / "a", meta)
    save(LinearRegressor(coef.copy(), np.asarray(0.5), "Ridge"), tmp_path / "b", meta)
    save(LinearRegressor(coef, np.asarray(0.75), "Ridge"), tmp_path / "c", meta)

    def model(name: str) -> ResolvedModel:
        return ResolvedModel("m", "m", "1", compiled=str(tmp_path / name), features=("x0", "x1", "x2"))

    assert same_answers(model("a"), model("b"))
    assert not same_answers(model("a"), model("c"))
    assert not same_answers(model("a"), ResolvedModel("m", "m", "1", features=("x0", "x1", "x2")))  # not compiled


@pytest.fixture
def trained_folder(embedded_store, tmp_path) -> Path:
    """A copy of the trainer's registered regressor: an MLflow folder, a Ridge in skops."""

    def is_ridge(mlmodel: Path) -> bool:
        artifact = mlmodel.parent / "model.skops"
        if not artifact.is_file():
            return False
        with zipfile.ZipFile(artifact) as archive:
            return json.loads(archive.read("schema.json"))["__class__"] == "Ridge"

    folder = tmp_path / "model"
    shutil.copytree(next(path for path in embedded_store.home.rglob("MLmodel") if is_ridge(path)).parent, folder)
    return folder


def wait_for(predicate, timeout: float = 120.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_a_first_start_answers_from_the_arrays_then_verifies_and_caches(
    service, trained_folder, tmp_path, example_data
):
    import skops.io

    artifact = trained_folder / "model.skops"
    estimator = skops.io.load(artifact, trusted=skops.io.get_untrusted_types(file=artifact))
    rows = example_data.x_test[:4]
    want = estimator.predict(pd.DataFrame(rows, columns=FEATURES))
    cache = {"DIABETES_MODEL_CACHE": str(tmp_path / "cache")}
    key = prepared.key_of(trained_folder)
    assert key is not None

    with service(str(trained_folder), env=cache, workers=2) as first:
        answer = requests.post(first.url + "/score", json={"data": rows}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert np.allclose(answer.json(), want, rtol=1e-12)
        assert wait_for(lambda: VERIFIED in first.output()), first.output()
        log = first.output()
        assert log.index(SERVED_FROM_ARRAYS) < log.index(VERIFIED)
        assert "swapping in the verified form" not in log
        for worker in workers_of(first):
            assert mapped_packages(worker.pid) == set()
        # The entry is the child's, verified: a sound one, for the artifact's digest.
        entry = tmp_path / "cache" / "prepared" / key.folder_name
        assert prepared.is_sound(entry, key)

    with service(str(trained_folder), env=cache, workers=2) as again:
        answer = requests.post(again.url + "/score", json={"data": rows}, timeout=10)
        assert np.allclose(answer.json(), want, rtol=1e-12)
    assert "from the prepared-model cache" in again.output()
    assert SERVED_FROM_ARRAYS not in again.output()


def test_a_first_start_whose_verification_fails_stops_the_service(trained_folder, tmp_path, monkeypatch):
    # A schema the reader takes (it reads only the arrays) but skops refuses to load: the protocol
    # version of the file format is one no skops knows.
    rewrite_schema(trained_folder, lambda schema: schema.update(protocol=999))
    monkeypatch.setenv("DIABETES_MODEL_CACHE", str(tmp_path / "cache"))
    log = tmp_path / "serve.log"
    port = free_port()
    cmd = [DIABETES, "serve", "--model-uri", str(trained_folder), "--port", str(port), "--workers", "1"]
    proc = start(cmd, log=log)
    try:
        code = proc.wait(timeout=120)
    finally:
        stop(proc)
    output = log.read_text()
    assert SERVED_FROM_ARRAYS in output  # it was served, provisionally
    assert code != 0
    assert "cannot serve the model" in output
    assert "model.skops" in output
    assert not (tmp_path / "cache" / "prepared").exists() or not any(
        entry.name[0] != "." for entry in (tmp_path / "cache" / "prepared").iterdir()
    )


def test_the_cold_path_imports_nothing_it_does_not_need(service, trained_folder, tmp_path):
    """A restart from the cache, with gRPC on (the default), every process under -X importtime.

    One worker: processes writing importtime's lines to one file can cut each other's lines, so the
    log is searched for names, not parsed line by line."""
    cache = {"DIABETES_MODEL_CACHE": str(tmp_path / "cache")}
    with service(str(trained_folder), env=cache, workers=1) as first:
        assert wait_for(lambda: VERIFIED in first.output()), first.output()
    env = {**cache, "PYTHONPROFILEIMPORTTIME": "1"}
    port, grpc_port = free_port(), free_port()
    log = tmp_path / "importtime.log"
    cmd = [DIABETES, "serve", "--model-uri", str(trained_folder), "--port", str(port), "--workers", "1"]
    proc = start([*cmd, "--grpc-port", str(grpc_port)], env=env, log=log)
    try:
        # Ready: the worker warm and its gRPC server listening.
        wait_http(f"http://127.0.0.1:{port}/health/ready", timeout=60, proc=proc)
        answer = requests.post(f"http://127.0.0.1:{port}/score", json={"data": [[0.0] * 10]}, timeout=10)
        assert answer.status_code == 200
        text = log.read_text()
    finally:
        stop(proc)

    def imported(name: str) -> bool:
        """Whether the log records an import of `name` or of a module in it."""
        return re.search(rf"\| +{re.escape(name)}(\.\S+)?\n", text) is not None

    assert imported("diabetes_service.supervisor.worker")  # the control: imports were recorded
    unwanted = (*HEAVY, "mlflow", "skops", "pydantic_settings", "swagger_ui_bundle", "wsproto", "websockets")
    assert [name for name in unwanted if imported(name)] == []
    assert not imported("numpy.random")  # probe rows are fixed values (model/probes.py)
    # gRPC's modules are imported once the worker's model is warm, in a thread (worker.py), so they
    # are not before this line: the HTTP side could answer by then.
    warm = text.index(" ready (")
    assert not re.search(r"\| +(grpclib|grpc|h2|tritonclient|google\.protobuf)(\.\S+)?\n", text[:warm])


def test_ready_means_the_grpc_port_listens_too(service, trained_folder, tmp_path):
    """gRPC starts after the model is warm (off HTTP's way to its first answer), so readiness waits for
    it: a probe that says ready must not send gRPC clients to a port nobody listens on."""
    svc = service(str(trained_folder), env={"DIABETES_MODEL_CACHE": str(tmp_path / "cache")}, grpc=True).start()
    host, port = svc.grpc_target.split(":")
    with socket.create_connection((host, int(port)), timeout=5):
        pass  # connected: refused would raise
