"""Power-law fit of c(N) to the TD-residual spread: closed forms and per-stage aggregation."""

import math

import numpy as np
import pytest

from lct.core.c_schedules import adaptive_c
from lct.core.fit import PAPER_OFFSET, PAPER_SLOPE, fit_power_law, power_law, stage_spread
from lct.errors import LctError

STAGES = [11, 21, 41, 81, 161, 321, 641]


def test_power_law_matches_the_papers_adaptive_c():
    got = power_law(STAGES[1:], PAPER_SLOPE, PAPER_OFFSET)
    np.testing.assert_allclose(got, adaptive_c(STAGES[1:]).numpy(), rtol=1e-12)
    assert power_law(161, PAPER_SLOPE, PAPER_OFFSET) == pytest.approx(0.0012477, rel=1e-4)


@pytest.mark.parametrize("slope, offset", [(PAPER_SLOPE, PAPER_OFFSET), (-0.7, 1.3), (0.25, -4.0)])
def test_fit_recovers_exact_constants_with_r2_one(slope, offset):
    spread = power_law(STAGES, slope, offset)
    a, b, r2 = fit_power_law(STAGES, spread)
    assert a == pytest.approx(slope, abs=1e-10)
    assert b == pytest.approx(offset, abs=1e-10)
    assert r2 == pytest.approx(1.0, abs=1e-12)


def test_fit_two_points_closed_form():
    # Through (N-1 = 10, e^-1) and (N-1 = 100, e^-3): slope = -2 / ln 10, offset = -1 + 2 ln10 / ln10 = 1.
    a, b, r2 = fit_power_law([11, 101], [math.exp(-1), math.exp(-3)])
    assert a == pytest.approx(-2 / math.log(10))
    assert b == pytest.approx(1.0)
    assert r2 == pytest.approx(1.0)


def test_fit_r2_below_one_on_noisy_data_and_exact_least_squares():
    x = np.log(np.asarray(STAGES, dtype=float) - 1)
    noise = np.array([0.1, -0.2, 0.15, -0.05, 0.0, 0.2, -0.2])
    a, b, r2 = fit_power_law(STAGES, np.exp(-1.0 * x + 0.5 + noise))
    design = np.stack([x, np.ones_like(x)], 1)
    (a_ls, b_ls), *_ = np.linalg.lstsq(design, -1.0 * x + 0.5 + noise, rcond=None)
    assert (a, b) == pytest.approx((a_ls, b_ls), abs=1e-10)
    y = -1.0 * x + 0.5 + noise
    r2_expected = 1 - ((y - a_ls * x - b_ls) ** 2).sum() / ((y - y.mean()) ** 2).sum()
    assert r2 == pytest.approx(r2_expected) and r2 < 1


@pytest.mark.parametrize(
    "n, s, match",
    [
        ([11, 11, 11], [0.1, 0.2, 0.3], "two curriculum stages"),
        ([11, 21], [0.1, 0.0], "> 0"),
        ([11, 21], [0.1, float("nan")], "finite"),
        ([1, 21], [0.1, 0.2], "N must be >= 2"),
        ([11, 21, 41], [0.1, 0.2], "one length"),
    ],
)
def test_fit_rejects_unusable_data(n, s, match):
    with pytest.raises(LctError, match=match):
        fit_power_law(n, s)


def test_stage_spread_groups_by_stage_in_order():
    n = [11, 11, 11, 21, 21, 41]
    s = [0.3, 0.1, 0.2, 0.05, 0.07, 0.02]
    stages, med, counts = stage_spread(n, s)
    np.testing.assert_array_equal(stages, [11, 21, 41])
    np.testing.assert_allclose(med, [0.2, 0.06, 0.02])
    np.testing.assert_array_equal(counts, [3, 2, 1])
    _, mean, _ = stage_spread(n, s, reduce="mean")
    np.testing.assert_allclose(mean, [0.2, 0.06, 0.02])


def test_stage_spread_skip_drops_each_stages_first_points_and_nonfinite_rows():
    n = [11, 11, 11, 11, 21, 21, float("nan")]
    s = [9.0, 1.0, 2.0, 3.0, 8.0, 4.0, 0.5]
    stages, med, counts = stage_spread(n, s, skip=0.5)
    np.testing.assert_array_equal(stages, [11, 21])
    np.testing.assert_allclose(med, [2.5, 4.0])  # [2, 3] and [4]
    np.testing.assert_array_equal(counts, [2, 1])


def test_stage_spread_median_resists_a_spike_mean_does_not():
    n, s = [21] * 5, [0.1, 0.1, 0.1, 0.1, 10.0]
    assert stage_spread(n, s)[1][0] == pytest.approx(0.1)
    assert stage_spread(n, s, reduce="mean")[1][0] == pytest.approx(2.08)


@pytest.mark.parametrize("kwargs, match", [({"reduce": "max"}, "reduction"), ({"skip": 1.0}, "skip")])
def test_stage_spread_rejects_bad_options(kwargs, match):
    with pytest.raises(LctError, match=match):
        stage_spread([11], [0.1], **kwargs)
