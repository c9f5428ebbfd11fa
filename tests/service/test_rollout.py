"""Safe rollout: a sticky canary, shadow copies, a failing challenger rolled back (its alias removed),
a healthy one promoted, and a challenger with other inputs refused; the real service on loopback over
a real embedded registry (SQLite), both versions registered for real."""

from __future__ import annotations

import re
import subprocess
import time
from collections import Counter
from itertools import pairwise

import pytest
import requests

from tests.conftest import FEATURES, run_train
from tests.support.processes import DIABETES
from tests.trainer.helpers import store

pytestmark = pytest.mark.slow

MODEL = "diabetes_model"
CHALLENGER = f"models:/{MODEL}@challenger"


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, example_data) -> tuple[str, dict[str, str]]:
    """Versions 1 (alpha 0.03), 2 (alpha 0.5: other answers), 3 (log1p of the inputs first: NaN, so no
    answer, for any input under -1, which the others score), and `other_model` on three features."""
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    home = tmp_path_factory.mktemp("rollout-store")
    run_train(home)
    run_train(home, "--alpha", "0.5")
    uri = f"sqlite:///{home / 'mlruns.db'}"
    x = pd.DataFrame(example_data.x_train, columns=FEATURES)
    failing = make_pipeline(FunctionTransformer(np.log1p), LinearRegression()).fit(x, example_data.y_train)
    other = LinearRegression().fit(x[FEATURES[:3]], example_data.y_train)
    import mlflow

    with store(uri):
        for name, model, inputs in ((MODEL, failing, x), ("other_model", other, x[FEATURES[:3]])):
            with mlflow.start_run():
                mlflow.sklearn.log_model(
                    model,
                    name="model",
                    signature=infer_signature(inputs, model.predict(inputs)),
                    input_example=inputs.head(3),
                    registered_model_name=name,
                    pip_requirements=["scikit-learn"],
                )
    return uri, {"DIABETES_HOME": str(home), "DIABETES_TRACKING_URI": uri}


def set_aliases(uri: str, **aliases: str) -> None:
    with store(uri) as client:
        for alias, version in aliases.items():
            client.set_registered_model_alias(MODEL, alias, version)


