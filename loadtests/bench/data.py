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


def v2_body(rows: list[list[float]]) -> bytes:
    """An Open Inference Protocol (V2) REST body: one FP64 [N, 10] tensor as JSON (ours and MLServer's)."""
    flat = [value for row in rows for value in row]
    tensor = {"name": "input-0", "shape": [len(rows), len(FEATURES)], "datatype": "FP64", "data": flat}
    return json.dumps({"inputs": [tensor]}).encode()


# The JSON part of a binary body, padded with spaces to this length: one Inference-Header-Content-Length
# header then fits every row count (wrk sends fixed headers).
V2_BINARY_HEADER_BYTES = 256


def _v2_binary_body(rows: list[list[float]]) -> bytes:
    """Triton's binary extension, as tritonclient sends by default: the tensor's raw little-endian
    doubles after the JSON, and every output asked for in binary too."""
    import numpy as np

    raw = np.asarray(rows, dtype="<f8").tobytes()
    tensor = {
        "name": "input-0",
        "shape": [len(rows), len(FEATURES)],
        "datatype": "FP64",
        "parameters": {"binary_data_size": len(raw)},
    }
    header = json.dumps({"inputs": [tensor], "parameters": {"binary_data_output": True}}).encode()
    assert len(header) <= V2_BINARY_HEADER_BYTES
    return header.ljust(V2_BINARY_HEADER_BYTES) + raw


v2_binary_body_and_header = (_v2_binary_body, (("Inference-Header-Content-Length", str(V2_BINARY_HEADER_BYTES)),))
