"""OT pairing against brute force and POT; EMA; samplers."""

import itertools

import numpy as np
import pytest
import torch
from torch import nn

from lct.core import (
    PAPER,
    ConsistencyFunction,
    MinibatchOT,
    ema_decay,
    ema_update,
    multistep_sample,
    onestep_sample,
    ot_pair,
    ot_permutation,
    pair_cost_reduction,
    sq_euclidean_cost,
    twostep_sample,
)


def _cost(x, n):
    return ((x.flatten(1)[:, None] - n.flatten(1)[None]) ** 2).sum(-1)


@pytest.mark.parametrize("seed", range(5))
def test_exact_ot_equals_bruteforce_optimum(seed):
    g = torch.Generator().manual_seed(seed)
    x, n = (
        torch.randn(6, 2, 3, 3, generator=g, dtype=torch.float64),
        torch.randn(6, 2, 3, 3, generator=g, dtype=torch.float64),
    )
    C = _cost(x, n)
    best = min(C[torch.arange(6), list(p)].sum().item() for p in itertools.permutations(range(6)))
    paired = ot_pair(x, n)
    assert ((x - paired) ** 2).sum().item() == pytest.approx(best, rel=1e-12)
    assert sorted(map(tuple, paired.flatten(1).tolist())) == sorted(map(tuple, n.flatten(1).tolist()))


def test_scipy_equals_pot():
    g = torch.Generator().manual_seed(1)
    x, n = (torch.randn(64, 4, 8, 8, generator=g, dtype=torch.float64) for _ in range(2))
    C = sq_euclidean_cost(x, n)
    np.testing.assert_allclose(C, _cost(x.double(), n.double()).numpy(), rtol=1e-9)
    p1, p2 = ot_permutation(C, "exact"), ot_permutation(C, "pot")
    assert C[np.arange(64), p1].sum() == pytest.approx(C[np.arange(64), p2].sum(), rel=1e-12)
    assert (p1 == p2).all()


def test_ot_reduces_transport_cost_and_sinkhorn_option():
    g = torch.Generator().manual_seed(2)
    x, n = torch.randn(32, 4, 4, 4, generator=g) + 1.0, torch.randn(32, 4, 4, 4, generator=g)
    before = ((x - n) ** 2).sum().item()
    assert ((x - ot_pair(x, n)) ** 2).sum().item() < before
    ent = ot_pair(x, n, method="sinkhorn", reg=0.05, generator=torch.Generator().manual_seed(0))
    assert ent.shape == n.shape and ((x - ent) ** 2).sum().item() < before


def test_ot_bad_input():
    with pytest.raises(ValueError, match="shape mismatch"):
        ot_pair(torch.zeros(4, 2), torch.zeros(5, 2))
    with pytest.raises(ValueError, match="unknown OT method"):
        ot_pair(torch.zeros(4, 2), torch.zeros(4, 2), method="greedy")
    with pytest.raises(ValueError, match="non-finite"):
        ot_pair(torch.full((4, 2), float("inf")), torch.zeros(4, 2))


def test_ema_update_and_warmup():
    a, b = [torch.zeros(3)], [torch.ones(3)]
    ema_update(a, b, 0.9)
    torch.testing.assert_close(a[0], torch.full((3,), 0.1))
    ema_update(a, b, 0.0)
    torch.testing.assert_close(a[0], b[0])
    assert ema_decay(0, 0.999, warmup=True) == pytest.approx(0.1) and ema_decay(10**6, 0.999, warmup=True) == 0.999
    # conf/ema/cpu.yaml: the warm-up is the decay for all of a 1,500-step run; 0.999 binds from step 8,990 on.
    assert ema_decay(1500, 0.999, warmup=True) == pytest.approx(1501 / 1510)
    assert ema_decay(8989, 0.999, warmup=True) < 0.999 == ema_decay(8990, 0.999, warmup=True)
    with pytest.raises(ValueError, match="decay"):
        ema_decay(0, 1.0)


class Shrink(nn.Module):
    def forward(self, x, c_noise):
        return torch.zeros_like(x)  # F = 0 => f(x, sigma) = c_skip(sigma) x


