"""The scoring core in-process: fast paths are taken for scikit-learn's linear models and agree exactly."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import ElasticNet, LinearRegression, LogisticRegression, Ridge

from diabetes_service.model.loading import Feature, LoadedModel, load_model
from diabetes_service.model.trust import TrustPolicy
from diabetes_service.scoring.core import ModelIdentity, ScoringCore
from tests.service.slow_models import SlowToPredictRidge

TRUSTED = TrustPolicy(allow_pickle=True)  # the test's own pickle


def core_for(estimator, width: int = 10) -> ScoringCore:
    features = tuple(Feature(f"x{i}", "double") for i in range(width))
    core = ScoringCore(LoadedModel(estimator, features, None), ModelIdentity("m", "1"), max_rows=10_000)
    core.warm_up()
    return core


def uses_fast_path(core: ScoringCore, method: str) -> bool:
    return getattr(core._predictors[method], "__self__", None) is not core.estimator


def test_the_example_ridge_takes_the_fast_path_and_agrees(example_model_pkl, example_data):
    loaded = load_model(example_model_pkl, TRUSTED)
    core = ScoringCore(loaded, ModelIdentity("m", "1"), max_rows=10_000)
    core.warm_up()
    assert uses_fast_path(core, "predict")
    matrix = np.array(example_data.x_test)
    np.testing.assert_array_equal(core.predict(matrix, "predict"), loaded.estimator.predict(matrix))


@pytest.mark.parametrize("make", [LinearRegression, ElasticNet, lambda: Ridge(alpha=2.0)])
def test_linear_regressors_agree_with_their_estimator(make, example_data):
    estimator = make().fit(example_data.x_train, example_data.y_train)
    core = core_for(estimator)
    assert uses_fast_path(core, "predict")
    matrix = np.array(example_data.x_test)
    np.testing.assert_allclose(core.predict(matrix, "predict"), estimator.predict(matrix), rtol=1e-12)


@pytest.mark.parametrize("classes", [2, 3])
def test_logistic_regression_probabilities_and_labels_agree(classes, example_data):
    y = np.digitize(example_data.y_train, np.quantile(example_data.y_train, np.linspace(0, 1, classes + 1)[1:-1]))
    estimator = LogisticRegression(max_iter=1000).fit(example_data.x_train, y)
    core = core_for(estimator)
    assert uses_fast_path(core, "predict_proba")
    assert uses_fast_path(core, "predict")
    matrix = np.array(example_data.x_test)
    np.testing.assert_allclose(core.predict(matrix, "predict_proba"), estimator.predict_proba(matrix), rtol=1e-12)
    np.testing.assert_array_equal(core.predict(matrix, "predict"), estimator.predict(matrix))


def test_a_user_subclass_keeps_its_own_predict(example_data):
    estimator = SlowToPredictRidge(alpha=0.03).fit(example_data.x_train, example_data.y_train)
    SlowToPredictRidge.PREDICT_SECONDS = 0.0
    try:
        core = core_for(estimator)
    finally:
        SlowToPredictRidge.PREDICT_SECONDS = 1.0
    assert not uses_fast_path(core, "predict")


def test_huge_but_finite_predictions_are_answered_and_overflow_names_its_row(example_model_pkl):
    from diabetes_service.scoring.core import ScoringError

    core = ScoringCore(load_model(example_model_pkl, TRUSTED), ModelIdentity("m", "1"), max_rows=10_000)
    core.warm_up()
    huge = np.full((2, 10), 1e200)  # predictions near 1e202: finite, though their squares are not
    assert np.isfinite(core.predict(huge, "predict")).all()
    overflowing = np.vstack([huge, np.full((1, 10), 1e308)])
    with pytest.raises(ScoringError) as raised:
        core.predict(overflowing, "predict")
    assert raised.value.field == "data[2]"
