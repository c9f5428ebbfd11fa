"""Following an alias: new versions swapped in under load with no failed request, damaged ones refused,
SIGHUP, and signed MLflow webhook deliveries from a real `mlflow server`."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from tests.conftest import run_train
from tests.service.test_cold_start import settle
from tests.support.mlflow_server import MlflowServer
from tests.support.processes import wait_http
from tests.trainer.helpers import store

pytestmark = pytest.mark.slow

MODEL = "diabetes_model"


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An embedded store with versions 1 (champion, alpha 0.03) and 2 (alpha 0.5: other answers)."""
    home = tmp_path_factory.mktemp("follow-store")
    run_train(home)
    run_train(home, "--alpha", "0.5")
    return home, f"sqlite:///{home / 'mlruns.db'}"


def move_alias(tracking_uri: str, version: str) -> None:
    with store(tracking_uri) as client:
        client.set_registered_model_alias(MODEL, "champion", version)


def served_version(url: str, row: list[float]) -> str:
    return requests.post(url + "/score", json={"data": [row]}, timeout=30).headers["x-model-version"]


def served_models(url: str) -> set[str]:
    """The versions the workers serve, from /metrics' diabetes_model_info (one line per version)."""
    text = requests.get(url + "/metrics", timeout=10).text
    return set(re.findall(r'^diabetes_model_info\{name="diabetes_model",version="([^"]+)"\} 1\.0$', text, re.MULTILINE))


