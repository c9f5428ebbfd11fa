"""The rows the load test scores: the worked example's test set, shipped beside this module.

`example_test_rows.json` holds the 89 test rows of scikit-learn's diabetes data split 80/20 with
random_state=0, so the locustfile needs neither scikit-learn nor a working directory of its own.
`DIABETES_LOADTEST_DATA` points to another file of the same shape (`{"rows": [[...], ...]}` or a
bare list of rows).
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from pathlib import Path

EXAMPLE_ROWS = Path(__file__).with_name("example_test_rows.json")
N_FEATURES = 10
# Bodies are serialised once, up front: building 100-row JSON per request would spend the load
# generator's CPU on itself rather than on the service.
BODIES_PER_SIZE = 32


class DataError(ValueError):
    """The rows file is missing or not a list of rows of ten finite numbers."""


def load_rows(path: Path | None = None) -> list[list[float]]:
    """Rows of ten finite numbers from `path` (default: the example's test set)."""
    path = path or EXAMPLE_ROWS
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read rows from {path}: {exc}") from None
    rows = doc.get("rows") if isinstance(doc, dict) else doc
    if not isinstance(rows, list) or not rows:
        raise DataError(f"{path}: expected a non-empty list of rows")
    for i, row in enumerate(rows):
        if (
            not isinstance(row, list)
            or len(row) != N_FEATURES
            or not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in row)
        ):
            raise DataError(f"{path}: row {i} is not {N_FEATURES} finite numbers")
    return rows


@dataclass(frozen=True)
class Body:
    """One serialised request body and the number of rows it carries."""

    payload: str
    rows: int


def build_bodies(
    rows: list[list[float]], sizes: tuple[int, ...], method: str, *, rng: random.Random
) -> dict[int, list[Body]]:
    """For each batch size, a pool of bodies of that many rows drawn from `rows`.

    Rows are drawn with replacement, so a batch may be larger than the data set (100 > 89).
    """
    pools: dict[int, list[Body]] = {}
    for size in sizes:
        pools[size] = [
            Body(json.dumps({"data": rng.choices(rows, k=size), "method": method}), size)
            for _ in range(BODIES_PER_SIZE)
        ]
    return pools
