"""Cold start: the prepared-model cache, and what a worker of a compiled linear model never loads.

Real processes throughout: `diabetes serve` on loopback with its own model cache. Whether a process
imported scikit-learn, SciPy or pandas is read from its memory map: each of them loads compiled
extension modules on import (sklearn/__check_build, scipy/_lib, pandas/_libs), so an import shows
there, from outside the process, with nothing added to the service for the test.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import requests

from diabetes_service.model import prepared
from diabetes_service.model.artifact import artifact_sha256
from tests.support.processes import DIABETES
from tests.support.service import ServiceProcess

HEAVY = ("sklearn", "scipy", "pandas")
FROM_CACHE = "from the prepared-model cache"


def mapped_packages(pid: int) -> set[str]:
    """Which of HEAVY have files mapped into process `pid`."""
    found = set()
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        for package in HEAVY:
            if f"/{package}/" in line:
                found.add(package)
    return found


def workers_of(svc: ServiceProcess) -> list[psutil.Process]:
    assert svc.proc is not None
    return psutil.Process(svc.proc.pid).children()


def settle(svc: ServiceProcess, timeout: float = 180.0) -> None:
    """Wait until the preparation child is done: a first start of a linear model answers from its
    arrays before the child has verified it (model/provisional.py), and only the child's verified
    form enters the prepared-model cache that the next start is meant to find. A start that found the
    verified form in that cache already has nothing to wait for."""
    deadline = time.monotonic() + timeout
    done = r"verified, scikit-learn gives the answers served|model \S+: prepared|: from the prepared-model cache"
    while not re.search(done, svc.output()):
        assert time.monotonic() < deadline, svc.output()[-3000:]
        time.sleep(0.1)


def predict(svc: ServiceProcess, rows: list[list[float]]) -> list[float]:
    answer = requests.post(svc.url + "/score", json={"data": rows, "method": "predict"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return answer.json()


def expected(model_file: Path, rows: list[list[float]]) -> np.ndarray:
    import joblib
    import pandas as pd

    model = joblib.load(model_file)
    return model.predict(pd.DataFrame(rows, columns=model.feature_names_in_))


def agree(got: list[float], want: np.ndarray) -> bool:
    return len(got) == len(want) and all(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(got, want, strict=True))


@pytest.fixture
def model_copy(example_model_pkl: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy2(example_model_pkl, folder / "model.pkl")
    return folder


@pytest.fixture
def cache_env(tmp_path: Path) -> dict[str, str]:
    return {"DIABETES_MODEL_CACHE": str(tmp_path / "cache")}


def entry_of(cache_env: dict[str, str], model: Path) -> Path:
    key = prepared.key_of(model)
    assert key is not None
    return Path(cache_env["DIABETES_MODEL_CACHE"]) / "prepared" / key.folder_name


def test_the_artifact_digest_is_the_sha256_of_the_artifact_file(model_copy, embedded_store):
    assert artifact_sha256(model_copy) == hashlib.sha256((model_copy / "model.pkl").read_bytes()).hexdigest()
    assert artifact_sha256(model_copy / "model.pkl") == artifact_sha256(model_copy)
    # An MLflow folder: the file its MLmodel names (the trainer saves skops), not the MLmodel itself.
    mlflow_folder = next(embedded_store.home.rglob("MLmodel")).parent
    skops_file = next(mlflow_folder.glob("model.skops"))
    assert artifact_sha256(mlflow_folder) == hashlib.sha256(skops_file.read_bytes()).hexdigest()


def test_a_restart_starts_from_the_prepared_form_and_no_worker_loads_scikit_learn(
    service, model_copy, cache_env, example_data
):
    rows = example_data.x_test[:5]
    want = expected(model_copy / "model.pkl", rows)
    with service(str(model_copy), env=cache_env, workers=2) as first:
        assert agree(predict(first, rows), want)
        workers = workers_of(first)
        assert len(workers) == 2
        for worker in workers:
            assert mapped_packages(worker.pid) == set(), f"a worker loaded {mapped_packages(worker.pid)}"
        assert mapped_packages(first.proc.pid) == set()  # the supervisor neither
    digest = hashlib.sha256((model_copy / "model.pkl").read_bytes()).hexdigest()
    assert f"prepared (artifact sha256 {digest})" in first.output()
    assert FROM_CACHE not in first.output()
    entry = entry_of(cache_env, model_copy)
    assert prepared.is_sound(entry, prepared.key_of(model_copy))

    with service(str(model_copy), env=cache_env, workers=2) as again:
        assert agree(predict(again, rows), want)
        for worker in workers_of(again):
            assert mapped_packages(worker.pid) == set()
        # No preparation child ran: the supervisor's only children are its two workers.
        assert len(workers_of(again)) == 2
    assert f"{FROM_CACHE} (artifact sha256 {digest})" in again.output()


def test_the_memory_map_check_sees_scikit_learn_in_a_worker_that_uses_it(service, tmp_path, example_data, cache_env):
    """The control of the test above: a pipeline is served by scikit-learn itself, and that shows."""
    import joblib
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), Ridge()).fit(example_data.x_train, example_data.y_train)
    joblib.dump(model, tmp_path / "pipeline.pkl")
    with service(str(tmp_path / "pipeline.pkl"), env=cache_env) as svc:
        predict(svc, example_data.x_test[:1])
        assert {"sklearn", "scipy"} <= mapped_packages(workers_of(svc)[0].pid)


def test_a_damaged_cache_entry_is_ignored_and_prepared_again(service, model_copy, cache_env, example_data):
    rows = example_data.x_test[:3]
    want = expected(model_copy / "model.pkl", rows)
    with service(str(model_copy), env=cache_env):
        pass
    entry = entry_of(cache_env, model_copy)
    # Coefficients that would answer wrongly, in a well-formed file: only the digest tells.
    with np.load(entry / "linear.npz") as arrays:
        tampered = {name: arrays[name] for name in arrays.files}
    tampered["coef_t"] = tampered["coef_t"] * 2
    np.savez(entry / "linear.npz", **tampered)
    assert not prepared.is_sound(entry, prepared.key_of(model_copy))

    with service(str(model_copy), env=cache_env) as svc:
        assert agree(predict(svc, rows), want)
    assert FROM_CACHE not in svc.output()
    assert prepared.is_sound(entry, prepared.key_of(model_copy))  # rebuilt in place


def test_a_changed_signature_beside_the_same_artifact_is_prepared_again(tmp_path, embedded_store):
    folder = tmp_path / "model"
    shutil.copytree(next(embedded_store.home.rglob("MLmodel")).parent, folder)
    before = prepared.key_of(folder)
    (folder / "input_example.json").write_text(json.dumps({"columns": [], "data": []}))
    after = prepared.key_of(folder)
    assert before is not None
    assert after is not None
    assert before.artifact_sha256 == after.artifact_sha256
    assert before.folder_name != after.folder_name


def test_a_pinned_version_seen_before_starts_from_the_cache_once_the_registry_confirms_it(
    service, tmp_path, embedded_store, cache_env, example_data
):
    # A copy of the store's database, so that it can disappear: its artifacts stay where they are.
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy2(embedded_store.home / "mlruns.db", home / "mlruns.db")
    env = {**cache_env, "DIABETES_HOME": str(home), "DIABETES_TRACKING_URI": f"sqlite:///{home / 'mlruns.db'}"}
    version = embedded_store.regressor["model_version"]
    pinned = f"models:/{embedded_store.regressor['model_name']}/{version}"
    rows = example_data.x_test[:2]
    with service(pinned, env=env) as first:
        answers = predict(first, rows)
        settle(first)
    assert FROM_CACHE not in first.output()

    with service(pinned, env=env) as again:  # the registry names the same content: from the cache
        assert predict(again, rows) == answers
        assert requests.get(again.url + "/", timeout=5).headers["x-model-version"] == str(version)
    assert FROM_CACHE in again.output()

    # The registry is no more: what version N holds cannot be confirmed, so neither a pinned version
    # nor an alias is served from what was downloaded before.
    (home / "mlruns.db").rename(home / "gone.db")
    alias = f"models:/{embedded_store.regressor['model_name']}@champion"
    for uri in (pinned, alias):
        done = subprocess.run(
            [DIABETES, "serve", "--model-uri", uri, "--port", "0"],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode != 0, uri
        assert "cannot serve the model" in done.stderr, done.stderr


def test_cache_entries_round_trip_and_a_baked_folder_is_read(tmp_path, model_copy, monkeypatch):
    from diabetes_service.model.compile import linear

    monkeypatch.setenv("DIABETES_MODEL_CACHE", str(tmp_path / "cache"))
    key = prepared.key_of(model_copy)
    assert key is not None
    assert prepared.lookup(key) is None
    compiled = linear.LinearRegressor(np.ones(3), np.asarray(0.5), "Ridge")
    meta = {"features": [{"name": f"x{i}", "type": "double"} for i in range(3)], "input_example": None}
    baked = tmp_path / "baked"
    entry = prepared.store(key, lambda folder: linear.save(compiled, folder, meta), root=baked)
    assert entry is not None
    assert entry.parent == baked
    assert prepared.lookup(key) is None  # not among the places looked in yet
    monkeypatch.setenv(prepared.BAKED_ENV, str(baked))
    assert prepared.lookup(key) == entry
    loaded, _ = linear.load(entry)
    assert loaded.predict(np.ones((1, 3))).tolist() == [3.5]
    (entry / "stray.txt").write_text("not written by the cache")
    assert prepared.lookup(key) is None  # an entry holding anything unrecorded is not trusted


def test_an_unwritable_cache_still_serves(service, model_copy, tmp_path, example_data):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    with service(str(model_copy), env={"DIABETES_MODEL_CACHE": str(blocked)}) as svc:
        assert agree(predict(svc, example_data.x_test[:2]), expected(model_copy / "model.pkl", example_data.x_test[:2]))


def test_an_alias_is_asked_on_every_start_and_follows_the_registry(
    service, tmp_path, embedded_store, cache_env, monkeypatch
):
    import mlflow

    from diabetes_store.registry import quick_lookup
    from diabetes_store.uris import parse_registered

    def alias_version(tracking_uri: str, name: str, alias: str) -> str | None:
        found = quick_lookup(tracking_uri, parse_registered(f"models:/{name}@{alias}"))
        return None if found is None else found.version

    home = tmp_path / "home"
    home.mkdir()
    shutil.copy2(embedded_store.home / "mlruns.db", home / "mlruns.db")
    tracking_uri = f"sqlite:///{home / 'mlruns.db'}"
    env = {**cache_env, "DIABETES_HOME": str(home), "DIABETES_TRACKING_URI": tracking_uri}
    # MLflow's client below must not fall back to its default store (a new mlflow.db in the cwd).
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    name = embedded_store.regressor["model_name"]
    uri = f"models:/{name}@champion"
    with service(uri, env=env) as first:
        assert requests.get(first.url + "/", timeout=5).headers["x-model-version"] == "1"
        settle(first)

    # A second version of the same artifacts, and the alias moved to it: the next start serves it,
    # from the cache (same artifact digest), after asking the store directly.
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    # The folder version 1 is stored in, as its source: MLflow checks a `models:/m-...` source
    # against the tracking store its global settings name, not this client's.
    with contextlib.closing(sqlite3.connect(home / "mlruns.db")) as db:
        (location,) = db.execute("SELECT storage_location FROM model_versions WHERE name = ?", (name,)).fetchone()
    version = client.create_model_version(name, location).version
    client.set_registered_model_alias(name, "champion", version)
    assert alias_version(tracking_uri, name, "champion") == str(version)
    assert alias_version(tracking_uri, name, "nobody") is None
    assert alias_version(f"sqlite:///{tmp_path / 'missing.db'}", name, "champion") is None
    assert not (tmp_path / "missing.db").exists()  # opened read-only: never created

    with service(uri, env=env) as again:
        assert requests.get(again.url + "/", timeout=5).headers["x-model-version"] == str(version)
    assert f"models:/{name}@champion: {FROM_CACHE}" in again.output()


def test_a_start_from_the_cache_keeps_the_trust_rules(service, model_copy, cache_env):
    """The cache holds arrays, not code, yet a start from it refuses what a load would refuse."""
    with service(str(model_copy), env=cache_env):  # prepared with the suite's --allow-pickle
        pass
    digest = hashlib.sha256((model_copy / "model.pkl").read_bytes()).hexdigest()

    def serve(**env: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [DIABETES, "serve", "--model-uri", str(model_copy), "--port", "0"],
            env={**os.environ, **cache_env, **env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    refused = serve(DIABETES_ALLOW_PICKLE="false")
    assert refused.returncode != 0
    assert "--allow-pickle" in refused.stderr
    wrong_pin = serve(DIABETES_ALLOW_PICKLE="false", DIABETES_MODEL_SHA256="0" * 64)
    assert wrong_pin.returncode != 0
    assert "does not match the pinned" in wrong_pin.stderr
    # The right pin is enough, and the start is from the cache.
    with service(
        str(model_copy), env={**cache_env, "DIABETES_ALLOW_PICKLE": "false", "DIABETES_MODEL_SHA256": digest}
    ) as svc:
        assert requests.get(svc.url + "/", timeout=5).status_code == 200
    assert f"{FROM_CACHE} (artifact sha256 {digest})" in svc.output()


def test_a_start_from_the_cache_without_the_mlmodel_file_keeps_its_pyfunc_method(
    service, tmp_path, example_data, cache_env, monkeypatch
):
    """The entry records `predict_fn`: a worker whose model folder has lost its MLmodel file (an
    image or a copy holding the artifact alone) still answers /invocations with predict_proba."""
    import mlflow.sklearn
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    from diabetes_service.model.resolution import ResolvedModel
    from diabetes_service.settings import ServiceSettings
    from diabetes_service.transport.app import ScoringApp

    names = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    frame = pd.DataFrame(example_data.x_train, columns=names)
    model = LogisticRegression().fit(frame, [int(y > 140) for y in example_data.y_train])
    folder = tmp_path / "proba-model"
    mlflow.sklearn.save_model(
        model, folder, signature=infer_signature(frame, model.predict_proba(frame)), pyfunc_predict_fn="predict_proba"
    )
    body = {"dataframe_split": {"columns": names, "data": example_data.x_test[:2]}}
    with service(str(folder), env=cache_env) as svc:
        prepared_answer = requests.post(svc.url + "/invocations", json=body, timeout=10).json()["predictions"]
    assert len(prepared_answer[0]) == 2  # probabilities, as the MLmodel file says
    entry = entry_of(cache_env, folder)
    assert json.loads((entry / "linear.json").read_text())["predict_fn"] == "predict_proba"

    with service(str(folder), env=cache_env) as again:  # from the cache: the same answer
        assert requests.post(again.url + "/invocations", json=body, timeout=10).json()["predictions"] == prepared_answer
    assert FROM_CACHE in again.output()

    # The same entry, served from a folder that holds no MLmodel file.
    bare = tmp_path / "bare"
    bare.mkdir()
    resolved = ResolvedModel(str(bare), "proba-model", "local", compiled=str(entry), features=tuple(names))
    core = ScoringApp(ServiceSettings(access_log=False)).lifecycle.warm_core(resolved)
    assert core.pyfunc_method == "predict_proba"
    got = core.predict(np.asarray(example_data.x_test[:2], dtype=float), core.pyfunc_method)
    assert np.allclose(np.asarray(got), np.asarray(prepared_answer), rtol=1e-12)
