"""The reference profile: a compact summary of the training data that drift is measured against.

Drift tools that keep the whole training set grow with it (evidently #506); this profile does not:
per column its null rate and either 201 quantiles plus a 10-bin histogram (numbers), or its values
with their counts (categories, and numbers with at most 20 distinct values, such as the example's
`sex`, whose two values a continuous test would only blur). About 5 KB per numeric column, whatever
the training set's size. The same summary is kept for the model's outputs (`prediction`, or one
`proba_<class>` column per class), under the payload log's column names.

It is JSON (`reference_profile.json`), logged next to the model by `diabetes train` and written by
`diabetes monitor reference` for a model trained elsewhere.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from diabetes_monitor.errors import MonitorError

FORMAT = 1
PROFILE_FILE = "reference_profile.json"
QUANTILES = 201  # the KS statistic's resolution: the reference CDF is known to within 1/200
PSI_BINS = 10  # deciles: the usual population stability index bins
MAX_DISCRETE = 20  # a number with at most this many distinct values is profiled as a category
MAX_CATEGORIES = 50  # the rest of a long tail is counted together under "other"


def _clean(values: Any) -> tuple[np.ndarray, int]:
    """The non-null values of one column and how many were null."""
    array = np.asarray(values)
    if array.dtype.kind in "fiub":
        array = array.astype("float64")
        mask = np.isnan(array)
        return array[~mask], int(mask.sum())
    mask = np.array([v is None or (isinstance(v, float) and math.isnan(v)) for v in array], dtype=bool)
    return array[~mask], int(mask.sum())


def _counts(values: np.ndarray) -> dict[str, Any]:
    uniques, counts = np.unique(values, return_counts=True)
    order = np.argsort(-counts, kind="stable")[:MAX_CATEGORIES]
    kept = [_plain(uniques[i]) for i in order]
    kept_counts = [int(counts[i]) for i in order]
    return {"values": kept, "counts": kept_counts, "other": int(counts.sum() - sum(kept_counts))}


def _plain(value: Any) -> Any:
    """A numpy scalar as the JSON value it stands for."""
    return value.item() if isinstance(value, np.generic) else value


def column_profile(values: Any) -> dict[str, Any]:
    """The profile of one column (a sequence or array, None/NaN meaning null)."""
    present, nulls = _clean(values)
    total = len(present) + nulls
    profile: dict[str, Any] = {"count": len(present), "nulls": nulls, "null_rate": nulls / total if total else 0.0}
    if present.dtype.kind not in "fiub":
        return {"kind": "categorical", **profile, **_counts(present.astype(str))}
    if len(present) == 0:
        return {"kind": "numeric", **profile, "quantiles": [], "psi_edges": [], "psi_counts": []}
    if len(np.unique(present)) <= MAX_DISCRETE:
        return {"kind": "discrete", **profile, **_counts(present)}
    quantiles = np.quantile(present, np.linspace(0.0, 1.0, QUANTILES))
    edges = np.unique(np.quantile(present, np.linspace(0.0, 1.0, PSI_BINS + 1))[1:-1])
    return {
        "kind": "numeric",
        **profile,
        "mean": float(present.mean()),
        "std": float(present.std()),
        "min": float(present.min()),
        "max": float(present.max()),
        "quantiles": quantiles.tolist(),
        "psi_edges": edges.tolist(),  # inner edges; the outer bins are open, so no value falls outside
        "psi_counts": bin_counts(present, edges).tolist(),
    }


def bin_counts(values: np.ndarray, edges: np.ndarray | list[float]) -> np.ndarray:
    """How many values fall in each bin (-inf, e0], (e0, e1], ..., (en, inf)."""
    index = np.searchsorted(np.asarray(edges, dtype="float64"), values, side="left")
    return np.bincount(index, minlength=len(edges) + 1)


def build_profile(
    features: Mapping[str, Any], outputs: Mapping[str, Any], *, source: str = "", model: str = ""
) -> dict[str, Any]:
    """The reference profile of a training set (`features`: column name -> values) and the model's
    outputs on it (`outputs`: payload column name, `prediction` or `proba_<class>` -> values)."""
    if not features:
        raise MonitorError("the reference data has no feature columns")
    rows = {len(v) for v in features.values()} | {len(v) for v in outputs.values()}
    if len(rows) != 1 or 0 in rows:
        raise MonitorError("the reference data's columns must be non-empty and of one length")
    return {
        "format": FORMAT,
        "rows": rows.pop(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "source": source,
        "model": model,
        "features": {name: column_profile(values) for name, values in features.items()},
        "outputs": {name: column_profile(values) for name, values in outputs.items()},
    }


def save(profile: Mapping[str, Any], path: Path) -> Path:
    """Write the profile whole: to a temporary name first, renamed into place (no half-written file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(profile, separators=(",", ":")))
    partial.replace(path)
    return path


def load(path: Path) -> dict[str, Any]:
    """A profile read back and checked; MonitorError when it is missing or not one of ours."""
    try:
        profile = json.loads(path.read_text())
    except FileNotFoundError:
        raise MonitorError(
            f"no reference profile at {path}: train with `diabetes train`, or make one with"
            " `diabetes monitor reference --model-uri URI --data FILE`"
        ) from None
    except (OSError, ValueError) as exc:
        raise MonitorError(f"cannot read the reference profile {path}: {exc}") from None
    if (
        not isinstance(profile, dict)
        or profile.get("format") != FORMAT
        or not isinstance(profile.get("features"), dict)
    ):
        raise MonitorError(f"{path} is not a reference profile of format {FORMAT}")
    profile.setdefault("outputs", {})
    return profile
