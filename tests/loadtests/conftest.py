"""Fixtures of the load tests: the real service on loopback with keys on, regressor and classifier."""

from __future__ import annotations

import pytest

from tests.support.service import ServiceProcess

PRIMARY = "loadtest-primary-key"
SECONDARY = "loadtest-secondary-key"
KEYS_ENV = {"DIABETES_API_KEYS": f"{PRIMARY},{SECONDARY}"}


@pytest.fixture(scope="session")
def regressor_service(example_model_pkl, tmp_path_factory):
    """`diabetes serve` of the example's Ridge `model.pkl` (no predict_proba), keys on."""
    log = tmp_path_factory.mktemp("loadtest-regressor") / "service.log"
    with ServiceProcess(str(example_model_pkl), env=KEYS_ENV, log=log, workers=1) as svc:
        yield svc


@pytest.fixture(scope="session")
def classifier_service(embedded_store, tmp_path_factory):
    """`diabetes serve` of the registered classifier from the embedded MLflow store, keys on."""
    info = embedded_store.classifier
    uri = f"models:/{info['model_name']}/{info['model_version']}"
    log = tmp_path_factory.mktemp("loadtest-classifier") / "service.log"
    with ServiceProcess(uri, env={**embedded_store.env, **KEYS_ENV}, log=log) as svc:
        yield svc
