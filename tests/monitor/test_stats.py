"""The drift statistics on their own: the reference CDF drawn through the profile's quantiles, with
atoms (a number with tens of distinct values, like the example's `s4`), and the tests it feeds."""

from __future__ import annotations

import numpy as np

from diabetes_monitor.profile import column_profile
from diabetes_monitor.stats import compare, reference_cdf


def test_the_reference_cdf_jumps_at_atoms_and_runs_straight_between() -> None:
    quantiles = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3.0])  # probabilities 0, 1/9, ..., 1
    points = np.array([-1, 0, 0.5, 1, 1.5, 2, 3, 4.0])
    right = reference_cdf(quantiles, points, "right")
    left = reference_cdf(quantiles, points, "left")
    np.testing.assert_allclose(right, [0, 2 / 9, 2.5 / 9, 4 / 9, 4.5 / 9, 8 / 9, 1, 1])
    np.testing.assert_allclose(left, [0, 0, 2.5 / 9, 3 / 9, 4.5 / 9, 5 / 9, 1, 1])


def test_a_fresh_sample_of_a_lattice_valued_feature_does_not_drift() -> None:
    """60 unequally likely values (more than a category's 20): profiled as a number, tested by KS."""
    rng = np.random.default_rng(11)
    values = np.round(rng.gamma(2.0, 1.0, 400) * 8) / 8  # ~60 distinct values, heavy atoms at the low end
    values = values[values < 7.5]
    reference = column_profile(values)
    assert reference["kind"] == "numeric"
    for _ in range(5):
        fresh = rng.choice(values, 3_000)  # the training distribution itself, sampled again
        result = compare(reference, fresh, 0)
        assert result["p_value"] > 0.01, result
        assert result["drift"] is False
    shifted = compare(reference, rng.choice(values, 3_000) + 2 * values.std(), 0)
    assert shifted["drift"] is True
