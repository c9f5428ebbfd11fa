"""The worked example's data: scikit-learn's diabetes set, split 80/20 with random_state=0."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pandas as pd

FEATURES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")
TARGET = "progression"
TEST_SIZE = 0.2
RANDOM_STATE = 0
SOURCE = "sklearn.datasets.load_diabetes"


@dataclass(frozen=True)
class Split:
    """Train and test rows with the named features (float64) and the continuous target."""

    x_train: pd.DataFrame
    x_test: pd.DataFrame
    y_train: pd.Series
    y_test: pd.Series
    test_size: float
    random_state: int
    sha256: str  # of the whole data set, so that a run can be traced to its data

    def frame(self, which: str) -> pd.DataFrame:
        """Features and target of the `train` or `test` rows as one frame (for dataset logging)."""
        x, y = (self.x_train, self.y_train) if which == "train" else (self.x_test, self.y_test)
        return x.assign(**{TARGET: y})


def load_frame() -> pd.DataFrame:
    """The 442 rows, ten named float64 features and the target column `progression`."""
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes(as_frame=True)
    features = bunch.data.astype("float64")
    if tuple(features.columns) != FEATURES:
        # The contract names the features; a scikit-learn that renames them must fail loudly.
        raise RuntimeError(f"unexpected diabetes feature names: {list(features.columns)}")
    return features.assign(**{TARGET: bunch.target.astype("float64")})


def content_sha256(frame: pd.DataFrame) -> str:
    """A digest of the values and column names, stable across runs and machines."""
    digest = hashlib.sha256()
    digest.update(",".join(map(str, frame.columns)).encode())
    digest.update(frame.to_numpy(dtype="float64").tobytes())
    return digest.hexdigest()


def load_split(test_size: float = TEST_SIZE, random_state: int = RANDOM_STATE) -> Split:
    """The example's split: 353 training rows, 89 test rows."""
    from sklearn.model_selection import train_test_split

    frame = load_frame()
    x = frame[list(FEATURES)]
    y = frame[TARGET]
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=test_size, random_state=random_state)
    return Split(x_train, x_test, y_train, y_test, test_size, random_state, content_sha256(frame))
