"""Fixtures of the client tests: the real service on loopback, with keys, and the in-process model."""

from __future__ import annotations

import joblib
import pytest

from tests.conftest import FEATURES
from tests.support.service import ServiceProcess

PRIMARY = "client-tests-primary-key"
SECONDARY = "client-tests-secondary-key"


@pytest.fixture(scope="session")
def keyed_service(example_model_pkl, tmp_path_factory):
    """`diabetes serve` of the example's bare `model.pkl`, with a primary and a secondary key."""
    env = {"DIABETES_API_KEYS": f"{PRIMARY},{SECONDARY}"}
    log = tmp_path_factory.mktemp("client-service") / "service.log"
    with ServiceProcess(str(example_model_pkl), env=env, log=log) as svc:
        yield svc


@pytest.fixture(scope="session")
def in_process_model(example_model_pkl):
    return joblib.load(example_model_pkl)


@pytest.fixture(scope="session")
def in_process_predictions(in_process_model, example_data):
    import pandas as pd

    return in_process_model.predict(pd.DataFrame(example_data.x_test, columns=FEATURES)).tolist()
