"""Mixed-type models for the tests (issue 16): scikit-learn pipelines fitted on DataFrames whose
columns are strings, integers, booleans, doubles, datetimes and optional values, saved as MLflow
models with their inferred signature, as a user's `mlflow.sklearn.log_model` would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

COLUMNS = ["smoker", "age", "active", "bmi", "note"]


def training_frame() -> tuple[pd.DataFrame, list[str]]:
    rows = []
    labels = []
    for i in range(60):
        smoker = ["yes", "no", "former"][i % 3]
        age = 20 + (i * 7) % 50
        active = i % 4 == 0
        bmi = 18.0 + (i * 13 % 17)
        note = None if i % 5 == 0 else ["a", "b"][i % 2]
        rows.append([smoker, age, active, bmi, note])
        labels.append("high" if (age > 40) + (smoker == "yes") + (bmi > 28) >= 2 else "low")
    frame = pd.DataFrame(rows, columns=COLUMNS).astype({"age": "int64", "active": "bool", "bmi": "float64"})
    return frame, labels


def fit_mixed_model() -> tuple[Any, pd.DataFrame]:
    """A Pipeline with a ColumnTransformer selecting a string (one-hot, unseen categories ignored),
    a long, a boolean, a double and an optional string column by name, and a LogisticRegression with
    string labels, fitted on `training_frame`. Returns the fitted model and its training frame."""
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame, labels = training_frame()
    note = make_pipeline(SimpleImputer(strategy="constant", fill_value="none"), OneHotEncoder(handle_unknown="ignore"))
    columns = ColumnTransformer(
        [
            ("smoker", OneHotEncoder(handle_unknown="ignore"), ["smoker"]),
            ("numbers", StandardScaler(), ["age", "bmi"]),
            ("active", "passthrough", ["active"]),
            ("note", note, ["note"]),
        ]
    )
    model = Pipeline([("columns", columns), ("classify", LogisticRegression())]).fit(frame, labels)
    return model, frame


def save_mixed_model(folder: Path) -> tuple[Any, pd.DataFrame]:
    """`fit_mixed_model`'s pipeline saved to `folder` with its inferred signature, as a user's
    `mlflow.sklearn.save_model` would. Returns the fitted model and its training frame."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    model, frame = fit_mixed_model()
    signature = infer_signature(frame, model.predict(frame))
    mlflow.sklearn.save_model(
        model, folder, signature=signature, input_example=frame.head(3), serialization_format="cloudpickle"
    )
    return model, frame


def records(frame: pd.DataFrame) -> list[dict]:
    """The frame's rows as JSON objects (numpy scalars as Python's, NaN and None as null)."""
    out = []
    for row in frame.itertuples(index=False):
        out.append(
            {
                "smoker": row.smoker,
                "age": int(row.age),
                "active": bool(row.active),
                "bmi": float(row.bmi),
                "note": None if not isinstance(row.note, str) else row.note,
            }
        )
    return out
