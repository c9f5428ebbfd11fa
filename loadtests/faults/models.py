"""The models the cases serve: the worked example's Ridge, and the same one slowed down.

A slow prediction keeps requests in flight long enough for a signal to land among them. The slow
class is pickled by reference, so the service's workers need the repository on their PYTHONPATH
(`SERVICE_ENV`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from sklearn.linear_model import Ridge

REPO = Path(__file__).resolve().parents[2]
# Lets the workers unpickle SlowRidge.
SERVICE_ENV = {"PYTHONPATH": str(REPO)}


class SlowRidge(Ridge):
    """Every prediction call takes PREDICT_SECONDS more, as a heavy model's would."""

    PREDICT_SECONDS = 0.05

    def predict(self, X):
        time.sleep(self.PREDICT_SECONDS)
        return super().predict(X)


@dataclass(frozen=True)
class Models:
    fast: Path  # the worked example's Ridge: compiled by the service, ~1 µs a prediction
    slow: Path  # SlowRidge: 50 ms a call, scored in a thread
    rows: list[list[float]]  # the example's test rows


def save_models(folder: Path) -> Models:
    """Fit both models on the worked example's training split and dump them under `folder`."""
    import joblib
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    x, y = load_diabetes(return_X_y=True)
    x_train, x_test, y_train, _ = train_test_split(x, y, test_size=0.2, random_state=0)
    paths = {}
    for name, model in (("fast", Ridge(alpha=0.03)), ("slow", SlowRidge(alpha=0.03))):
        (folder / name).mkdir(parents=True, exist_ok=True)
        paths[name] = folder / name / "model.pkl"
        joblib.dump(model.fit(x_train, y_train), paths[name])
    return Models(paths["fast"], paths["slow"], x_test.tolist())
