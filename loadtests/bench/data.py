"""The request bodies: rows of the worked example's test set, in each server's own wire format."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]


def example_test_rows() -> list[list[float]]:
    """The 89 test rows of scikit-learn's diabetes data, split 80/20 with random_state=0."""
    from sklearn.datasets import load_diabetes
    from sklearn.model_selection import train_test_split

    x, y = load_diabetes(return_X_y=True)
    _, x_test, _, _ = train_test_split(x, y, test_size=0.2, random_state=0)
    return x_test.tolist()


def save_pipeline(path: Path) -> Path:
    """The worked example's data fitted by StandardScaler + Ridge, dumped with joblib: a model the
    service cannot compile, so that scikit-learn's per-call checks are paid on every call."""
    import joblib
    from sklearn.datasets import load_diabetes
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = load_diabetes(return_X_y=True)
    x_train, _, y_train, _ = train_test_split(x, y, test_size=0.2, random_state=0)
    joblib.dump(make_pipeline(StandardScaler(), Ridge(alpha=0.03)).fit(x_train, y_train), path)
    return path


def take_rows(rows: list[list[float]], count: int) -> list[list[float]]:
    """The first `count` rows, cycling through the test set when it has fewer (100 > 89)."""
    return list(itertools.islice(itertools.cycle(rows), count))


def azureml_body(rows: list[list[float]]) -> bytes:
    """Our service's `/score` body (and the constant app's: it ignores it)."""
    return json.dumps({"data": rows, "method": "predict"}).encode()


def mlflow_body(rows: list[list[float]]) -> bytes:
    """`mlflow models serve`'s `/invocations` body for the same rows."""
    return json.dumps({"dataframe_split": {"columns": FEATURES, "data": rows}}).encode()
