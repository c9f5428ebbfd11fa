"""The monitor with models `diabetes train` registered for real (the suite's embedded store): the
profile logged with the model, drift of its real features found by `models:/` URI, the report in a
real headless browser, and `diabetes monitor reference` for a model trained elsewhere."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import joblib
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loadtests.bench.monitor import hourly_times, write_log
from tests.conftest import FEATURES, EmbeddedStore, ExampleData
from tests.monitor.conftest import assert_one_line_failure, run_monitor
from tests.support.browser import chromium_page


def _profile_of(store: EmbeddedStore, trained: dict, cache: Path) -> dict:
    """The profile in the registered version's download (as `serve` downloads it)."""
    import os

    from diabetes_service.deploy_api import resolve_registered

    os.environ["DIABETES_MODEL_CACHE"] = str(cache)
    folder = resolve_registered(f"models:/{trained['model_name']}/{trained['model_version']}", store.tracking_uri).path
    return json.loads((folder / "reference_profile.json").read_text())


def test_train_logs_the_profile_inside_the_registered_model(embedded_store: EmbeddedStore, tmp_path: Path) -> None:
    regressor = _profile_of(embedded_store, embedded_store.regressor, tmp_path / "cache")
    assert regressor["rows"] == 353
    assert list(regressor["features"]) == FEATURES
    assert regressor["features"]["sex"]["kind"] == "discrete"
    assert len(regressor["features"]["sex"]["values"]) == 2
    assert regressor["features"]["bmi"]["kind"] == "numeric"
    assert len(regressor["features"]["bmi"]["quantiles"]) == 201
    assert list(regressor["outputs"]) == ["prediction"]
    classifier = _profile_of(embedded_store, embedded_store.classifier, tmp_path / "cache")
    assert set(classifier["outputs"]) == {"prediction", "proba_0", "proba_1"}
    assert classifier["outputs"]["prediction"]["kind"] == "discrete"


@pytest.fixture(scope="module")
def logged(embedded_store: EmbeddedStore, example_data: ExampleData, tmp_path_factory: pytest.TempPathFactory):
    """Payloads of the registered regressor: day one 3,000 rows drawn from its training rows, day two
    the same with `bmi` moved up by 2 standard deviations; predictions by the model itself."""
    trained = embedded_store.regressor
    model = joblib.load(embedded_store.home / "mlartifacts" / trained["run_id"] / "artifacts" / "model.pkl")
    rng = np.random.default_rng(2024)
    train = np.asarray(example_data.x_train)
    payloads = tmp_path_factory.mktemp("payloads")
    import datetime as dt

    import pandas as pd

    for day, shift in ((7, 0.0), (8, 2.0)):
        rows = train[rng.integers(0, len(train), 3_000)].copy()
        rows[:, FEATURES.index("bmi")] += shift * train[:, FEATURES.index("bmi")].std()
        frame = pd.DataFrame(rows, columns=FEATURES)
        start = dt.datetime(2026, 12, day, tzinfo=dt.UTC)
        write_log(
            payloads, trained["model_name"], str(trained["model_version"]), {n: frame[n].to_numpy() for n in FEATURES},
            {"prediction": model.predict(frame)}, hourly_times(3_000, 24, start), refusals=20,
        )  # fmt: skip
    return payloads, f"models:/{trained['model_name']}/{trained['model_version']}"


def _monitor(store: EmbeddedStore, payloads: Path, uri: str, out: Path, *extra: str):
    return run_monitor(
        "--payloads", str(payloads), "--model-uri", uri, "--out", str(out / "report.html"),
        "--json", str(out / "report.json"), "--fail-on-drift", *extra,
        env={**store.env, "DIABETES_MODEL_CACHE": str(out / "cache")},
    )  # fmt: skip


