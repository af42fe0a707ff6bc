"""EMA update: one multi-tensor lerp per call, equal to the per-tensor formula."""

import pytest
import torch

from lct.core import ema_update


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
