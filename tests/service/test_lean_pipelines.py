"""Lean typed pipelines (issue 26 item 4): the preparation child compiles a typed pipeline (one-hot
indexes, scaler arrays, the linear model's coefficients, the encoders' categories) into the
prepared-model cache, and what the workers load from there answers as scikit-learn does, refuses
bad input in the same words as before, and needs neither pandas nor scikit-learn.

Real parts: each model is saved as an MLflow model folder and prepared by the real preparation
child (`prepare_into`, as an image bakes it); the live tests run `diabetes serve` on a model that
`diabetes train --task pipeline` registered. What the core loaded from the cache is compared with
scikit-learn's own answers on hundreds of rows (known, unseen categories, integers, booleans) and
with the core that loads the scikit-learn pipeline itself (today's path before this change) on
every kind of bad input.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytest
import requests

from diabetes_service.model import prepared
from diabetes_service.model.compile.encoded import EncodedLinear
from diabetes_service.model.loading import load_compiled, load_model
from diabetes_service.model.preparation import prepare_into
from diabetes_service.model.trust import TrustPolicy
from diabetes_service.scoring.core import ModelIdentity, ScoringCore, ScoringError
from tests.service.test_cold_start import mapped_packages

POLICY = TrustPolicy(allow_pickle=True)
CITIES = ["oslo", "lima", "pune", "kyiv"]
UNSEEN = ["nowhere", "", "OSLO", "oslo "]


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "city": rng.choice(CITIES, n).astype(object),
            "visits": rng.integers(0, 40, n).astype("int64"),
            "floor": rng.integers(-3, 12, n).astype("int32"),
            "member": rng.random(n) < 0.4,
            "spend": rng.normal(50, 20, n),
            "plan": rng.choice(["basic", "plus"], n).astype(object),
            "code": rng.choice(["x", "y", "z"], n).astype(object),
        }
    )


def _target(frame: pd.DataFrame) -> np.ndarray:
    return (
        frame["visits"] * 2.0
        + frame["spend"]
        - frame["floor"] * 0.7
        + (frame["city"] == "lima") * 30
        + (frame["plan"] == "plus") * 12
        + frame["member"] * 5
    ).to_numpy()


def _columns(**options):
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    return ColumnTransformer(
        [
            ("strings", OneHotEncoder(handle_unknown=options.get("handle_unknown", "ignore")), ["city", "plan"]),
            ("numbers", StandardScaler(**options.get("scaler", {})), ["visits", "spend"]),
            ("code", "drop", ["code"]),
        ],
        remainder="passthrough",  # floor (an int32) and member (a boolean), as they are
    )


def _save(folder: Path, model, frame: pd.DataFrame) -> Path:
    import mlflow.sklearn
    from mlflow.models import infer_signature

    signature = infer_signature(frame, model.predict(frame))
    mlflow.sklearn.save_model(
        model, folder, signature=signature, input_example=frame.head(3), serialization_format="cloudpickle"
    )
    return folder


def _covered_models():
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline

    frame = _frame(300, 1)
    target = _target(frame)
    labels = np.where(target > np.median(target), "high", "low")
    three = np.digitize(target, np.quantile(target, [0.33, 0.66]))  # 0, 1, 2: integer labels
    return {
        "ridge": Pipeline([("columns", _columns()), ("model", Ridge(alpha=0.5))]).fit(frame, target),
        "linear-unscaled": Pipeline(
            [("columns", _columns(scaler={"with_mean": False})), ("model", LinearRegression())]
        ).fit(frame, target),
        "logistic-strict": Pipeline(
            [("columns", _columns(handle_unknown="error")), ("model", LogisticRegression(max_iter=1000))]
        ).fit(frame, labels),
        "logistic-3": Pipeline(
            [("columns", _columns(scaler={"with_std": False})), ("model", LogisticRegression(max_iter=2000))]
        ).fit(frame, three),
    }, frame


@pytest.fixture(scope="module")
def covered(tmp_path_factory):
    """Each covered model: saved, prepared by the real child into a cache, and its cache entry."""
    root = tmp_path_factory.mktemp("lean")
    models, frame = _covered_models()
    found = {}
    for name, model in models.items():
        folder = _save(root / name, model, frame)
        resolved = prepare_into(folder, root / "cache", POLICY)
        assert resolved.compiled is not None, (name, resolved.uncompiled)
        assert resolved.uncompiled is None
        found[name] = (model, folder, Path(resolved.compiled))
    return found


def _core(loaded) -> ScoringCore:
    core = ScoringCore(loaded, ModelIdentity("m", "1"), max_rows=1000)
    core.warm_up()
    return core


def _records(frame: pd.DataFrame) -> list[dict]:
    return [
        {
            "city": r.city,
            "visits": int(r.visits),
            "floor": int(r.floor),
            "member": bool(r.member),
            "spend": float(r.spend),
            "plan": r.plan,
            "code": r.code,
        }
        for r in frame.itertuples()
    ]


def _same(ours: np.ndarray, theirs: np.ndarray) -> None:
    if theirs.dtype.kind == "f":
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-12)
    else:
        assert ours.tolist() == theirs.tolist()


@pytest.mark.parametrize("name", ["ridge", "linear-unscaled", "logistic-strict", "logistic-3"])
def test_the_cached_form_answers_as_scikit_learn_on_many_rows(covered, name):
    model, _, entry = covered[name]
    assert prepared.is_sound(entry, prepared.key_of(covered[name][1]))
    core = _core(load_compiled(entry))
    assert isinstance(core.estimator, EncodedLinear)
    assert not core.frame_input  # scored on the checked table itself: no DataFrame is built
    test = _frame(400, 7)
    if name != "logistic-strict":  # unseen categories, and the column of strings the encoder ignores
        test.loc[test.index[:40], "city"] = np.resize(UNSEEN, 40)
        test.loc[test.index[20:60], "plan"] = "gold"
    test.loc[test.index[60:70], "visits"] = [0, -5, 10**6, 2**40, 1, 2, 3, 4, 5, 6]
    rows = _records(test)
    for method in core.methods:
        _same(core.predict(core.matrix(rows), method), np.asarray(getattr(model, method)(test)))
        for i in (0, 25, 65, 399):  # one row at a time, as most requests come
            _same(core.predict(core.matrix([rows[i]]), method), np.asarray(getattr(model, method)(test.iloc[[i]])))


@pytest.mark.parametrize("name", ["ridge", "logistic-strict"])
def test_the_cached_form_describes_and_refuses_as_the_scikit_learn_pipeline_did(covered, name):
    """What the API description and the 4xx say comes out the same as from the core that loads the
    scikit-learn pipeline itself (the path every start took before)."""
    _, folder, entry = covered[name]
    lean = _core(load_compiled(entry))
    full = _core(load_model(folder, POLICY))
    for attribute in ("model_class", "methods", "default_method", "classes", "categories", "feature_names", "typed"):
        assert getattr(lean, attribute) == getattr(full, attribute), attribute
    assert lean.categories == {"city": sorted(CITIES), "plan": ["basic", "plus"]}
    good = _records(_frame(1, 3))[0]
    bad_bodies = [
        [{**good, "city": 3}],
        [{**good, "city": None}],
        [{**good, "visits": 1.5}],
        [{**good, "visits": "3"}],
        [{**good, "visits": None}],
        [{**good, "floor": 2**31}],
        [{**good, "member": "yes"}],
        [{**good, "member": 1}],
        [{**good, "spend": float("nan")}],
        [{**good, "spend": None}],
        [{k: v for k, v in good.items() if k != "plan"}],
        [{**good, "extra": 1}],
        [list(good.values())[:-1]],
        [good, "not a row"],
        [],
        [good] * 1001,
        [{**good, "city": "nowhere"}],  # the encoder's business: refused only by handle_unknown="error"
    ]
    refused = 0
    for rows in bad_bodies:
        outcomes = []
        for core in (lean, full):
            try:
                outcomes.append(("scored", core.predict(core.matrix(rows), core.default_method).tolist()))
            except ScoringError as exc:
                outcomes.append(("refused", exc.message, exc.field, exc.kind))
        assert outcomes[0] == outcomes[1], rows[:1]
        refused += outcomes[0][0] == "refused"
    assert refused == len(bad_bodies) - (name == "ridge")


def _prepared_reason(tmp_path: Path, model, frame: pd.DataFrame) -> str | None:
    folder = _save(tmp_path / "model", model, frame)
    resolved = prepare_into(folder, tmp_path / "cache", POLICY)
    assert resolved.compiled is None
    assert not (tmp_path / "cache" / "prepared").is_dir() or not any((tmp_path / "cache" / "prepared").iterdir())
    return resolved.uncompiled


@pytest.mark.parametrize(
    ("variant", "words"),
    [
        ("min-max", "transformer 'numbers' is MinMaxScaler"),
        ("drop-first", "OneHotEncoder 'strings' drops a category"),
        ("tree", "DecisionTreeRegressor, is not a linear model"),
        ("optional", "column 'spend' is optional"),
    ],
)
def test_what_the_compiler_does_not_cover_is_prepared_as_before_and_says_why(tmp_path, variant, words):
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MinMaxScaler, OneHotEncoder
    from sklearn.tree import DecisionTreeRegressor

    frame = _frame(120, 2)
    target = _target(frame)
    columns = _columns()
    final = DecisionTreeRegressor(max_depth=3) if variant == "tree" else Ridge()
    if variant == "min-max":
        columns = ColumnTransformer([("numbers", MinMaxScaler(), ["visits", "spend"])], remainder="drop")
    if variant == "drop-first":
        columns = ColumnTransformer([("strings", OneHotEncoder(drop="first"), ["city"])], remainder="drop")
    if variant == "optional":  # a column MLflow's signature marks optional: it held a missing value
        frame.loc[frame.index[5], "spend"] = np.nan
        target = np.nan_to_num(target)
        from sklearn.impute import SimpleImputer

        columns = ColumnTransformer([("numbers", SimpleImputer(), ["spend"])], remainder="drop")
    model = Pipeline([("columns", columns), ("model", final)]).fit(frame, target)
    reason = _prepared_reason(tmp_path, model, frame)
    assert reason is not None
    assert words in reason, reason


# -- the real service ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pipeline_store(tmp_path_factory):
    from tests.conftest import run_train

    home = tmp_path_factory.mktemp("pipeline-store")
    trained = run_train(home, "--task", "pipeline")
    env = {"DIABETES_HOME": str(home), "DIABETES_TRACKING_URI": f"sqlite:///{home / 'mlruns.db'}"}
    return f"models:/{trained['model_name']}/{trained['model_version']}", env


def _typed_rows() -> tuple[list[dict], pd.DataFrame]:
    from sklearn.datasets import load_diabetes

    from diabetes_trainer.tasks import pipeline_inputs

    x, _ = load_diabetes(return_X_y=True, as_frame=True)
    typed = pipeline_inputs(x.iloc[:60])
    rows = [
        {k: (int(v) if k == "age" else v if k == "sex" else float(v)) for k, v in row.items()}
        for row in typed.to_dict(orient="records")
    ]
    rows[0]["sex"] = "not a sex it was fitted on"  # handle_unknown="ignore": scored, as scikit-learn does
    typed.loc[typed.index[0], "sex"] = rows[0]["sex"]
    return rows, typed


def _heavy_in(svc) -> list[set[str]]:
    processes = [psutil.Process(svc.proc.pid), *psutil.Process(svc.proc.pid).children(recursive=True)]
    return [mapped_packages(p.pid) for p in processes]


def test_a_typed_pipeline_is_served_by_lean_workers_and_restarts_from_the_cache(service, pipeline_store, tmp_path):
    uri, env = pipeline_store
    env = {**env, "DIABETES_MODEL_CACHE": str(tmp_path / "cache")}
    rows, typed = _typed_rows()
    answers = []
    for start in ("first", "restart"):
        with service(uri, env=env, workers=2, ready_timeout=120) as svc:
            got = requests.post(svc.url + "/score", json={"data": rows, "method": "predict"}, timeout=30)
            assert got.status_code == 200, got.text
            answers.append(got.json())
            # Neither the supervisor nor a worker has pandas, scikit-learn or SciPy mapped.
            assert _heavy_in(svc) == [set(), set(), set()], start
            document = requests.get(svc.url + "/swagger.json", timeout=10).json()
            assert document["components"]["schemas"]["Row"]["properties"]["sex"]["enum"] == ["female", "male"]
            bad = requests.post(svc.url + "/score", json={"data": [{**rows[1], "age": 40.5}]}, timeout=10)
            assert bad.status_code == 422
            assert bad.json()["field"] == "data[0].age"
            assert "must be an integer" in bad.json()["message"]
        output = svc.output()
        assert ("from the prepared-model cache" in output) == (start == "restart"), output[-2000:]
        assert "served by scikit-learn itself" not in output
    assert answers[0] == answers[1]
    model = load_model(next(Path(env["DIABETES_MODEL_CACHE"]).rglob("MLmodel")).parent).estimator
    want = model.predict(typed)
    assert all(math.isclose(a, b, rel_tol=1e-12) for a, b in zip(answers[0], want, strict=True))


def test_a_typed_model_the_compiler_does_not_cover_says_why_once(service, tmp_path):
    from tests.support.mixed import save_mixed_model

    save_mixed_model(tmp_path / "mixed")  # an optional column behind an imputer: not compiled
    env = {"DIABETES_MODEL_CACHE": str(tmp_path / "cache")}
    with service(str(tmp_path / "mixed"), env=env, workers=2, ready_timeout=120) as svc:
        assert all("sklearn" in found for found in _heavy_in(svc)[1:])  # its workers: today's path
    lines = [line for line in svc.output().splitlines() if "served by scikit-learn itself" in line]
    assert len(lines) == 1, svc.output()[-2000:]
    assert "column 'note' is optional" in lines[0]


def test_an_entry_holds_the_encoding_and_nothing_executable(covered):
    _, _, entry = covered["logistic-strict"]
    names = {path.name for path in entry.iterdir()}
    assert names == {"entry.json", "linear.npz", "linear.json", "encoded.npz", "encoded.json"}
    encoding = json.loads((entry / "encoded.json").read_text())
    assert [hot["categories"] for hot in encoding["one_hots"]] == [sorted(CITIES), ["basic", "plus"]]
    assert all(hot["ignore_unknown"] is False for hot in encoding["one_hots"])
    with np.load(entry / "encoded.npz", allow_pickle=False) as arrays:
        assert sorted(arrays.files) == ["mean_0", "scale_0"]  # the scaler's; passthrough's are 0 and 1


def test_a_pipeline_of_doubles_selected_by_name_is_served_by_scikit_learn_as_before(tmp_path):
    """No typed column: the core hands the model a float matrix, not the table the compiled form reads."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    frame = _frame(80, 4)[["spend"]].assign(share=lambda f: f["spend"] / 100.0)
    columns = ColumnTransformer([("numbers", StandardScaler(), ["spend", "share"])])
    model = Pipeline([("columns", columns), ("model", Ridge())]).fit(frame, _target(_frame(80, 4)))
    folder = _save(tmp_path / "model", model, frame)
    resolved = prepare_into(folder, tmp_path / "cache", POLICY)
    assert (resolved.compiled, resolved.uncompiled) == (None, None)
    core = _core(load_model(folder, POLICY))
    rows = [[float(a), float(b)] for a, b in frame.head(10).itertuples(index=False)]
    np.testing.assert_allclose(core.predict(core.matrix(rows), "predict"), model.predict(frame.head(10)), rtol=1e-12)
