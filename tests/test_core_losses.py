"""Loss invariants: zero when student equals target, gradients into the student only, shared dropout."""

import pytest
import torch
from torch import nn

from lct.core import (
    L2,
    PAPER,
    Cauchy,
    ConsistencyFunction,
    GemanMcClure,
    LowNoiseDiffusion,
    NonFiniteError,
    PseudoHuber,
    consistency_loss,
    diffusion_loss,
    diffusion_mask,
    karras_sigmas,
    lct_loss,
    td_pair,
)
from lct.core._checks import check_finite_on_host
from lct.core.objective import nonfinite_culprit
from lct.core.schedules import ict_weight
from lct.errors import LctError


def _loss(f, f_t, x0, n, si, sn, idx, c=0.03456, weight=5.0):
    return lct_loss(
        f,
        f_t,
        x0,
        n,
        sigma_i=si,
        sigma_next=sn,
        indices=idx,
        n_scales=11,
        metric=Cauchy(),
        c=c,
        diffusion=LowNoiseDiffusion(weight, 0.25),
        sigma_data=PAPER.sigma_data,
    )


class DropNet(nn.Module):
    def __init__(self, c=4, p=0.5):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)
        self.drop = nn.Dropout(p)

    def forward(self, x, c_noise):
        return self.drop(self.conv(x))


def _batch(b=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = karras_sigmas(11)
    idx = torch.randint(0, 10, (b,), generator=g)
    return (
        torch.randn(b, 4, 8, 8, generator=g),
        torch.randn(b, 4, 8, 8, generator=g),
        s[idx].float(),
        s[idx + 1].float(),
        idx,
    )


def test_zero_loss_when_student_equals_target():
    x = torch.randn(4, 4, 8, 8)
    w = torch.rand(4) + 0.5
    for metric in (L2(), PseudoHuber(), Cauchy(), GemanMcClure(), Cauchy(elementwise=True)):
        assert consistency_loss(x, x.clone(), w, metric, 0.03).abs().max().item() == 0.0


def test_gradients_reach_student_only_and_target_pass_shares_dropout_masks():
    torch.manual_seed(0)
    f = ConsistencyFunction(DropNet(), PAPER)
    x0, n, si, sn, idx = _batch()
    student, target = td_pair(f, f, x0, n, si, sn)
    assert student.requires_grad and not target.requires_grad
    # Same masks: with sigma_next == sigma_i the two passes see identical inputs, so outputs must match.
    student2, target2 = td_pair(f, f, x0, n, si, si)
    torch.testing.assert_close(student2.detach(), target2)
    terms = _loss(f, f, x0, n, si, sn, idx)
    terms.loss.backward()
    assert f.backbone.conv.weight.grad is not None and f.backbone.conv.weight.grad.abs().sum() > 0


def test_target_receives_no_gradient_with_separate_target_module():
    torch.manual_seed(0)
    f, f_t = ConsistencyFunction(DropNet(p=0.0), PAPER), ConsistencyFunction(DropNet(p=0.0), PAPER)
    x0, n, si, sn, idx = _batch()
    _loss(f, f_t, x0, n, si, sn, idx).loss.backward()
    assert all(p.grad is None for p in f_t.parameters())
    assert all(p.grad is not None for p in f.parameters())


def test_diffusion_mask_selects_low_noise_quarter():
    idx = torch.arange(10)
    assert diffusion_mask(idx, 11, 0.25).tolist() == [False] * 8 + [True] * 2  # floor(0.75*11) = 8
    assert diffusion_mask(torch.arange(640), 641, 0.25).sum().item() == 640 - 480
    assert diffusion_mask(idx, 11, 1.0).all()
    with pytest.raises(ValueError, match="ratio"):
        diffusion_mask(idx, 11, 1.5)


def test_diffusion_loss_closed_form_and_empty_selection():
    torch.manual_seed(0)
    s, x0 = torch.rand(6) + 0.01, torch.randn(6, 4, 2, 2)
    mask = torch.tensor([1, 0, 1, 0, 0, 1], dtype=torch.bool)
    expect = ((s**-2 + 4) * (s.new_ones(6, 1, 1, 1) * 0.3 + 0 * x0).flatten(1).square().mean(1))[mask].mean()
    got = diffusion_loss(x0 + 0.3, x0, s, mask, PAPER.sigma_data)
    assert got.item() == pytest.approx(expect.item(), rel=1e-6)
    empty = diffusion_loss(x0 + 0.3, x0, s, torch.zeros(6, dtype=torch.bool), PAPER.sigma_data)
    assert empty.item() == 0.0 and torch.isfinite(empty)


def test_composite_is_sum_of_terms():
    torch.manual_seed(0)
    f = ConsistencyFunction(DropNet(p=0.0), PAPER)
    nn.init.normal_(f.backbone.conv.weight, std=0.3)
    x0, n, si, sn, idx = _batch(16)
    t = _loss(f, f, x0, n, si, sn, idx, c=0.03, weight=5.0)
    assert t.loss.item() == pytest.approx(t.consistency.item() + 5.0 * t.diffusion.item(), rel=1e-6)
    off = _loss(f, f, x0, n, si, sn, idx, weight=0.0)
    assert off.diffusion.item() == 0.0 and off.loss.item() == pytest.approx(off.consistency.item())
    # batch of 1 in the high-noise region: empty diffusion tail, still a finite loss
    one = _loss(f, f, x0[:1], n[:1], si[:1] * 0 + 80.0, sn[:1] * 0 + 45.31, torch.tensor([0]))
    assert torch.isfinite(one.loss)


def test_loss_bad_input():
    f = ConsistencyFunction(DropNet(p=0.0), PAPER)
    x0, n, si, sn, idx = _batch()
    with pytest.raises(ValueError, match="shape mismatch: x0"):
        _loss(f, f, x0, n[:, :2], si, sn, idx)
    bad = x0.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="x0"):
        _loss(f, f, bad, n, si, sn, idx)
    with pytest.raises(ValueError, match="shape mismatch: student"):
        consistency_loss(x0, x0[:2], torch.ones(8), Cauchy(), 0.1)
    with pytest.raises(LctError, match="method.diffusion.weight"):
        LowNoiseDiffusion(weight=-1.0)
    with pytest.raises(LctError, match="method.diffusion.ratio"):
        LowNoiseDiffusion(ratio=1.5)


