"""The drift report: payload records of one model version against its reference profile, as JSON.

{"rows": N, "features": {name: {"drift": bool, "psi": x, "p_value": x, ...}}, "prediction": {...}}
plus the window, the record and refusal counts, and `drift` (any feature or output drifted). Columns
are compared one at a time (stats.py); a column the log no longer holds, or holds as hex digests
where the reference has numbers or other values (the sink's `drop` and `hash` redaction), is reported
as `"redacted": true` and never as drift.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import numpy as np

from diabetes_monitor import stats

SCORED = 200
HEX = re.compile(r"^[0-9a-f]{16,}$")


def _hashed(column: Any, reference: dict[str, Any]) -> bool:
    """Whether a column was hashed by the sink: strings where the reference has numbers, or hex
    digests none of which is a reference value."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return False
    if reference["kind"] != "categorical":
        return True
    sample = pc.drop_null(column.slice(0, 1000)).to_pylist()
    known = set(reference.get("values", ()))
    return bool(sample) and all(HEX.match(v) and v not in known for v in sample)


def column_values(column: Any, reference: dict[str, Any]) -> tuple[np.ndarray, int]:
    """A column's non-null values (float64 for numbers) and its null count."""
    import pyarrow.compute as pc

    nulls = column.null_count
    present = pc.drop_null(column)
    if reference["kind"] == "categorical":
        return np.asarray(present.to_pylist(), dtype=object), nulls
    return present.to_numpy().astype("float64", copy=False), nulls


def _compare_all(table: Any, references: dict[str, Any], plots: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, reference in references.items():
        if name not in table.column_names or _hashed(table[name], reference):
            out[name] = {"kind": reference["kind"], "redacted": True, "drift": False, "psi": None, "p_value": None}
            continue
        values, nulls = column_values(table[name], reference)
        out[name] = stats.compare(reference, values, nulls)
        if len(values) and reference["count"]:
            plots[name] = plot_data(reference, values)
    return out


def plot_data(reference: dict[str, Any], values: np.ndarray) -> dict[str, Any]:
    """What a column's plot draws: the reference's and the current shares over the same bins."""
    if reference["kind"] != "numeric":
        counts = stats.category_counts(reference, values) if len(values) else np.zeros(len(reference["values"]) + 1)
        expected = np.array([*reference["counts"], reference["other"]], dtype="float64")
        return {
            "labels": [*map(str, reference["values"]), "other"],
            "reference": (expected / max(expected.sum(), 1)).tolist(),
            "current": (counts / max(counts.sum(), 1)).tolist(),
        }
    quantiles = np.asarray(reference["quantiles"])
    if len(quantiles) == 0 or len(values) == 0:
        return {"edges": [], "reference": [], "current": []}
    low, high = np.percentile(values, [0.1, 99.9])
    edges = np.linspace(min(quantiles[0], low), max(quantiles[-1], high), 41)
    if edges[0] == edges[-1]:
        edges = np.linspace(edges[0] - 0.5, edges[0] + 0.5, 41)
    current, _ = np.histogram(values, bins=edges)
    return {
        "edges": edges.tolist(),
        "reference": np.diff(stats.reference_cdf(quantiles, edges)).tolist(),
        "current": (current / len(values)).tolist(),
    }


def build(
    profile: dict[str, Any],
    table: Any,
    *,
    model: str,
    version: str,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The report of `table` (reader.read's records) against `profile` (profile.load's), and the
    data of each column's plot (html.py's input, kept out of the JSON)."""
    import pyarrow.compute as pc

    records = table.num_rows
    scored_mask = pc.equal(table["status"], SCORED)
    scored = table.filter(scored_mask)
    refused = records - scored.num_rows
    plots: dict[str, Any] = {}
    features = _compare_all(scored, profile["features"], plots)
    # The profile keeps every output the service may log (`prediction`, and `proba_<class>` for a
    # classifier): the log holds those of the method it served (the others absent, or null), and only
    # those are compared.
    served = {
        name: ref
        for name, ref in profile["outputs"].items()
        if name in scored.column_names and scored[name].null_count < scored.num_rows
    }
    outputs = _compare_all(scored, served, plots)
    prediction: dict[str, Any] = dict(outputs.get("prediction", {}))
    prediction["drift"] = any(column["drift"] for column in outputs.values())
    prediction["columns"] = outputs
    times = pc.min_max(table["timestamp"])
    report = {
        "model": model,
        "version": version,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        "first_record": _iso(times["min"]),
        "last_record": _iso(times["max"]),
        "rows": scored.num_rows,
        "records": records,
        "refused": refused,
        "refusal_rate": refused / records if records else 0.0,
        "reference_rows": profile["rows"],
        "reference_created": profile.get("created"),
        "drift": any(f["drift"] for f in features.values()) or prediction["drift"],
        "drifting": [name for name, f in features.items() if f["drift"]],
        "thresholds": {"p_value": stats.ALPHA, "psi": stats.PSI_DRIFT},
        "features": features,
        "prediction": prediction,
    }
    return report, plots


def _iso(scalar: Any) -> str | None:
    value = scalar.as_py()
    return value.isoformat() if value is not None else None