def alias_version(uri: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    with store(uri) as client:
        try:
            return str(client.get_model_version_by_alias(MODEL, alias).version)
        except MlflowException:
            return None


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


def test_a_canary_answers_its_share_and_a_routing_key_sticks_to_one_version(service, registry, example_data, tmp_path):
    uri, env = registry
    set_aliases(uri, champion="1", challenger="2")
    payloads = tmp_path / "payloads"
    args = ["--challenger", CHALLENGER, "--rollout", "canary", "--canary-percent", "30"]
    args += ["--log-payloads", str(payloads)]
    svc = service(f"models:/{MODEL}@champion", env=env, workers=2, args=args, ready_timeout=180).start()
    row = example_data.x_test[0]
    values: dict[str, set[float]] = {}
    with requests.Session() as session:
        versions = Counter()
        for _ in range(400):
            answer = session.post(svc.url + "/score", json={"data": [row]}, timeout=10)
            assert answer.status_code == 200, answer.text
            version = answer.headers["x-model-version"]
            versions[version] += 1
            values.setdefault(version, set()).add(round(answer.json()[0], 9))
        assert set(versions) == {"1", "2"}, versions
        assert 0.15 * 400 <= versions["2"] <= 0.45 * 400, versions
        # Each answer is the one its x-model-version names: one value per version, and they differ.
        assert len(values["1"]) == len(values["2"]) == 1
        assert values["1"] != values["2"]
        by_key = {}
        for key in range(30):
            seen = {
                session.post(
                    svc.url + "/invocations",
                    json={"instances": [row]},
                    headers={"x-routing-key": f"customer-{key}"},
                    timeout=10,
                ).headers["x-model-version"]
                for _ in range(4)
            }
            assert len(seen) == 1, (key, seen)  # sticky: one version per key, in either worker
            by_key[key] = seen.pop()
        assert set(by_key.values()) == {"1", "2"}, by_key
        # The V2 protocol's own answer names the version that computed it too.
        infer = {"inputs": [{"name": "input-0", "shape": [1, 10], "datatype": "FP64", "data": row}]}
        for key, version in list(by_key.items())[:6]:
            answer = session.post(
                svc.url + f"/v2/models/{MODEL}/infer", json=infer, headers={"x-routing-key": f"customer-{key}"}
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["model_version"] == version == answer.headers["x-model-version"]
    time.sleep(0.3)  # the workers' metrics snapshots
    metrics = requests.get(svc.url + "/metrics", timeout=5).text
    assert metric(metrics, 'diabetes_rollout_state{state="canary"}') == 1
    assert metric(metrics, 'diabetes_rollout_state{state="rolled_back"}') == 0
    assert metric(metrics, 'diabetes_model_version_duration_seconds_count{version="2"}') >= versions["2"]
    assert metric(metrics, "diabetes_rollout_challenger_errors_total") == 0
    # The payload log names the version that computed each /score answer, as x-model-version did.
    svc.stop()  # SIGTERM: the sink drains
    import pyarrow.compute as pc
    import pyarrow.dataset as ds

    table = ds.dataset(payloads, format="parquet", partitioning="hive").to_table()
    logged = Counter(table.filter(pc.equal(table["route"], "/score"))["model_version"].to_pylist())
    assert logged == versions


def test_shadow_answers_with_the_champion_and_counts_every_copy(service, registry, example_data):
    uri, env = registry
    set_aliases(uri, champion="1", challenger="2")
    args = ["--challenger", CHALLENGER, "--rollout", "shadow"]
    svc = service(f"models:/{MODEL}@champion", env=env, workers=2, args=args, ready_timeout=180).start()
    rows = example_data.x_test[:5]
    with requests.Session() as session:
        for _ in range(200):
            answer = session.post(svc.url + "/score", json={"data": rows}, timeout=10)
            assert answer.status_code == 200, answer.text
            assert answer.headers["x-model-version"] == "1"
    deadline = time.monotonic() + 10
    while True:  # the copies are scored after the answers: counted soon after
        metrics = requests.get(svc.url + "/metrics", timeout=5).text
        scored = metric(metrics, "diabetes_rollout_shadow_calls_total")
        dropped = metric(metrics, "diabetes_rollout_shadow_dropped_total")
        if scored + dropped == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert scored + dropped == 200, (scored, dropped)
    assert scored > 0
    assert metric(metrics, "diabetes_rollout_compared_rows_total") == 5 * scored
    assert metric(metrics, 'diabetes_rollout_state{state="shadow"}') == 1
    assert metric(metrics, "diabetes_rollout_challenger_errors_total") == 0


def shadow_rollout(challenger, **settings):
    """A shadow rollout in this process (no supervisor, no board) with a real core for `challenger`."""
    from diabetes_service.observability.metrics import Metrics
    from diabetes_service.scoring.rollout import Rollout
    from diabetes_service.settings import ServiceSettings
    from tests.service.test_runner import core_for

    own = ServiceSettings(model_uri=f"models:/{MODEL}@champion", challenger=CHALLENGER, rollout="shadow", **settings)
    rollout = Rollout(own, Metrics())
    rollout.serve_challenger(core_for(challenger))
    return rollout


def offer_and_drain(rollout, copies) -> None:
    """Offer every copy in one loop turn (as answers leaving together do), then let the drain score them."""
    import asyncio

    async def run() -> None:
        for copy in copies:
            rollout.shadow.offer(copy)
        while rollout.counts.get("challenger_calls", 0) < len(copies):
            await asyncio.sleep(0.001)

    asyncio.run(asyncio.wait_for(run(), 30))


def expected_divergence(champion, challenger, tolerance=0.1):
    import numpy as np

    return int((np.abs(challenger - champion) > tolerance * np.maximum(np.abs(champion), 1.0)).sum())


def test_shadow_copies_queued_together_are_scored_in_one_challenger_call(example_data):
    import numpy as np
    from sklearn.linear_model import Ridge

    from tests.service.test_runner import BatchCentredModel, CountingModel

    x, y = example_data.x_train, example_data.y_train
    champion, challenger = Ridge(alpha=0.03).fit(x, y), CountingModel(Ridge(alpha=0.5).fit(x, y))
    sizes = [1, 3, 2, 5, 1, 4, 2, 1]
    starts = np.cumsum([0, *sizes])
    matrices = [np.asarray(example_data.x_test[a:b]) for a, b in pairwise(starts)]
    copies = [(m, "predict", champion.predict(m)) for m in matrices]
    rollout = shadow_rollout(challenger)
    challenger.calls.clear()  # the warm-up's
    offer_and_drain(rollout, copies)
    assert challenger.calls == [sum(sizes)]  # one call for the batch
    counts = rollout.counts
    assert counts["shadow_calls"] == counts["challenger_calls"] == len(copies)
    assert counts["shadow_batches"] == 1
    assert counts["compared_rows"] == sum(sizes)
    every = np.concatenate(matrices)
    assert counts["diverged_rows"] == expected_divergence(champion.predict(every), challenger.estimator.predict(every))
    assert counts["diverged_rows"] > 0  # the two versions differ: the split per copy is tested
    # The guard saw each copy as a call of its own: its rows and divergence.
    window = list(rollout.guard.window)
    assert [rows for *_, rows in window] == sizes
    assert [d for _, _, d, _ in window] == [
        expected_divergence(champion.predict(m), challenger.estimator.predict(m)) for m in matrices
    ]
    # A challenger whose answers depend on the other rows of the call is never batched.
    centred = BatchCentredModel(Ridge(alpha=0.5).fit(x, y))
    rollout = shadow_rollout(centred)
    centred.calls.clear()
    offer_and_drain(rollout, copies)
    assert centred.calls == [size for size in sizes for _ in range(2)]  # one call each (it predicts twice a call)
    assert rollout.counts["shadow_batches"] == len(copies)


def test_a_batch_holding_one_failing_copy_counts_that_copy_alone(example_data):
    import numpy as np
    from sklearn.linear_model import Ridge

    from tests.service.test_runner import InfinityAboveModel

    x, y = example_data.x_train, example_data.y_train
    champion, challenger = Ridge(alpha=0.03).fit(x, y), InfinityAboveModel(Ridge(alpha=0.03).fit(x, y))
    matrices = [np.asarray(example_data.x_test[i : i + 2]) for i in range(0, 20, 2)]
    matrices[6] = matrices[6].copy()
    matrices[6][1, 0] = 1e301  # the challenger answers infinity: a row it cannot score
    copies = [(m, "predict", champion.predict(m)) for m in matrices]
    rollout = shadow_rollout(challenger, guard_error_rate=1.0)
    challenger.calls.clear()
    offer_and_drain(rollout, copies)
    # The batch failed; each copy was then scored alone, and only the failing one is the challenger's error.
    assert challenger.calls == [20] + [2] * 10
    counts = rollout.counts
    assert counts["challenger_errors"] == 1
    assert counts["shadow_calls"] == counts["challenger_calls"] == 10
    assert counts["compared_rows"] == 18
    assert [ok for ok, *_ in rollout.guard.window] == [True] * 6 + [False] + [True] * 3
    assert rollout.live()  # one error in ten is below the 100% set here


def test_shadow_batches_keep_exact_counts_under_concurrent_load(service, registry, example_data):
    """Sixteen callers at once, one copy in ten unscorable by the challenger: every count exact."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    uri, env = registry
    set_aliases(uri, champion="1", challenger="3")
    args = ["--challenger", CHALLENGER, "--rollout", "shadow", "--guard-error-rate", "1"]
    env = {**env, "DIABETES_SHADOW_QUEUE": "100000"}  # nothing dropped: every copy is counted
    svc = service(f"models:/{MODEL}@champion", env=env, workers=2, args=args, ready_timeout=180).start()
    rows = [list(r) for r in example_data.x_test[:40]]
    bad = [-2.0, *rows[0][1:]]  # log1p(-2) is NaN: the challenger (version 3) cannot score it

    def body(i: int) -> list[list[float]]:
        chosen = [rows[(i + k) % len(rows)] for k in range(1 + i % 4)]
        return [*chosen, bad] if i % 10 == 7 else chosen

    calls = 16 * 30
    bodies = [body(i) for i in range(calls)]

    def caller(first: int) -> list[tuple[int, str]]:
        with requests.Session() as session:
            seen = []
            for i in range(first, calls, 16):
                answer = session.post(svc.url + "/score", json={"data": bodies[i]}, timeout=10)
                seen.append((answer.status_code, answer.headers.get("x-model-version")))
            return seen

    with ThreadPoolExecutor(16) as pool:
        answers = [a for seen in pool.map(caller, range(16)) for a in seen]
    assert answers == [(200, "1")] * calls  # the champion answered every call
    failing = sum(1 for b in bodies if bad in b)
    good_rows = sum(len(b) for b in bodies if bad not in b)
    deadline = time.monotonic() + 30
    while True:
        metrics = requests.get(svc.url + "/metrics", timeout=5).text
        if metric(metrics, "diabetes_rollout_challenger_calls_total") >= calls or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert metric(metrics, "diabetes_rollout_shadow_dropped_total") == 0
    assert metric(metrics, "diabetes_rollout_shadow_calls_total") == calls
    assert metric(metrics, "diabetes_rollout_challenger_calls_total") == calls
    assert metric(metrics, "diabetes_rollout_challenger_errors_total") == failing
    assert metric(metrics, "diabetes_rollout_compared_rows_total") == good_rows
    assert metric(metrics, "diabetes_rollout_shadow_batches_total") < calls  # copies were scored together
    assert metric(metrics, 'diabetes_rollout_state{state="shadow"}') == 1  # not rolled back
    import mlflow

    with store(uri):
        one = mlflow.sklearn.load_model(f"models:/{MODEL}/1")
        three = mlflow.sklearn.load_model(f"models:/{MODEL}/3")
    good = np.asarray([row for b in bodies if bad not in b for row in b])
    assert metric(metrics, "diabetes_rollout_diverged_rows_total") == expected_divergence(
        one.predict(good), three.predict(good)
    )


def test_a_failing_challenger_is_rolled_back_and_its_alias_removed(service, registry, example_data):
    uri, env = registry
    set_aliases(uri, champion="1", challenger="3")
    args = ["--challenger", CHALLENGER, "--rollout", "canary", "--canary-percent", "30", "--rollback-alias"]
    svc = service(f"models:/{MODEL}@champion", env=env, workers=2, args=args, ready_timeout=180).start()
    good = example_data.x_test[0]
    bad = [-2.0, *good[1:]]  # log1p(-2) is NaN: the challenger cannot score it, the champion can
    statuses, versions = Counter(), []
    with requests.Session() as session:
        for i in range(500):
            answer = session.post(svc.url + "/score", json={"data": [good, bad] if i % 2 else [good]}, timeout=10)
            statuses[answer.status_code] += 1
            versions.append(answer.headers.get("x-model-version"))
    assert sum(count for status, count in statuses.items() if status != 200) <= 5, statuses
    assert set(versions[-100:]) == {"1"}, Counter(versions[-100:])  # rolled back well within 500 calls
    metrics = requests.get(svc.url + "/metrics", timeout=5).text
    assert metric(metrics, 'diabetes_rollout_state{state="rolled_back"}') == 1
    assert metric(metrics, "diabetes_rollout_challenger_errors_total") >= 1
    deadline = time.monotonic() + 60
    while alias_version(uri, "challenger") is not None:
        assert time.monotonic() < deadline, svc.output()[-3000:]
        time.sleep(0.5)
    assert alias_version(uri, "champion") == "1"
    assert "rolled back" in svc.output()


def test_a_healthy_challenger_is_promoted(service, registry, example_data):
    uri, env = registry
    set_aliases(uri, champion="1", challenger="2")
    args = [
        *("--challenger", CHALLENGER, "--rollout", "canary", "--canary-percent", "50"),
        *("--promote-after", "2s", "--guard-min-calls", "20", "--follow", "--follow-interval", "30"),
    ]
    svc = service(f"models:/{MODEL}@champion", env=env, workers=2, args=args, ready_timeout=180).start()
    row = example_data.x_test[0]
    # Promotion, then the registry write and the champion's new preparation (each a child importing
    # MLflow: a minute and more on a busy shared machine).
    deadline = time.monotonic() + 300
    with requests.Session() as session:
        while True:
            answers = [session.post(svc.url + "/score", json={"data": [row]}, timeout=10) for _ in range(20)]
            assert all(answer.status_code == 200 for answer in answers)
            if {answer.headers["x-model-version"] for answer in answers} == {"2"}:
                break  # promoted, and swapped in: the champion is version 2, no canary left
            assert time.monotonic() < deadline, svc.output()[-3000:]
            time.sleep(0.3)
    assert alias_version(uri, "champion") == "2"
    metrics = requests.get(svc.url + "/metrics", timeout=5).text
    assert metric(metrics, 'diabetes_rollout_state{state="promoted"}') == 1
    assert "promoting it" in svc.output()
    set_aliases(uri, champion="1")  # as the other tests expect


def test_promote_after_counts_from_when_the_challenger_is_live_in_every_worker():
    """Its clock starts when every warm worker serves the announced challenger, not at the announcement."""
    from types import SimpleNamespace

    from diabetes_service.board import AWAY, WARM, WorkerBoard
    from diabetes_service.observability.metrics import Metrics
    from diabetes_service.settings import ServiceSettings
    from diabetes_service.supervisor.rollout import RolloutControl

    settings = ServiceSettings(
        model_uri=f"models:/{MODEL}@champion", challenger=CHALLENGER, rollout="canary", promote_after="10s"
    )
    workers = WorkerBoard(3)
    for slot in range(3):
        workers.mark(slot, WARM)
    control = RolloutControl(settings, workers, Metrics(), champion=None)
    # The follower's announcement of generation 1 (it needs a registry; the board and control are real).
    control.challenger = SimpleNamespace(generation=1, current=SimpleNamespace(version="2"))
    control.poll(0.0)
    for _ in range(settings.guard_min_calls):
        workers.count_challenger_call(0)  # calls of an earlier challenger, in a worker still holding it
    control.poll(60.0)
    assert control.started is None
    assert not control._promotion_due(60.0)  # announced a minute ago, live nowhere: no clock yet
    workers.serve_challenger(0, 1)
    workers.serve_challenger(1, 1)
    control.poll(70.0)
    assert control.started is None  # two workers of three
    workers.mark(2, AWAY)  # the third is replaced: the others take every connection
    control.poll(80.0)
    assert control.started == 80.0
    for _ in range(settings.guard_min_calls - 1):
        workers.count_challenger_call(1)
    assert not control._promotion_due(95.0)  # the calls before it went live do not count
    workers.count_challenger_call(0)
    assert not control._promotion_due(89.0)
    assert control._promotion_due(90.0)


def test_a_challenger_with_other_inputs_is_refused_at_start(registry):
    import os

    _, env = registry

    proc = subprocess.run(
        [
            *(DIABETES, "serve", "--model-uri", f"models:/{MODEL}/1", "--port", "0", "--workers", "1"),
            *("--challenger", "models:/other_model/1", "--rollout", "shadow"),
        ],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode != 0
    assert "a challenger must take the champion's inputs" in proc.stderr, proc.stderr[-2000:]
    assert "['age', 'sex', 'bmi']" in proc.stderr


def test_rollout_flags_are_checked_in_one_line():
    proc = subprocess.run(
        [DIABETES, "serve", "--challenger", CHALLENGER, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "--challenger and --rollout shadow|canary go together" in proc.stderr
    proc = subprocess.run(
        [DIABETES, "serve", "--challenger", "models:/m/2", "--rollout", "canary", "--rollback-alias"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "--rollback-alias needs a models:/NAME@ALIAS challenger" in proc.stderr
