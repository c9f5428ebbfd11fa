"""Drift statistics of one column: the logged values against the column's reference profile.

Two numbers per column, because they answer two questions:
- the population stability index (PSI) says how far the distribution moved, on the reference's
  decile bins (numbers) or its values (categories): 0.1 is the usual "moderate" shift, 0.25 "major";
- a test says whether the move can be told from chance: Kolmogorov-Smirnov for numbers, chi-squared
  for categories. Both are two-sample tests, the reference being a sample too: the KS statistic is
  taken against the reference CDF drawn through its 201 quantiles (the profile is compact; it does
  not hold the training rows), less the 1/200 that interpolation may be off by, so that a million
  logged rows are not "significantly" different from the reference's own rounding.
A column drifts when both agree: p < ALPHA and PSI >= PSI_DRIFT. On a million rows every test
rejects something; on a hundred, a PSI wobbles: together they flag a 2-standard-deviation shift and
leave a fresh sample of the training distribution alone (tests/monitor).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from diabetes_monitor.profile import QUANTILES, bin_counts

ALPHA = 0.01
PSI_DRIFT = 0.1
EPSILON = 1e-4  # the share an empty bin is given, so that PSI's log stays finite


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index between two count vectors over the same bins."""
    e = np.maximum(expected / max(expected.sum(), 1), EPSILON)
    a = np.maximum(actual / max(actual.sum(), 1), EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def reference_cdf(quantiles: np.ndarray, points: np.ndarray, side: str = "right") -> np.ndarray:
    """The reference's CDF at `points`, linear between its quantiles. A value repeated in the quantiles
    is an atom (the example's `s4` has ~66 values): the CDF jumps there, from the lowest probability of
    the repeat to the highest; `right` gives its value at the atom, `left` its limit from below, as an
    empirical CDF's two sides. Between two quantile values it runs from the one's top to the other's
    foot, so a rare value just below a heavy atom is not given the atom's mass."""
    probs = np.linspace(0.0, 1.0, len(quantiles))
    xs, first = np.unique(quantiles, return_index=True)
    _, from_end = np.unique(quantiles[::-1], return_index=True)
    foot, top = probs[first], probs[len(quantiles) - 1 - from_end]
    hi = np.minimum(np.searchsorted(xs, points, side="left"), len(xs) - 1)  # xs[hi - 1] < point <= xs[hi]
    lo = np.maximum(hi - 1, 0)
    span = xs[hi] - xs[lo]
    share = np.divide(points - xs[lo], span, out=np.zeros_like(points, dtype="float64"), where=span > 0)
    between = top[lo] + np.clip(share, 0.0, 1.0) * (foot[hi] - top[lo])
    at = xs[hi] == points
    values = np.where(at, top[hi] if side == "right" else foot[hi], between)
    return np.where(points < xs[0], 0.0, np.where(points > xs[-1], 1.0, values))


def ks_against_quantiles(quantiles: np.ndarray, reference_rows: int, current: np.ndarray) -> tuple[float, float]:
    """(statistic, p-value) of a two-sample KS test of `current` against the reference's quantiles."""
    # scipy.special's Kolmogorov survival function is kstwobign.sf without importing scipy.stats
    # (6 s of imports on the shared machine against 0.3 s).
    from scipy.special import kolmogorov

    ordered = np.sort(current)
    n = len(ordered)
    points = np.unique(np.concatenate([ordered[:: max(1, n // 20_000)], ordered[-1:], quantiles]))
    above = np.searchsorted(ordered, points, side="right") / n
    below = np.searchsorted(ordered, points, side="left") / n
    statistic = float(
        max(
            np.max(np.abs(above - reference_cdf(quantiles, points, "right"))),
            np.max(np.abs(below - reference_cdf(quantiles, points, "left"))),
        )
    )
    adjusted = max(0.0, statistic - 1.0 / (QUANTILES - 1))
    effective = n * reference_rows / (n + reference_rows)
    return statistic, float(kolmogorov(adjusted * np.sqrt(effective)))


def chi_squared(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """(statistic, p-value) of a chi-squared test of homogeneity on a 2 x K table of counts."""
    from scipy.special import chdtrc  # chi2.sf, without scipy.stats' imports

    table = np.vstack([reference, current]).astype("float64")
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2:
        return 0.0, 1.0
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    statistic = float(((table - expected) ** 2 / expected).sum())
    return statistic, float(chdtrc(table.shape[1] - 1, statistic))


def category_counts(reference: dict[str, Any], values: np.ndarray) -> np.ndarray:
    """The current counts of the reference's values, then of everything else ("other")."""
    known = reference["values"]
    if reference["kind"] == "categorical":
        values = values.astype(str)
    uniques, counts = np.unique(values, return_counts=True)
    found = dict(zip((u.item() if isinstance(u, np.generic) else u for u in uniques), counts.tolist(), strict=True))
    mine = [int(found.pop(v, 0)) for v in known]
    return np.array([*mine, sum(found.values())])


def compare(reference: dict[str, Any], values: np.ndarray, nulls: int) -> dict[str, Any]:
    """The drift figures of one column: `values` are its non-null logged values."""
    total = len(values) + nulls
    result: dict[str, Any] = {
        "kind": reference["kind"],
        "rows": len(values),
        "null_rate": nulls / total if total else 0.0,
        "reference_null_rate": reference["null_rate"],
    }
    if len(values) == 0 or reference["count"] == 0:
        return {**result, "drift": False, "psi": None, "p_value": None, "test": None, "statistic": None}
    if reference["kind"] == "numeric":
        counts = bin_counts(values, reference["psi_edges"])
        index = psi(np.asarray(reference["psi_counts"], dtype="float64"), counts)
        statistic, p_value = ks_against_quantiles(np.asarray(reference["quantiles"]), reference["count"], values)
        test = "ks"
        result |= {"mean": float(values.mean()), "reference_mean": reference["mean"]}
    else:
        expected = np.array([*reference["counts"], reference["other"]], dtype="float64")
        counts = category_counts(reference, values)
        index = psi(expected, counts)
        statistic, p_value = chi_squared(expected, counts)
        test = "chi2"
        result["unseen_share"] = float(counts[-1] / max(counts.sum(), 1)) if reference["other"] == 0 else None
    drift = bool(p_value < ALPHA and index >= PSI_DRIFT)
    return {**result, "drift": drift, "psi": index, "p_value": p_value, "test": test, "statistic": statistic}
