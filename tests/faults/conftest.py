"""Fixtures of the fault tests: the models every case serves, saved once."""

from __future__ import annotations

import pytest

from loadtests.faults.models import Models, save_models


@pytest.fixture(scope="session")
def fault_models(tmp_path_factory: pytest.TempPathFactory) -> Models:
    return save_models(tmp_path_factory.mktemp("fault-models"))
