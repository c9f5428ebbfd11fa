"""Gathering concurrent requests into one estimator call: invisible in the answers, errors kept apart."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingRegressor
from sklearn.linear_model import Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from diabetes_service.model.loading import Feature, LoadedModel
from diabetes_service.model.trust import TrustPolicy
from diabetes_service.scoring.core import INVALID, ModelIdentity, ScoringCore, ScoringError
from diabetes_service.scoring.runner import PredictionRunner, ScoringTimeout

TRUSTED = TrustPolicy(allow_pickle=True)  # the test's own pickle


class CountingModel:
    """Wraps an estimator and records the row count of every call it gets."""

    def __init__(self, estimator, pause: float = 0.0) -> None:
        self.estimator = estimator
        self.pause = pause
        self.calls: list[int] = []

    def predict(self, x):
        self.calls.append(len(x))
        time.sleep(self.pause)
        return self.estimator.predict(x)


class InfinityAboveModel(CountingModel):
    """Answers infinity for rows whose first value is over 1e300, as an overflowing model would."""

    def predict(self, x):
        answers = super().predict(x).copy()
        answers[x[:, 0] > 1e300] = np.inf
        return answers


class BatchCentredModel(CountingModel):
    """Answers depend on the other rows of the call: gathering would change them."""

    def predict(self, x):
        return super().predict(x) - super().predict(x).mean()


def core_for(model) -> ScoringCore:
    features = tuple(Feature(f"x{i}", "double") for i in range(10))
    core = ScoringCore(LoadedModel(model, features, None), ModelIdentity("m", "1"), max_rows=10_000)
    core.warm_up()
    return core


@pytest.fixture(scope="module")
def pipeline(example_data):
    return make_pipeline(StandardScaler(), Ridge(alpha=0.03)).fit(example_data.x_train, example_data.y_train)


def score_concurrently(runner: PredictionRunner, matrices: list[np.ndarray]) -> list[object]:
    async def all_at_once() -> list[object]:
        return await asyncio.gather(*(runner.predict(m, "predict") for m in matrices), return_exceptions=True)

    return asyncio.run(all_at_once())


def test_which_models_gather(pipeline, example_data, example_model_pkl):
    from diabetes_service.model.loading import load_model

    trees = GradientBoostingRegressor(n_estimators=20, random_state=0).fit(example_data.x_train, example_data.y_train)
    assert core_for(pipeline).gathers  # scikit-learn's checks cost far more than a few rows
    assert core_for(trees).gathers
    compiled = ScoringCore(load_model(example_model_pkl, TRUSTED), ModelIdentity("m", "1"), max_rows=10_000)
    compiled.warm_up()
    assert not compiled.gathers  # ~1 µs a call: nothing to save
    assert not core_for(BatchCentredModel(pipeline)).gathers  # answers would depend on the neighbours


def test_concurrent_requests_are_one_call_and_get_their_own_rows(pipeline, example_data):
    model = CountingModel(pipeline)
    core = core_for(model)
    assert core.gathers
    model.calls.clear()
    x = np.array(example_data.x_test)
    matrices = [x[i : i + 1 + i % 3] for i in range(12)]  # 1 to 3 rows each
    answers = score_concurrently(PredictionRunner(core, timeout=None), matrices)
    assert model.calls == [sum(len(m) for m in matrices)]
    for matrix, answer in zip(matrices, answers, strict=True):
        np.testing.assert_allclose(answer, pipeline.predict(matrix), rtol=1e-12)


def test_a_request_that_breaks_the_gathered_call_fails_alone(pipeline, example_data):
    core = core_for(InfinityAboveModel(pipeline))
    assert core.gathers
    x = np.array(example_data.x_test)
    overflowing = x[3:5].copy()
    overflowing[1, 0] = 1e301  # its second row's prediction is not finite
    answers = score_concurrently(PredictionRunner(core, timeout=None), [x[:2], overflowing, x[2:3]])
    assert isinstance(answers[1], ScoringError)
    assert answers[1].field == "data[1]"  # the row within its own request, not within the gathered call
    np.testing.assert_allclose(answers[0], pipeline.predict(x[:2]), rtol=1e-12)
    np.testing.assert_allclose(answers[2], pipeline.predict(x[2:3]), rtol=1e-12)


def test_values_the_estimator_refuses_are_a_422_not_a_500(pipeline):
    core = core_for(pipeline)
    with pytest.raises(ScoringError) as raised:  # the scaler overflows, and the Ridge after it refuses
        core.predict(np.full((1, 10), 1e308), "predict")
    assert (raised.value.kind, raised.value.field) == (INVALID, "data")  # a 422 on /score
    assert "1e+308" not in raised.value.message


def test_requests_arriving_during_a_call_in_a_thread_are_the_next_call(pipeline, example_data):
    model = CountingModel(pipeline)
    core = core_for(model)
    model.pause = 0.2
    core.slow_seconds_per_call = 1.0  # as if measured slow at warm-up: calls go to a thread
    model.calls.clear()
    runner = PredictionRunner(core, timeout=None)
    x = np.array(example_data.x_test)

    async def first_then_three_more() -> list[np.ndarray]:
        first = asyncio.ensure_future(runner.predict(x[:1], "predict"))
        await asyncio.sleep(0.05)  # the first call is in its thread now
        rest = [runner.predict(x[i : i + 1], "predict") for i in range(1, 4)]
        return [await first, *await asyncio.gather(*rest)]

    answers = asyncio.run(first_then_three_more())
    assert model.calls == [1, 3]
    np.testing.assert_allclose(np.concatenate(answers), pipeline.predict(x[:4]), rtol=1e-12)


def test_a_gathered_call_past_the_scoring_timeout(pipeline, example_data):
    model = CountingModel(pipeline)
    core = core_for(model)
    model.pause = 0.5
    core.slow_seconds_per_call = 1.0
    answers = score_concurrently(PredictionRunner(core, timeout=0.1), [np.array(example_data.x_test[:1])] * 2)
    assert all(isinstance(answer, ScoringTimeout) for answer in answers)
    assert "0.1 s scoring timeout" in str(answers[0])


def test_requests_that_gave_up_while_waiting_are_not_scored(pipeline, example_data):
    model = CountingModel(pipeline)
    core = core_for(model)
    model.pause = 0.4
    core.slow_seconds_per_call = 1.0
    model.calls.clear()
    runner = PredictionRunner(core, timeout=0.1)
    x = np.array(example_data.x_test)

    async def scenario() -> list[object]:
        first = asyncio.ensure_future(runner.predict(x[:1], "predict"))
        await asyncio.sleep(0.02)  # the first call is in its thread; these two wait behind it
        waiting = [asyncio.ensure_future(runner.predict(x[i : i + 1], "predict")) for i in (1, 2)]
        answers = await asyncio.gather(first, *waiting, return_exceptions=True)
        await asyncio.sleep(0.5)  # the first call is back: the next would have started by now
        return answers

    answers = asyncio.run(scenario())
    assert all(isinstance(answer, ScoringTimeout) for answer in answers)
    assert model.calls == [1]
