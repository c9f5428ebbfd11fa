"""A first start of a registered version never seen before: its files fetched without MLflow.

The supervisor fetches the version's files itself (diabetes_store.registry.quick_download): copied
from the embedded store's artifact folder, or over a real `mlflow server`'s artifact proxy, so the
linear model is served from its arrays while the preparation child verifies it on the local copy.
Checked with real processes on loopback, in an environment where importing MLflow fails in every
process (supervisor, worker, preparation child): the answer is the registered model's own, and the
child verifies it.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import requests

from diabetes_store.cache import version_folder
from diabetes_store.registry import quick_download, quick_lookup
from diabetes_store.registry_sqlite import local_files
from diabetes_store.uris import parse_registered
from tests.conftest import run_train
from tests.service.test_cold_start import expected
from tests.service.test_first_start import SERVED_FROM_ARRAYS, VERIFIED, wait_for
from tests.service.test_stale_model import run_model_file
from tests.support.mlflow_server import MlflowServer

URI = "models:/diabetes_model/1"


def without_mlflow(folder: Path) -> dict[str, str]:
    """An environment in which importing MLflow fails, in every process: a package named `mlflow`
    first on the path, whose import raises."""
    stub = folder / "mlflow"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('this test forbids importing MLflow')\n")
    env = {"PYTHONPATH": str(folder)}
    refused = subprocess.run([sys.executable, "-c", "import mlflow"], env={**os.environ, **env}, capture_output=True)
    assert b"this test forbids importing MLflow" in refused.stderr  # the control: the stub is what is found
    return env


def first_start_without_mlflow(service, env: dict[str, str], rows: list[list[float]], model_file: Path) -> str:
    """Serve URI from an empty cache where MLflow cannot be imported; check the answer; the log."""
    with service(URI, env=env, workers=1) as svc:
        answer = requests.post(svc.url + "/score", json={"data": rows}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert np.allclose(answer.json(), expected(model_file, rows), rtol=1e-9)
        # The preparation child loaded the local copy with scikit-learn, without MLflow, and agreed.
        assert wait_for(lambda: VERIFIED in svc.output()), svc.output()[-3000:]
        log = svc.output()
    assert SERVED_FROM_ARRAYS in log  # served before scikit-learn had verified it
    return log


def test_the_embedded_stores_first_start_imports_no_mlflow(service, tmp_path, example_data):
    home = tmp_path / "home"
    home.mkdir()
    run = run_train(home)
    env = {
        "DIABETES_HOME": str(home),
        "DIABETES_TRACKING_URI": f"sqlite:///{home / 'mlruns.db'}",
        "DIABETES_MODEL_CACHE": str(tmp_path / "cache"),
        **without_mlflow(tmp_path / "stub"),
    }
    model_file = run_model_file(home / "mlartifacts", run["run_id"])
    first_start_without_mlflow(service, env, example_data.x_test[:3], model_file)
    assert any((tmp_path / "cache" / "prepared").iterdir())  # the verified form, for the next start


def test_a_tracking_servers_first_start_imports_no_mlflow(service, tmp_path, example_data):
    home = tmp_path / "home"
    home.mkdir()
    with MlflowServer(tmp_path / "server") as server:
        run = run_train(home, "--tracking-uri", server.uri)
        env = {
            "DIABETES_TRACKING_URI": server.uri,
            "DIABETES_MODEL_CACHE": str(tmp_path / "cache"),
            **without_mlflow(tmp_path / "stub"),
        }
        model_file = run_model_file(server.artifacts, run["run_id"])
        first_start_without_mlflow(service, env, example_data.x_test[:3], model_file)

        # Files fetched by name and number are kept only while the record names the same content.
        identity = quick_lookup(server.uri, parse_registered(URI))
        assert identity is not None
        stale = dataclasses.replace(identity, created="1")
        target = tmp_path / "other-cache" / "stale"
        assert not quick_download(server.uri, stale, target)
        assert not target.exists()
        assert list(target.parent.iterdir()) == []  # no staging folder left behind
        assert quick_download(server.uri, identity, tmp_path / "other-cache" / "same")
        served = next(server.artifacts.rglob("model.skops"))  # the one registered model's artifact
        assert (tmp_path / "other-cache" / "same" / "model.skops").read_bytes() == served.read_bytes()


def test_only_the_content_the_registry_names_now_is_copied(tmp_path, embedded_store, monkeypatch):
    monkeypatch.setenv("DIABETES_MODEL_CACHE", str(tmp_path / "cache"))
    tracking = embedded_store.tracking_uri
    identity = quick_lookup(tracking, parse_registered(URI))
    assert identity is not None
    folder = local_files(tracking, identity)
    assert folder is not None
    assert (folder / "MLmodel").is_file()
    # The same number, other content (registered again): not this identity's files.
    stale = type(identity)(identity.name, identity.version, identity.run_id, identity.source, "1")
    assert local_files(tracking, stale) is None
    target = version_folder(tracking, stale)
    assert not quick_download(tracking, stale, target)
    assert not target.parent.exists() or list(target.parent.iterdir()) == []  # nothing half-written

    target = version_folder(tracking, identity)
    assert quick_download(tracking, identity, target)
    assert sorted(p.name for p in target.iterdir()) == sorted(p.name for p in folder.iterdir())
    assert (target / "model.skops").read_bytes() == (folder / "model.skops").read_bytes()


@pytest.mark.parametrize("location", ["s3://bucket/models/m-1/artifacts", "file://otherhost/models/m-1"])
def test_files_elsewhere_are_left_to_mlflows_client(tmp_path, location):
    """A store whose artifacts live elsewhere: no shortcut, MLflow's client fetches them."""
    db = tmp_path / "mlruns.db"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TABLE model_versions (name TEXT, version INTEGER, creation_time INTEGER, current_stage TEXT,"
            " source TEXT, run_id TEXT, status TEXT, storage_location TEXT, workspace TEXT DEFAULT 'default')"
        )
        conn.execute(
            "INSERT INTO model_versions VALUES ('m', 1, 1700000000000, 'None', 'models:/m-1', 'r1', 'READY', ?,"
            " 'default')",
            (location,),
        )
    tracking = f"sqlite:///{db}"
    identity = quick_lookup(tracking, parse_registered("models:/m/1"))
    assert identity is not None
    assert identity.run_id == "r1"  # the lookup itself works on this table
    assert local_files(tracking, identity) is None
    assert not quick_download(tracking, identity, tmp_path / "cache" / "x")
    assert not (tmp_path / "cache" / "x").exists()
