"""Fixtures of the service tests: models saved for the real process to load."""

from __future__ import annotations

from pathlib import Path

import joblib
import pytest

from tests.conftest import FEATURES, ExampleData
from tests.support.processes import REPO


def _save(model, folder: Path) -> Path:
    path = folder / "model.pkl"
    joblib.dump(model, path)
    return path


@pytest.fixture(scope="session")
def slow_models(tmp_path_factory: pytest.TempPathFactory, example_data: ExampleData) -> dict[str, Path]:
    import pandas as pd

    from tests.service.slow_models import BrieflySlowToLoadRidge, SlowishRidge, SlowToLoadRidge, SlowToPredictRidge

    frame = pd.DataFrame(example_data.x_train, columns=FEATURES)
    return {
        "load": _save(SlowToLoadRidge(alpha=0.03).fit(frame, example_data.y_train), tmp_path_factory.mktemp("l")),
        "brief-load": _save(
            BrieflySlowToLoadRidge(alpha=0.03).fit(frame, example_data.y_train), tmp_path_factory.mktemp("b")
        ),
        "predict": _save(SlowToPredictRidge(alpha=0.03).fit(frame, example_data.y_train), tmp_path_factory.mktemp("p")),
        "slowish": _save(SlowishRidge(alpha=0.03).fit(frame, example_data.y_train), tmp_path_factory.mktemp("s")),
    }


@pytest.fixture(scope="session")
def repo_on_path() -> dict[str, str]:
    """Environment that lets the service's workers unpickle the test-only estimator classes."""
    return {"PYTHONPATH": str(REPO)}
