"""Schedules against their closed forms and the paper's values."""

import math

import numpy as np
import pytest
import torch

from lct.core import (
    adaptive_c,
    ict_default_c,
    ict_weight,
    karras_sigmas,
    lognormal_index_probs,
    lr_factor,
    num_scales,
    sample_indices,
)


def test_karras_grid_endpoints_and_formula():
    s = karras_sigmas(641)
    assert s.dtype == torch.float64 and s.shape == (641,)
    assert s[0].item() == pytest.approx(80.0, rel=1e-12) and s[-1].item() == pytest.approx(0.002, rel=1e-12)
    assert bool((s[1:] < s[:-1]).all())
    i = 430
    expect = (80 ** (1 / 7) + i / 640 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    assert s[i].item() == pytest.approx(expect, rel=1e-12)
    # The paper's best 2-NFE intermediate levels (the authors' evaluation scripts): index 420 -> 0.5286, 440 -> 0.369.
    assert s[420].item() == pytest.approx(0.5286, abs=1e-4) and s[440].item() == pytest.approx(0.369, abs=1e-3)


def test_karras_grid_matches_diffusers():
    from diffusers import CMStochasticIterativeScheduler

    for n in (11, 41, 641):
        sched = CMStochasticIterativeScheduler(num_train_timesteps=n, sigma_min=0.002, sigma_max=80.0)
        np.testing.assert_allclose(karras_sigmas(n).numpy(), sched.sigmas.numpy(), rtol=1e-6)


@pytest.mark.parametrize("n", [0, 1])
def test_karras_grid_rejects_too_few_points(n):
    with pytest.raises(ValueError, match="n"):
        karras_sigmas(n)


def test_curriculum_stage_boundaries_for_K_294000():
    K = 294_000
    assert K // 7 == 42_000
    for stage, n in enumerate([11, 21, 41, 81, 161, 321, 641]):
        start = stage * 42_000
        assert num_scales(start, K) == n
        if stage:
            assert num_scales(start - 1, K) == [11, 21, 41, 81, 161, 321][stage - 1]
    assert num_scales(K - 1, K) == 641 and num_scales(10 * K, K) == 641  # capped at s1 + 1


def test_curriculum_closed_form_random_steps():
    rng = np.random.default_rng(0)
    for _ in range(200):
        K = int(rng.integers(7, 10**6))
        k = int(rng.integers(0, K))
        s0, s1 = 10, int(rng.choice([640, 1280]))
        kp = math.floor(K / (math.log2(math.floor(s1 / s0)) + 1))
        assert num_scales(k, K, s0, s1) == min(s0 * 2 ** (k // kp), s1) + 1


def test_curriculum_bad_input():
    with pytest.raises(ValueError, match="total_steps"):
        num_scales(0, 0)
    with pytest.raises(ValueError, match="s0"):
        num_scales(0, 100, s0=20, s1=10)


def test_lognormal_probs_for_N11_match_authors_values():
    p = lognormal_index_probs(karras_sigmas(11))
    expect = [0.004, 0.009, 0.020, 0.041, 0.081, 0.142, 0.214, 0.246, 0.182, 0.063]
    np.testing.assert_allclose(p.numpy(), expect, atol=6e-4)
    assert p.sum().item() == pytest.approx(1.0, abs=1e-12)


def test_lognormal_probs_closed_form():
    s = karras_sigmas(81)
    e = torch.erf((torch.log(s) + 1.1) / (math.sqrt(2) * 2.0))
    p = (e[:-1] - e[1:]) / (e[:-1] - e[1:]).sum()
    torch.testing.assert_close(lognormal_index_probs(s, -1.1, 2.0), p, rtol=1e-12, atol=1e-15)


def test_lognormal_probs_reject_bad_grid():
    with pytest.raises(ValueError, match="descending"):
        lognormal_index_probs(torch.tensor([0.1, 1.0, 2.0]))
    with pytest.raises(ValueError, match="non-finite"):
        lognormal_index_probs(torch.tensor([float("nan"), 1.0]))


def test_sample_indices_follow_probs():
    p = lognormal_index_probs(karras_sigmas(11))
    idx = sample_indices(p, 200_000, torch.Generator().manual_seed(0))
    freq = torch.bincount(idx, minlength=10).double() / idx.numel()
    np.testing.assert_allclose(freq.numpy(), p.numpy(), atol=3e-3)
    assert idx.max() <= 9


def test_ict_weight():
    s = karras_sigmas(11)
    lam = ict_weight(s[:-1], s[1:])
    torch.testing.assert_close(lam, 1 / (s[:-1] - s[1:]))
    assert lam[0].item() == pytest.approx(0.029, abs=1e-3) and lam[-1].item() == pytest.approx(68, rel=0.01)
    with pytest.raises(ValueError, match="sigma_i > sigma_next"):
        ict_weight(s[1:], s[:-1])


def test_adaptive_c_table():
    got = adaptive_c(torch.tensor([21, 41, 81, 161, 321, 641]))
    # A printed table of c(N) deviates from its own formula by up to 0.54% (at N = 641); the formula
    # exp(-1.15 ln(N-1) - 0.85) is the definition and is checked exactly below.
    expect = [0.013636, 0.006138, 0.002763, 0.001243, 0.000560, 0.000252]
    np.testing.assert_allclose(got.numpy(), expect, rtol=6e-3)
    assert adaptive_c(81).item() == pytest.approx(math.exp(-1.15 * math.log(80) - 0.85), rel=1e-14)
    assert ict_default_c(4 * 32 * 32) == pytest.approx(0.03456, rel=1e-12)


def test_curriculum_k_prime_does_not_floor_the_log():
    """K' = floor(K / (log2 floor(s1/s0) + 1)) with the log unfloored: s1/s0 = 20 gives K' = 18790, not 20000."""
    assert num_scales(18_800, 100_000, 10, 200) == 21
    assert num_scales(18_789, 100_000, 10, 200) == 11 and num_scales(18_790, 100_000, 10, 200) == 21
    kp = math.floor(100_000 / (math.log2(20) + 1))
    for k in (0, kp - 1, kp, 2 * kp, 4 * kp, 5 * kp, 99_999):
        assert num_scales(k, 100_000, 10, 200) == min(10 * 2 ** (k // kp), 200) + 1


def test_lr_cooldown_closed_form_and_boundaries():
    K = 1500
    assert [lr_factor(k, K, 0.0) for k in (0, 1499)] == [1.0, 1.0]  # the paper's constant lr
    # 0.2: constant through step 1,200, then (K - k) / 300: 1 at 1,200, 0.5 at 1,350, 1/300 at the last step.
    assert lr_factor(1199, K, 0.2) == lr_factor(1200, K, 0.2) == 1.0
    assert lr_factor(1350, K, 0.2) == pytest.approx(0.5) and lr_factor(1499, K, 0.2) == pytest.approx(1 / 300)
    assert lr_factor(K, K, 0.2) == 0.0 and lr_factor(0, K, 1.0) == 1.0 and lr_factor(750, K, 1.0) == 0.5
    for bad in ((0, K, -0.1), (0, K, 1.5), (-1, K, 0.2), (0, 0, 0.2)):
        with pytest.raises(ValueError):
            lr_factor(*bad)