def test_the_registered_model_drifts_only_where_its_payloads_moved(embedded_store, logged, tmp_path: Path) -> None:
    payloads, uri = logged
    fresh = _monitor(embedded_store, payloads, uri, tmp_path / "fresh", "--until", "2026-12-08")
    assert fresh.returncode == 0, fresh.stderr
    figures = json.loads((tmp_path / "fresh" / "report.json").read_text())
    assert figures["rows"] == 3_000
    assert figures["refused"] == 20
    assert figures["reference_rows"] == 353
    assert [name for name, f in figures["features"].items() if f["drift"]] == []
    assert figures["prediction"]["drift"] is False
    shifted = _monitor(embedded_store, payloads, uri, tmp_path / "shifted", "--since", "2026-12-08")
    assert shifted.returncode == 3, shifted.stderr
    assert "drift in bmi, prediction" in shifted.stdout
    figures = json.loads((tmp_path / "shifted" / "report.json").read_text())
    assert figures["drifting"] == ["bmi"]
    assert figures["features"]["bmi"]["psi"] > 1.0
    assert figures["prediction"]["drift"] is True


def test_the_report_renders_its_plots_in_a_headless_browser_offline(embedded_store, logged, tmp_path: Path) -> None:
    payloads, uri = logged
    done = _monitor(embedded_store, payloads, uri, tmp_path, "--since", "2026-12-08")
    assert done.returncode == 3, done.stderr
    page_file = tmp_path / "report.html"
    fetched: list[str] = []
    with chromium_page() as page:
        page.on("request", lambda request: fetched.append(request.url))
        page.goto(page_file.as_uri())
        page.wait_for_load_state("load")
        sections = page.locator("section.plot")
        assert sections.count() == 11  # ten features and the prediction
        assert sections.first.get_attribute("id") == "plot-bmi"  # the drifting feature first
        for i in range(sections.count()):
            svg = sections.nth(i).locator("svg")
            box = svg.bounding_box()
            assert box is not None
            assert box["width"] > 200
            assert box["height"] > 80
            # Drawn, not an empty frame: the two series' shapes are in the rendered SVG.
            assert svg.locator("path").count() >= 4
        assert "bmi (drift)" in (page.locator("#plot-bmi svg").text_content() or "")
        assert page.locator("h1").inner_text().endswith("drift")
    assert fetched == [page_file.as_uri()]  # one self-contained file: nothing else was asked for


def test_reference_profiles_a_model_trained_elsewhere(
    embedded_store: EmbeddedStore, example_model_pkl: Path, example_data: ExampleData, tmp_path: Path
) -> None:
    model = tmp_path / "elsewhere" / "model.pkl"
    model.parent.mkdir()
    shutil.copy(example_model_pkl, model)
    data = tmp_path / "train.parquet"
    columns = np.asarray(example_data.x_train).T
    pq.write_table(pa.table({name: columns[j] for j, name in enumerate(FEATURES)}), data)
    done = run_monitor("reference", "--model-uri", str(model), "--data", str(data), "--allow-pickle")
    assert done.returncode == 0, done.stderr
    made = json.loads((model.parent / "reference_profile.json").read_text())
    trained = _profile_of(embedded_store, embedded_store.regressor, tmp_path / "cache")
    # The same rows, and the same Ridge(alpha=0.03) as `diabetes train`'s: the same profile.
    assert made["rows"] == trained["rows"] == 353
    for name in FEATURES:
        assert made["features"][name] == trained["features"][name]
    np.testing.assert_allclose(
        made["outputs"]["prediction"]["quantiles"], trained["outputs"]["prediction"]["quantiles"], rtol=1e-9
    )


def test_reference_refuses_bad_input_in_one_line(example_model_pkl: Path, tmp_path: Path) -> None:
    missing = run_monitor("reference", "--model-uri", str(example_model_pkl), "--data", str(tmp_path / "none.csv"))
    assert_one_line_failure(missing, "--data", "no such file")
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("x,y\n1,2\n")
    done = run_monitor("reference", "--model-uri", str(example_model_pkl), "--data", str(wrong), "--allow-pickle")
    assert_one_line_failure(done)
    assert not (example_model_pkl.parent / "reference_profile.json").exists()
