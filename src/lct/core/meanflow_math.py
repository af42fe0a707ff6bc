"""MeanFlow's math (Geng et al. 2025, "Mean Flows for One-step Generative Modeling", arXiv 2505.13447).

A network u_theta(z, r, t) learns the average velocity u(z_t, r, t) = 1/(t - r) int_r^t v(z_s, s) ds of the flow
z_t = (1 - t) x + t eps (t = 0 data, t = 1 noise) through the MeanFlow identity (paper §3)

    u(z_t, r, t) = v(z_t, t) - (t - r) d/dt u(z_t, r, t),    d/dt u = v d_z u + d_t u,

whose right side is one JVP of u_theta along the tangent (v, 0, 1) of (z, r, t). Sampling is
x = eps - u(eps, 0, 1) in one evaluation. docs/method.md ("MeanFlow") maps each equation to the code here.

Data scale: lct's latents have per-element std sigma_data (0.5); the paper's VAE latents have about unit std
against eps ~ N(0, I), and its constants (the time distribution, c) are set there. So the flow runs on
x = x0 / sigma_data with unit noise, and samples come back multiplied by sigma_data.

The training objective and the registry entry are lct.core.meanflow's.
"""

from __future__ import annotations

import inspect

import torch
from torch import nn

from lct.errors import LctError

from .jvp import jvp
from .noise_levels import NoiseLevels

# The backbone's sinusoidal embeddings see t and t - r themselves, in [0, 1] (`method.meanflow.time_scale`
# multiplies them): d/dt of the embedding enters the JVP target, so its frequencies times the scale must stay
# small (at 1000 t a 2-D MeanFlow run is noisy where t learns: docs/method.md, "MeanFlow"). Checkpoints made
# before the key existed were trained at 1000 t.
TIME_SCALE = 1.0
TIME_SCALE_BEFORE_KEY = 1000.0
P_MEAN, P_STD = -0.4, 1.0  # paper Table 1: t and r each logit-normal, lognorm(-0.4, 1.0) the best FID
RATIO = 0.25  # paper Table 1: the fraction of pairs with r != t (the rest are flow matching, r = t)
ADAPTIVE_P, ADAPTIVE_C = 1.0, 1e-3  # adaptive weighting w = 1 / (||Delta||^2 + c)^p; p = 1 best (Table 1)
T_MID = 0.5  # the 2-NFE intermediate time without a sigma_mid (the evenly spaced 2-step grid)


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.to(like).view(-1, *([1] * (like.ndim - 1)))


def _times(v, like: torch.Tensor) -> torch.Tensor:
    """A time as a (B,) tensor in `like`'s dtype and device; a scalar is broadcast over the batch."""
    v = torch.as_tensor(v, dtype=like.dtype, device=like.device).reshape(-1)
    return v.expand(like.shape[0]) if v.numel() == 1 else v


# ----------------------------------------------------------------------------
# The flow and its draws.


