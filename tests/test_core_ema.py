"""EMA update: one multi-tensor lerp per call, equal to the per-tensor formula."""

import pytest
import torch

from lct.core import ema_decay, ema_update


@pytest.mark.parametrize("decay", [0.0, 0.5, 0.999, 0.99993])
def test_ema_update_equals_per_tensor_lerp_and_the_formula(decay):
    g = torch.Generator().manual_seed(0)
    shapes = [(3,), (4, 5), (8, 4, 3, 3), (1,), (2, 2, 1, 1)]
    ema = [torch.randn(s, generator=g) for s in shapes]
    params = [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes]
    before = [e.clone() for e in ema]
    ema_update(ema, iter(params), decay)  # generators are accepted, like .parameters()
    for e, e0, p in zip(ema, before, params):
        assert torch.equal(e, torch.lerp(e0, p.detach(), 1.0 - decay))  # bitwise the per-tensor lerp
        torch.testing.assert_close(e, decay * e0 + (1 - decay) * p.detach(), rtol=1e-6, atol=1e-7)
    assert all(p.grad is None for p in params)  # no autograd history, parameters untouched


def test_ema_update_decay_zero_copies_and_lengths_must_match():
    ema, params = [torch.zeros(4), torch.zeros(2)], [torch.arange(4.0), torch.ones(2)]
    ema_update(ema, params, 0.0)
    assert all(torch.equal(e, p) for e, p in zip(ema, params))
    with pytest.raises(ValueError, match="EMA has 1 tensors but the model has 2"):
        ema_update(ema[:1], params, 0.5)


@pytest.mark.parametrize("w", [2, 3, 10])
def test_ema_warmup_w_is_the_power_function_average_of_the_iterates(w):
    """While min(decay, (1+k)/(w+k)) is the warm-up, the EMA after step K weights the initial weights by
    prod_k (1+k)/(w+k) and iterate j by Gamma(j+w)/Gamma(j+2) (normalised): w = 2 is the plain running mean."""
    K = 40
    thetas = torch.randn(K + 1, 3, generator=torch.Generator().manual_seed(w), dtype=torch.float64)
    init = torch.randn(3, dtype=torch.float64)
    ema = [init.clone()]
    for k in range(K + 1):
        ema_update(ema, [thetas[k]], ema_decay(k, 0.999, warmup=w))
    j = torch.arange(K + 1, dtype=torch.float64)
    weights = torch.exp(torch.lgamma(j + w) - torch.lgamma(j + 2))
    w_init = torch.prod((1 + j) / (w + j))
    weights = (1 - w_init) * weights / weights.sum()
    torch.testing.assert_close(ema[0], w_init * init + (weights[:, None] * thetas).sum(0))
    if w == 2:
        torch.testing.assert_close(ema[0], (init + thetas.sum(0)) / (K + 2))


def test_ema_warmup_true_is_w_10_and_bad_widths_are_refused():
    assert ema_decay(5, 0.999, warmup=True) == ema_decay(5, 0.999, warmup=10) == pytest.approx(6 / 15)
    assert ema_decay(5, 0.999, warmup=False) == ema_decay(5, 0.999, warmup=None) == 0.999
    for bad in (1, 0.5, -3, "10"):
        with pytest.raises(ValueError, match="number w > 1"):
            ema_decay(5, 0.999, warmup=bad)
