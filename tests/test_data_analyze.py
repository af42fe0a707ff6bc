"""Outlier statistics used by `python -m lct.analyze`."""

import numpy as np

from lct.data.analysis import GAUSSIAN_REFERENCE, outlier_stats


def test_gaussian_matches_reference_rates():
    stats = outlier_stats(np.random.default_rng(0).standard_normal(2_000_000))
    assert abs(stats["excess_kurtosis"]) < 0.02
    assert abs(stats["beyond_inner_fence"] - GAUSSIAN_REFERENCE["beyond_inner_fence"]) < 5e-4
    assert stats["beyond_outer_fence"] < 2e-5


def test_heavy_tails_are_flagged():
    values = np.random.default_rng(0).standard_t(3, 500_000)
    stats = outlier_stats(values)
    assert stats["excess_kurtosis"] > 3 and stats["beyond_outer_fence"] > 100 * GAUSSIAN_REFERENCE["beyond_outer_fence"]


def test_zero_iqr_is_reported():
    values = np.r_[np.full(900, -1.0), np.linspace(0, 1, 100)]
    stats = outlier_stats(values)
    assert stats["iqr_is_zero"] == 1.0 and np.isclose(stats["beyond_inner_fence"], 0.1)