def interpolant(x: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """z_t = (1 - t) x + t eps; its conditional velocity dz/dt is eps - x."""
    t = _bcast(t, x)
    return (1 - t) * x + t * eps


def logit_normal(n: int, p_mean: float, p_std: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n,) times sigmoid(p_mean + p_std z), z ~ N(0, 1), on the generator's device."""
    device = generator.device if generator is not None else None
    return torch.sigmoid(p_mean + p_std * torch.randn(n, generator=generator, device=device))


def sample_times(
    n: int,
    generator: torch.Generator | None = None,
    p_mean: float = P_MEAN,
    p_std: float = P_STD,
    ratio: float = RATIO,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(r, t), each (n,), r <= t: two logit-normal draws ordered, then r = t except for a fraction `ratio`."""
    a, b = logit_normal(n, p_mean, p_std, generator), logit_normal(n, p_mean, p_std, generator)
    t, r = torch.maximum(a, b), torch.minimum(a, b)
    device = generator.device if generator is not None else None
    keep = torch.rand(n, generator=generator, device=device) < ratio  # these pairs keep r != t
    return torch.where(keep, r, t), t


# ----------------------------------------------------------------------------
# The network of (z, r, t) and the target through one JVP.


def check_extra_time(backbone: nn.Module) -> None:
    """LctError unless `backbone` takes the second time input MeanFlow feeds it (lct.nn.registry.Backbone)."""
    takes = "c_extra" in inspect.signature(backbone.forward).parameters
    if not takes or getattr(backbone, "extra_time", True) is False:
        raise LctError(
            f"method.kind=meanflow needs a backbone with a second time input, and {type(backbone).__name__} was "
            "built without one: set backbone.extra_time=true (conf/experiment/meanflow.yaml does), or give your "
            "backbone forward(x, c_noise, c_extra=None) (lct.nn.registry.Backbone)"
        )


class MeanFlowNet(nn.Module):
    """u_theta(z, r, t) = F_theta(z, s t, s (t - r)), s = time_scale: the paper's best embedding of the times,
    (t, t - r)."""

    def __init__(self, backbone: nn.Module, levels: NoiseLevels | None = None, time_scale: float = TIME_SCALE):
        super().__init__()
        check_extra_time(backbone)
        if not float(time_scale) > 0:
            raise LctError(f"method.meanflow.time_scale must be > 0, got {time_scale} (conf/experiment/meanflow.yaml)")
        self.backbone = backbone  # the attribute name of every lct student: state dicts share "backbone.*"
        self.time_scale = float(time_scale)

    def forward(self, z: torch.Tensor, r, t=None) -> torch.Tensor:
        """u(z, r, t); called as model(z, t), as lct probes every student, it is u(z, t, t) = v(z, t)."""
        r, t = _times(r, z), _times(r if t is None else t, z)
        return self.backbone(z, self.time_scale * t, self.time_scale * (t - r))


def u_and_dudt(u, z: torch.Tensor, r: torch.Tensor, t: torch.Tensor, v: torch.Tensor):
    """(u(z, r, t), d/dt u = v d_z u + d_t u): one forward-mode JVP along the tangent (v, 0, 1) of (z, r, t).

    In fp32 whatever the autocast state: under CPU bf16 autocast the UNet's convolutions refuse the dual inputs."""
    with torch.autocast(z.device.type, enabled=False):
        return jvp(u, (z, r, t), (v, torch.zeros_like(r), torch.ones_like(t)))


def u_and_dudt_where_needed(u, z: torch.Tensor, r: torch.Tensor, t: torch.Tensor, v: torch.Tensor):
    """(u(z, r, t), d/dt u) for the loss: u from one plain forward (the gradient's path) and d/dt u, the target's
    stop-gradient tangent, from a JVP without gradient on the rows where r != t only. An r = t row's target is v
    whatever d/dt u is (its factor t - r is 0): its tangent is returned as zero. The same loss and gradient as
    `u_and_dudt` to rounding for a backbone that treats samples independently (every lct backbone: GroupNorm,
    NsLN and LayerNorm are per sample), at about 0.7x its cost with the paper's 25% of r != t pairs
    (benchmarks/README.md, "MeanFlow's step"). With active dropout the one-JVP path `u_and_dudt` is taken, so
    that the target's tangent sees the prediction's dropout mask. In fp32 whatever the autocast state."""
    if any(isinstance(m, nn.Dropout) and m.p > 0 for m in u.modules()) and u.training:
        return u_and_dudt(u, z, r, t, v)
    idx = (r != t).nonzero().squeeze(1)
    dudt = torch.zeros_like(z)
    if idx.numel():
        with torch.no_grad():
            dudt[idx] = u_and_dudt(u, z[idx], r[idx], t[idx], v[idx])[1]
    with torch.autocast(z.device.type, enabled=False):  # fp32 as the JVP's rows (see u_and_dudt)
        return u(z, r, t), dudt


def meanflow_target(v: torch.Tensor, dudt: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """u_tgt = v - (t - r) d/dt u, without gradient (the paper's stop-gradient on the target)."""
    return (v - _bcast(t - r, v) * dudt).detach()


def adaptive_weight(sq_norm: torch.Tensor, p: float = ADAPTIVE_P, c: float = ADAPTIVE_C) -> torch.Tensor:
    """w = 1 / (||Delta||^2 + c)^p, without gradient (the paper's adaptive loss weighting)."""
    return (sq_norm.detach() + c).pow(-p)


def meanflow_loss(
    u: torch.Tensor, u_tgt: torch.Tensor, metric=None, c=None, p: float = ADAPTIVE_P, c_adaptive: float = ADAPTIVE_C
) -> torch.Tensor:
    """Per-sample loss (B,) on Delta = u - sg(u_tgt): sg(w) ||Delta||^2 (sum over the D elements), or, with a
    robust `metric` (lct.core.metrics), rho_c(mean_D Delta^2) in its place."""
    delta = u - u_tgt.detach()
    if metric is not None:
        return metric(delta, c)
    sq = delta.flatten(1).square().sum(1)
    return adaptive_weight(sq, p, c_adaptive) * sq


# ----------------------------------------------------------------------------
# Samplers.


def meanflow_times(nfe: int, t_mid: float | None = None) -> list[float]:
    """The times 1 = t_0 > ... > t_nfe = 0 of `nfe` evaluations: evenly spaced, or [1, t_mid, 0] for 2 NFE."""
    if not isinstance(nfe, int) or nfe < 1:
        raise LctError(f"--nfe for a MeanFlow checkpoint must be an integer >= 1, got {nfe!r}")
    if t_mid is not None and nfe == 2:
        if not 0.0 < float(t_mid) < 1.0:
            raise LctError(f"the 2-NFE intermediate time of MeanFlow must lie in (0, 1), got {t_mid}")
        return [1.0, float(t_mid), 0.0]
    return [1.0 - k / nfe for k in range(nfe + 1)]


@torch.no_grad()
def meanflow_sample(u, noise: torch.Tensor, times=(1.0, 0.0)) -> torch.Tensor:
    """z_r = z_t - (t - r) u(z_t, r, t) over descending `times` from z = noise (1 NFE: x = eps - u(eps, 0, 1))."""
    times = [float(s) for s in times]
    if len(times) < 2 or any(a <= b for a, b in zip(times, times[1:])) or times[0] > 1 or times[-1] < 0:
        raise ValueError(f"MeanFlow's sampling times must descend strictly within [0, 1], got {times}")
    z = noise
    for t, r in zip(times[:-1], times[1:]):
        z = z - (t - r) * u(z, r, t)
    return z


def onestep_sample(u, noise: torch.Tensor) -> torch.Tensor:
    """1 NFE: x = eps - u(eps, 0, 1)."""
    return meanflow_sample(u, noise, (1.0, 0.0))


def twostep_sample(u, noise: torch.Tensor, t_mid: float = T_MID) -> torch.Tensor:
    """2 NFE through the intermediate time t_mid."""
    return meanflow_sample(u, noise, meanflow_times(2, t_mid))