def test_samplers_follow_their_definition():
    f = ConsistencyFunction(Shrink(), PAPER).double()
    noise = torch.randn(2, 4, 4, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    c_skip = lambda s: 0.25 / ((s - 0.002) ** 2 + 0.25)
    torch.testing.assert_close(onestep_sample(f, noise, PAPER.sigma_max, PAPER.sigma_min), c_skip(80.0) * 80.0 * noise)
    s_mid = PAPER.sigma_mid
    g = torch.Generator().manual_seed(3)
    x2 = twostep_sample(f, noise, s_mid, PAPER.sigma_max, PAPER.sigma_min, generator=g)
    z = torch.randn(noise.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    expect = c_skip(s_mid) * (c_skip(80.0) * 80.0 * noise + (s_mid**2 - 0.002**2) ** 0.5 * z)
    torch.testing.assert_close(x2, expect)
    with pytest.raises(ValueError, match="descending"):
        multistep_sample(f, noise, [1.0, 5.0], PAPER.sigma_min)
    with pytest.raises(ValueError, match="index"):
        PAPER.grid_sigma(641, 641)


def test_residual_stats_gaussian_vs_heavy_tails():
    from lct.core import residual_stats

    g = torch.Generator().manual_seed(0)
    gauss = residual_stats(torch.randn(200_000, generator=g) * 0.3)
    assert gauss["std"] == pytest.approx(0.3, rel=0.02) and abs(gauss["kurtosis"]) < 0.1
    assert gauss["outer_fence_frac"] < 1e-4  # 3 IQR fences sit at ~4.7 sigma for a Gaussian
    cauchy = residual_stats(torch.distributions.Cauchy(0.0, 1.0).sample((200_000,)))
    assert cauchy["kurtosis"] > 100 and cauchy["outer_fence_frac"] > 0.05


def test_ot_cost_is_computed_in_fp32_under_bf16_autocast():
    """bf16 autocast must not lower the cost matrix: the exact pairing is the fp32 one."""
    g = torch.Generator().manual_seed(0)
    x, n = torch.randn(128, 4, 8, 8, generator=g), torch.randn(128, 4, 8, 8, generator=g)
    from lct import core

    ref = core.sq_euclidean_cost(x, n)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under = core.sq_euclidean_cost(x, n)
    assert np.array_equal(ref, under)
    assert (core.ot_permutation(ref) == core.ot_permutation(under)).all()


def test_blockwise_ot_is_a_permutation_within_blocks_and_weaker():
    g = torch.Generator().manual_seed(3)
    x, n = 0.5 * torch.randn(32, 4, 4, 4, generator=g), torch.randn(32, 4, 4, 4, generator=g)
    C = sq_euclidean_cost(x, n)
    full, whole = ot_permutation(C), ot_permutation(C, block=32)
    assert (full == whole).all()  # block >= B is the plain coupling
    assert (ot_permutation(C, block=1) == np.arange(32)).all()  # block 1 is the independent pairing
    p4 = ot_permutation(C, block=4)
    assert sorted(p4.tolist()) == list(range(32)) and (p4 // 4 == np.arange(32) // 4).all()
    for s in range(0, 32, 4):  # each block is its own exact optimum
        blk = C[s : s + 4, s : s + 4]
        best = min(blk[np.arange(4), list(p)].sum() for p in itertools.permutations(range(4)))
        assert blk[np.arange(4), p4[s : s + 4] - s].sum() == pytest.approx(best, rel=1e-12)
    r1, r4, r32 = (pair_cost_reduction(C, p) for p in (np.arange(32), p4, full))
    assert r1 == 0.0 and 0.0 < r4 < r32 < 1.0
    assert (ot_pair(x, n, block=4) == n[torch.as_tensor(p4)]).all()
    assert (MinibatchOT(block=4)(x, n, slice(0, 32)) == n[torch.as_tensor(p4)]).all()
    with pytest.raises(ValueError, match="block must be >= 1"):
        MinibatchOT(block=0)


def test_pair_cost_reduction_closed_form():
    C = np.array([[4.0, 1.0], [1.0, 4.0]])
    assert pair_cost_reduction(C, np.array([0, 1])) == 0.0
    assert pair_cost_reduction(C, np.array([1, 0])) == pytest.approx(0.75)  # 1 - 1/4
