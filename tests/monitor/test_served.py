"""End to end, issue 24: the real service logs what it scored (`--log-payloads`), and `diabetes monitor`
reads those very records against the profile `diabetes train` logged with the model. A sample of the
training distribution drifts nowhere; the same traffic with `bmi` moved by 2 standard deviations is
flagged, and `--fail-on-drift` exits 3."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import requests

from tests.conftest import FEATURES, EmbeddedStore, ExampleData
from tests.monitor.conftest import run_monitor
from tests.support.service import ServiceProcess


def _serve_and_log(store: EmbeddedStore, uri: str, rows: np.ndarray, folder: Path) -> None:
    """`rows` scored through /score in 100-row calls by a service logging to `folder`, then SIGTERM."""
    with ServiceProcess(uri, env=store.env, args=["--log-payloads", str(folder)]) as svc:
        session = requests.Session()
        for start in range(0, len(rows), 100):
            answer = session.post(svc.url + "/score", json={"data": rows[start : start + 100].tolist()}, timeout=10)
            assert answer.status_code == 200, answer.text
        refused = session.post(svc.url + "/score", json={"data": [[1.0, 2.0]]}, timeout=10)
        assert refused.status_code == 422  # the wrong number of features: refused, logged without its body
        os.kill(svc.proc.pid, signal.SIGTERM)  # the drain writes every queued record
        svc.proc.wait(timeout=30)


def _report(store: EmbeddedStore, folder: Path, uri: str, out: Path) -> tuple[int, dict]:
    done = run_monitor(
        "--payloads", str(folder), "--model-uri", uri, "--out", str(out / "report.html"),
        "--json", str(out / "report.json"), "--fail-on-drift",
        env={**store.env, "DIABETES_MODEL_CACHE": str(out / "cache")},
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads((out / "report.json").read_text())


def test_what_the_service_logged_drifts_only_when_its_inputs_moved(
    embedded_store: EmbeddedStore, example_data: ExampleData, tmp_path: Path
) -> None:
    trained = embedded_store.regressor
    uri = f"models:/{trained['model_name']}/{trained['model_version']}"
    train = np.asarray(example_data.x_train)
    rng = np.random.default_rng(7)
    fresh = train[rng.integers(0, len(train), 3_000)]
    shifted = fresh.copy()
    bmi = FEATURES.index("bmi")
    shifted[:, bmi] += 2 * train[:, bmi].std()

    _serve_and_log(embedded_store, uri, fresh, tmp_path / "fresh")
    code, figures = _report(embedded_store, tmp_path / "fresh", uri, tmp_path / "fresh-report")
    assert code == 0
    assert figures["rows"] == 3_000
    assert figures["refused"] == 1
    assert [name for name, feature in figures["features"].items() if feature["drift"]] == []

    _serve_and_log(embedded_store, uri, shifted, tmp_path / "shifted")
    code, figures = _report(embedded_store, tmp_path / "shifted", uri, tmp_path / "shifted-report")
    assert code == 3
    assert figures["rows"] == 3_000
    assert figures["drifting"] == ["bmi"]
    assert figures["prediction"]["drift"] is True
