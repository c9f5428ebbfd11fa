"""What a model is called with to prove it serves: before a worker takes traffic, and to check a
compiled form answers as the estimator does (the preparation child, a first start from the arrays)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from diabetes_client.schema import PREDICT
from diabetes_service.model.columns import ColumnType, frame, is_typed
from diabetes_service.model.loading import LoadedModel


def probe_rows(example_rows: Sequence[Sequence[float]], width: int) -> np.ndarray:
    """The input example and a few rows around zero: what a compiled model must answer alike."""
    # Fixed values spread over [-0.1, 0.1], not numpy.random's: importing it cost each worker ~10 ms.
    around_zero = 0.1 * np.sin(np.arange(1, 8 * width + 1, dtype=np.float64) * 2.399963).reshape(8, width)
    return np.vstack([np.asarray(example_rows, dtype=np.float64), around_zero])


def probe_input(loaded: LoadedModel) -> Any:
    """What the estimator itself is called with to prove it serves: a float matrix where the model
    takes one, else a DataFrame of the input example's rows (the model's own example is the one
    input sure to be in its range)."""
    types = [ColumnType(f.type, f.optional) for f in loaded.features]
    names = [f.name for f in loaded.features]
    if not is_typed(types):
        probe = probe_rows(loaded.input_example or [[0.0] * len(names)], len(names))
        try:
            getattr(loaded.estimator, PREDICT)(probe[:1])
            return probe
        except Exception:  # selects its columns by name: a frame of the same doubles
            return frame(names, types, probe.T.tolist())
    if not loaded.input_example:
        raise ValueError("a model with typed columns needs an input example to be checked before it serves")
    rows = [list(row) for row in loaded.input_example]
    columns = [[row[i] for row in rows] for i in range(len(names))]
    return frame(names, types, [t.check(column, i) for i, (t, column) in enumerate(zip(types, columns, strict=True))])
