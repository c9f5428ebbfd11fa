"""`diabetes monitor` on payload logs written here with pyarrow (the sink's record schema), against a
profile made from a synthetic training set: drift flags, exit codes, time windows, redaction,
refusals and bad input. The model's folder holds only the profile: the report never loads a model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from diabetes_monitor.profile import PROFILE_FILE, build_profile, save
from loadtests.bench.monitor import hourly_times, write_log
from tests.monitor.conftest import assert_one_line_failure, model_folder, run_monitor

FEATURES = ["a", "b", "c"]
DAY_ONE = "2026-12-07"
DAY_TWO = "2026-12-08"


def _rows(rng: np.random.Generator, n: int, shift: float = 0.0) -> dict[str, np.ndarray]:
    return {
        "a": rng.normal(10.0 + shift * 2.0, 2.0, n),  # shift in standard deviations (sd 2)
        "b": rng.normal(0.0, 1.0, n),
        "c": rng.choice([1.0, 2.0, 3.0], n, p=[0.5, 0.3, 0.2]),  # few values: profiled as categories
    }


@pytest.fixture
def log(tmp_path: Path) -> tuple[Path, Path]:
    """A model folder with the profile of 2,000 training rows; a payload log: day one a fresh sample of
    the training distribution (3,000 rows, 20 refusals), day two `a` shifted by 2 standard deviations."""
    rng = np.random.default_rng(24)
    train = _rows(rng, 2_000)
    model = model_folder(tmp_path)
    save(build_profile(train, {"prediction": train["a"] + train["b"]}), model / PROFILE_FILE)
    payloads = tmp_path / "payloads"
    import datetime as dt

    for day, shift in ((DAY_ONE, 0.0), (DAY_TWO, 2.0)):
        rows = _rows(rng, 3_000, shift)
        start = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC)
        write_log(
            payloads, "model", "none", rows, {"prediction": rows["a"] + rows["b"]},
            hourly_times(3_000, 24, start), refusals=20,
        )  # fmt: skip
    return model, payloads


def _report(model: Path, payloads: Path, tmp_path: Path, *extra: str) -> tuple[int, dict, str]:
    out, figures = tmp_path / "report.html", tmp_path / "report.json"
    done = run_monitor(
        "--payloads", str(payloads), "--model-uri", str(model), "--out", str(out), "--json", str(figures), *extra
    )
    assert done.returncode in (0, 3), done.stderr
    return done.returncode, json.loads(figures.read_text()), out.read_text()


def test_a_fresh_sample_of_the_training_distribution_drifts_nowhere(log, tmp_path: Path) -> None:
    model, payloads = log
    code, figures, page = _report(model, payloads, tmp_path, "--until", DAY_TWO, "--fail-on-drift")
    assert code == 0
    assert figures["rows"] == 3_000
    assert figures["refused"] == 20
    assert figures["refusal_rate"] == pytest.approx(20 / 3_020)
    assert figures["drift"] is False
    assert {name: f["drift"] for name, f in figures["features"].items()} == dict.fromkeys(FEATURES, False)
    assert figures["prediction"]["drift"] is False
    for name in FEATURES:
        assert figures["features"][name]["psi"] < 0.1
        assert figures["features"][name]["p_value"] > 0.01
    assert figures["features"]["a"]["test"] == "ks"
    assert figures["features"]["c"]["test"] == "chi2"
    assert "no drift" in page


def test_a_shift_of_two_standard_deviations_is_flagged_and_fails_the_job(log, tmp_path: Path) -> None:
    model, payloads = log
    code, figures, _ = _report(model, payloads, tmp_path, "--since", DAY_TWO, "--fail-on-drift")
    assert code == 3
    assert figures["rows"] == 3_000
    assert figures["drifting"] == ["a"]
    a = figures["features"]["a"]
    assert a["drift"] is True
    assert a["psi"] > 1.0
    assert a["p_value"] < 1e-10
    assert a["mean"] == pytest.approx(14.0, abs=0.2)
    assert not figures["features"]["b"]["drift"]
    assert not figures["features"]["c"]["drift"]
    assert figures["prediction"]["drift"] is True  # the prediction moves with `a`
    # Without --fail-on-drift, the same drift is reported with status 0.
    code, again, _ = _report(model, payloads, tmp_path, "--since", DAY_TWO)
    assert code == 0
    assert again["drift"] is True


def test_since_and_until_pick_the_records_of_the_window(log, tmp_path: Path) -> None:
    model, payloads = log
    _, whole, _ = _report(model, payloads, tmp_path)
    assert whole["rows"] == 6_000
    assert whole["refused"] == 40
    # Six hours of day two: 3,000 rows over 24 h, 125 an hour; the refusals were logged in its first minutes.
    _, part, _ = _report(model, payloads, tmp_path, "--since", f"{DAY_TWO}T06:00:00Z", "--until", f"{DAY_TWO}T12:00")
    assert part["rows"] == 750
    assert part["refused"] == 0
    assert part["first_record"].startswith(f"{DAY_TWO}T06:00")
    assert part["last_record"] < f"{DAY_TWO}T12:00"
    assert part["since"] == f"{DAY_TWO}T06:00:00+00:00"


def test_redacted_columns_are_said_redacted_never_drifting(tmp_path: Path) -> None:
    import hashlib

    import pyarrow as pa

    rng = np.random.default_rng(5)
    train = _rows(rng, 2_000)
    model = model_folder(tmp_path)
    save(build_profile(train, {"prediction": train["a"]}), model / PROFILE_FILE)
    rows = _rows(rng, 1_000, shift=3.0)
    hashed = [hashlib.sha256(str(v).encode()).hexdigest()[:16] for v in rows["b"]]
    current = {"a": rows["a"], "b": hashed}  # `c` dropped, `b` hashed to hex strings
    payloads = tmp_path / "payloads"
    write_log(
        payloads, "model", "none", current, {"prediction": rows["a"]}, hourly_times(1_000, 2),
        feature_types={"b": pa.string()},
    )  # fmt: skip
    _, figures, page = _report(model, payloads, tmp_path)
    assert figures["features"]["b"] == {
        "kind": "numeric",
        "redacted": True,
        "drift": False,
        "psi": None,
        "p_value": None,
    }
    assert figures["features"]["c"]["redacted"] is True
    assert figures["drifting"] == ["a"]
    assert page.count(">redacted<") == 2


@pytest.mark.parametrize(
    ("case", "fragment"),
    [
        ("missing folder", "no such folder"),
        ("other model", "no payload records of model 'other' version none in"),
        ("empty window", "no payload records of model 'model' version none in"),
        ("bad time", "--since 'yesterday' is not an ISO 8601 time"),
        ("reversed window", "is not before --until"),
        ("no profile", "no reference profile at"),
        ("no out", "--out is required"),
    ],
)
def test_bad_input_is_one_line_and_a_non_zero_exit(log, tmp_path: Path, case: str, fragment: str) -> None:
    model, payloads = log
    args = {"--payloads": str(payloads), "--model-uri": str(model), "--out": str(tmp_path / "r.html")}
    extra: list[str] = []
    if case == "missing folder":
        args["--payloads"] = str(tmp_path / "nowhere")
    elif case == "other model":
        other = tmp_path / "other"  # a model named `other`, whose records are not in the log
        other.mkdir()
        (other / PROFILE_FILE).write_text((model / PROFILE_FILE).read_text())
        args["--model-uri"] = str(other)
    elif case == "empty window":
        extra = ["--since", "2027-01-01"]
    elif case == "bad time":
        extra = ["--since", "yesterday"]
    elif case == "reversed window":
        extra = ["--since", DAY_TWO, "--until", DAY_ONE]
    elif case == "no profile":
        (model / PROFILE_FILE).unlink()
    elif case == "no out":
        del args["--out"]
    done = run_monitor(*(x for pair in args.items() for x in pair), *extra)
    assert_one_line_failure(done, fragment)
    assert not (tmp_path / "r.html").exists()  # a failed run leaves no half-written report


def test_an_unknown_registered_model_is_a_clear_error(tmp_path: Path) -> None:
    payloads = tmp_path / "payloads"
    payloads.mkdir()
    done = run_monitor(
        "--payloads", str(payloads), "--model-uri", "models:/no_such_model/1", "--out", str(tmp_path / "r.html"),
        env={"DIABETES_HOME": str(tmp_path), "DIABETES_MODEL_CACHE": str(tmp_path / "cache")},
    )  # fmt: skip
    assert_one_line_failure(done, "models:/no_such_model/1")