def test_diffusion_loss_host_denominator_matches_the_device_count():
    """A host-side denominator (the data-parallel path, now also the objective's) gives the same value."""
    torch.manual_seed(1)
    s, x0 = torch.rand(6) + 0.01, torch.randn(6, 4, 2, 2)
    mask = torch.tensor([1, 0, 1, 0, 0, 1], dtype=torch.bool)
    counted = diffusion_loss(x0 + 0.3, x0, s, mask, PAPER.sigma_data)
    assert torch.equal(diffusion_loss(x0 + 0.3, x0, s, mask, PAPER.sigma_data, denominator=3.0), counted)
    assert diffusion_loss(x0 + 0.3, x0, s, mask * False, PAPER.sigma_data, denominator=0.0).item() == 0.0


def test_hot_path_reads_no_device_values():
    """On an accelerator every read of a tensor makes the host wait: the loss path reads CPU tensors only.
    The meta device stands in for one here (reading a meta tensor raises)."""
    nan = torch.full((4, 3), float("nan"), device="meta")
    check_finite_on_host("x0", nan)  # a device tensor: left unread
    with pytest.raises(NonFiniteError, match="x0"):
        check_finite_on_host("x0", torch.full((4, 3), float("nan")))
    d = torch.zeros(4, 3, device="meta")
    for metric in (Cauchy(), PseudoHuber(), GemanMcClure(), L2()):
        assert metric(d, 0.03).device.type == "meta"  # c > 0 checked on the host, c not copied to the device
    with pytest.raises(ValueError, match="c must be > 0"):
        Cauchy()(d, 0.0)
    lam = ict_weight(torch.ones(4, device="meta"), torch.ones(4, device="meta"))  # the objective validated the grid
    assert lam.device.type == "meta"
    s = torch.tensor([2.0, 1.0])
    with pytest.raises(ValueError, match="sigma_i > sigma_next"):
        ict_weight(s[1:], s[:-1])


def test_nonfinite_culprit_names_the_first_bad_input():
    ok, bad = torch.zeros(3), torch.tensor([0.0, float("inf"), 1.0])
    assert nonfinite_culprit(x0=ok, noise=bad, network_output=bad) == "noise contains non-finite values (NaN or Inf)"
    assert nonfinite_culprit(x0=ok, noise=ok) == "the loss is not finite"