def wait_version(url: str, row: list[float], version: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while served_version(url, row) != version:
        assert time.monotonic() < deadline, f"version {version} not served within {timeout}s"
        time.sleep(0.1)


def test_a_new_champion_is_swapped_in_under_load_with_no_failed_request(service, two_versions, example_data):
    home, uri = two_versions
    move_alias(uri, "1")
    env = {"DIABETES_HOME": str(home), "DIABETES_TRACKING_URI": uri}
    svc = service(f"models:/{MODEL}@champion", env=env, workers=2, args=["--follow", "--follow-interval", "0.5"])
    svc.start()
    settle(svc)  # the first start answers from the arrays; versions are followed once it is verified
    row = example_data.x_test[0]
    answers: list[tuple[int, str, float]] = []
    stop = threading.Event()

    def client() -> None:
        with requests.Session() as session:  # keep-alive, as a real client pool
            while not stop.is_set():
                answer = session.post(svc.url + "/score", json={"data": [row]}, timeout=10)
                value = answer.json()[0] if answer.status_code == 200 else float("nan")
                answers.append((answer.status_code, answer.headers.get("x-model-version", ""), value))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        move_alias(uri, "2")
        wait_version(svc.url, row, "2", timeout=120)
        # Every worker on version 2, polled rather than slept: on a loaded machine (the suite on every
        # core) the second worker's swap can come seconds after the first's.
        deadline = time.monotonic() + 60
        while served_models(svc.url) != {"2"}:
            assert time.monotonic() < deadline, f"workers still serving {served_models(svc.url)} after 60 s"
            time.sleep(0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
    statuses = Counter(status for status, _, _ in answers)
    assert statuses == Counter({200: len(answers)}), statuses
    by_version: dict[str, set[float]] = {}
    for _, version, value in answers:
        by_version.setdefault(version, set()).add(round(value, 9))
    # Each answer is the one its x-model-version gives: one value per version, and they differ.
    assert set(by_version) == {"1", "2"}, by_version.keys()
    assert len(by_version["1"]) == 1, by_version
    assert len(by_version["2"]) == 1, by_version
    assert by_version["1"] != by_version["2"]
    assert round(next(iter(by_version["1"])), 3) == 235.112
    assert requests.get(svc.url + "/swagger.json", timeout=5).headers["x-model-version"] == "2"
    metrics = requests.get(svc.url + "/metrics", timeout=5).text
    assert 'diabetes_model_swaps_total{outcome="swapped"} 1.0' in metrics
    assert 'diabetes_model_info{name="diabetes_model",version="2"} 1.0' in metrics
    assert "swapping in diabetes_model version 2 (was version 1)" in svc.output()


def test_a_damaged_version_is_refused_and_the_old_one_keeps_serving(service, two_versions, example_data):
    home, uri = two_versions
    damaged = str(run_train(home, "--alpha", "0.7")["model_version"])
    move_alias(uri, "1")
    with store(uri) as client:
        source = client.get_model_version(MODEL, damaged).source
        location = client.get_logged_model(source.removeprefix("models:/")).artifact_location
    artifacts = Path(location.removeprefix("file://"))
    for model_file in artifacts.glob("model.*"):
        model_file.write_bytes(b"not a model at all")
    env = {"DIABETES_HOME": str(home), "DIABETES_TRACKING_URI": uri}
    svc = service(f"models:/{MODEL}@champion", env=env, args=["--follow", "--follow-interval", "0.3"]).start()
    settle(svc)
    row = example_data.x_test[0]
    move_alias(uri, damaged)
    deadline = time.monotonic() + 60
    while f"refused version {damaged}" not in svc.output():
        assert time.monotonic() < deadline, svc.output()[-2000:]
        time.sleep(0.2)
    time.sleep(1.5)  # several more intervals: a refused version is not tried again
    assert served_version(svc.url, row) == "1"
    assert requests.get(svc.url + "/health/ready", timeout=5).status_code == 200
    metrics = requests.get(svc.url + "/metrics", timeout=5).text
    assert 'diabetes_model_swaps_total{outcome="refused"} 1.0' in metrics
    assert svc.output().count(f"refused version {damaged}") == 1


def test_sighup_resolves_again_without_follow(service, two_versions, example_data):
    home, uri = two_versions
    move_alias(uri, "1")
    env = {"DIABETES_HOME": str(home), "DIABETES_TRACKING_URI": uri}
    svc = service(f"models:/{MODEL}@champion", env=env, workers=2).start()
    settle(svc)
    row = example_data.x_test[0]
    move_alias(uri, "2")
    time.sleep(1.0)
    assert served_version(svc.url, row) == "1"  # not following: nothing moves by itself
    svc.proc.send_signal(signal.SIGHUP)
    wait_version(svc.url, row, "2", timeout=60)
    assert "received SIGHUP" in svc.output()
    assert svc.proc.poll() is None


def test_follow_refuses_a_fixed_version_in_one_line(service):
    import subprocess

    from tests.support.processes import DIABETES

    done = subprocess.run(
        [DIABETES, "serve", "--model-uri", f"models:/{MODEL}/3", "--follow"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1
    assert "--follow needs a models:/NAME@ALIAS or models:/NAME/latest URI" in done.stderr


def test_a_signed_mlflow_webhook_swaps_and_a_forged_one_is_refused(service, tmp_path, example_data):
    from mlflow.entities.webhook import WebhookEvent

    secret = "webhook-test-secret-123"
    mlflow_env = {
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",  # loopback
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        # The server caches each event's webhooks (60 s by default): the alias moved before the
        # webhook existed would hide it for that long.
        "MLFLOW_WEBHOOK_CACHE_TTL": "1",
    }
    with MlflowServer(tmp_path / "mlflow", env=mlflow_env) as server:
        home = tmp_path / "client"
        home.mkdir()
        run_train(home, "--tracking-uri", server.uri)
        run_train(home, "--tracking-uri", server.uri, "--alpha", "0.5")
        move_alias(server.uri, "1")  # alpha 0.5 scores better: the trainer made version 2 champion
        env = {"DIABETES_HOME": str(home), "DIABETES_TRACKING_URI": server.uri, "DIABETES_WEBHOOK_SECRET": secret}
        svc = service(f"models:/{MODEL}@champion", env=env).start()
        settle(svc)
        row = example_data.x_test[0]
        forged = requests.post(
            svc.url + "/hooks/mlflow",
            data=b'{"entity": "model_version_alias", "action": "created"}',
            headers={
                "X-MLflow-Signature": "v1,bm90IHRoZSByaWdodCBzaWduYXR1cmU=",
                "X-MLflow-Timestamp": str(int(time.time())),
                "X-MLflow-Delivery-Id": "forged-1",
            },
            timeout=5,
        )
        assert forged.status_code == 401
        assert forged.json()["field"] == "X-MLflow-Signature"
        stale = requests.post(svc.url + "/hooks/mlflow", data=b"{}", headers={"X-MLflow-Timestamp": "1"}, timeout=5)
        assert stale.status_code == 401
        with store(server.uri) as client:
            client.create_webhook(
                name="diabetes-service",
                url=f"{svc.url}/hooks/mlflow",
                events=[WebhookEvent("model_version_alias", "created")],
                secret=secret,
            )
            assert served_version(svc.url, row) == "1"
            time.sleep(1.5)  # past the server's webhook cache
            client.set_registered_model_alias(MODEL, "champion", "2")
        wait_version(svc.url, row, "2", timeout=60)
        assert "received SIGHUP" in svc.output()
        wait_http(svc.url + "/health/ready", timeout=5)
        # A tracking server is read over its REST API: what the serving image does, without MLflow.
        probe = (
            "import sys, tempfile, os; os.environ['DIABETES_MODEL_CACHE'] = tempfile.mkdtemp();"
            "from diabetes_service.model.resolution import resolve_registry;"
            f"r = resolve_registry('models:/{MODEL}@champion', '{server.uri}');"
            "print(r.version, os.path.isfile(os.path.join(r.path, 'MLmodel')), 'mlflow' in sys.modules)"
        )
        import subprocess
        import sys

        done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
        assert done.stdout.split() == ["2", "True", "False"], done.stderr[-2000:]
