"""MeanFlow (Geng et al. 2025, arXiv 2505.13447) as an lct kind: MeanFlowObjective, the training step behind
ConsistencyObjective's interface (step / observe / after_optimizer_step, generator state in the state dict), so
the same training module, EMA, checkpoints, resume and DDP serve it, and the registry entry method.kind=meanflow.
The flow, the draws, the network, the JVP target, the loss and the samplers are lct.core.meanflow_math;
docs/method.md §9 maps each equation to its code.

Data parallel as lct.core.objective: every rank draws the global batch's (r, t) and noise from identically
seeded generators and keeps its slice, so a W-process step equals the single-process step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lct.errors import LctError

from ._checks import NonFiniteError
from .coupling import NoCoupling
from .kinds import BuildContext, Kind, register_kind
from .meanflow_math import (
    ADAPTIVE_C,
    ADAPTIVE_P,
    P_MEAN,
    P_STD,
    RATIO,
    TIME_SCALE_BEFORE_KEY,
    MeanFlowNet,
    interpolant,
    meanflow_loss,
    meanflow_sample,
    meanflow_target,
    meanflow_times,
    sample_times,
    u_and_dudt_where_needed,
)
from .noise_levels import NoiseLevels
from .objective import DeviceGenerator, nonfinite_culprit, to_device


@dataclass
class MeanFlowTerms:
    """One step's loss: the batch mean `loss` of the per-sample losses, and what the loop logs about it."""

    loss: torch.Tensor  # ()
    per_sample: torch.Tensor  # (B,), detached
    residual: torch.Tensor  # (B, ...) Delta = u - u_tgt, detached
    r: torch.Tensor  # (B,)
    t: torch.Tensor  # (B,)


@dataclass
class MeanFlowStepOutput:
    terms: MeanFlowTerms | None
    c: float | None = None  # the robust metric's scale (None: the adaptive weighting)
    error: str | None = None  # why the step is not finite (a NaN/Inf in data, noise or loss)

    @property
    def finite(self) -> bool:
        return self.error is None


def meanflow_terms(u, x, eps, r, t, metric=None, c=None, p=ADAPTIVE_P, c_adaptive=ADAPTIVE_C) -> MeanFlowTerms:
    """The loss of one batch: x data and eps its (coupled) unit noise, (r, t) its times."""
    z, v = interpolant(x, eps, t), eps - x
    u_pred, dudt = u_and_dudt_where_needed(u, z, r, t, v)
    u_tgt = meanflow_target(v, dudt, r, t)
    per_sample = meanflow_loss(u_pred, u_tgt, metric, c, p, c_adaptive)
    residual = (u_pred - u_tgt).detach()
    return MeanFlowTerms(per_sample.mean(), per_sample.detach(), residual, r, t)


class MeanFlowObjective(nn.Module):
    """MeanFlow training: (r, t) from sample_times, unit noise (coupled to x by `coupling`), the loss through one
    JVP; `metric` and `c` (a CSchedule) replace the adaptive weighting when given."""

    kind = "meanflow"

    def __init__(
        self,
        levels: NoiseLevels,
        coupling=None,
        metric=None,
        c=None,
        p_mean: float = P_MEAN,
        p_std: float = P_STD,
        ratio: float = RATIO,
        adaptive_p: float = ADAPTIVE_P,
        adaptive_c: float = ADAPTIVE_C,
        seed: int = 0,
    ):
        super().__init__()
        _check_options(p_std, ratio, adaptive_p, adaptive_c, metric, c)
        self.levels, self.coupling, self.metric, self.c = levels, coupling or NoCoupling(), metric, c
        self.p_mean, self.p_std, self.ratio = float(p_mean), float(p_std), float(ratio)
        self.adaptive_p, self.adaptive_c, self.seed = float(adaptive_p), float(adaptive_c), int(seed)
        self.gen_times = torch.Generator().manual_seed(self.seed)  # same on every rank: global draws
        self.gen_noise = DeviceGenerator(self.seed + 1)

    def step(self, student, x0: torch.Tensor, step: int, rank: int = 0, world: int = 1, gather=None):
        """The loss of global step `step` for this rank's batch x0 (b, C, H, W)."""
        b = x0.shape[0]
        sl = slice(rank * b, (rank + 1) * b)
        r_g, t_g = sample_times(b * world, self.gen_times, self.p_mean, self.p_std, self.ratio)
        noise_g = torch.randn((b * world, *x0.shape[1:]), generator=self.gen_noise.on(x0.device), device=x0.device)
        r, t = (to_device(v[sl], x0.device).to(x0.dtype) for v in (r_g, t_g))
        c = self.c(0, step) if self.metric is not None else None  # MeanFlow has no grid: N = 0
        x = x0 / self.levels.sigma_data  # unit-variance data, as the paper's latents
        try:
            eps = self.coupling(x, noise_g.to(x0.dtype), sl, self.gen_times, gather if world > 1 else None)
            terms = meanflow_terms(student, x, eps, r, t, self.metric, c, self.adaptive_p, self.adaptive_c)
        except NonFiniteError as err:
            return MeanFlowStepOutput(None, c, str(err))
        if not bool(torch.isfinite(terms.loss)):  # the step's one device read
            return MeanFlowStepOutput(None, c, nonfinite_culprit(x0=x0, noise=eps, network_output=terms.residual))
        return MeanFlowStepOutput(terms, c)

    def observe(self, out: MeanFlowStepOutput) -> None:
        """After a step that was finite on every rank: let a c schedule see the residual."""
        if self.c is not None:
            self.c.observe(out.terms.residual)

    def after_optimizer_step(self, student: nn.Module) -> None:
        """No target network: the target is the student's own JVP, without gradient."""

    def diagnostics(self, out: MeanFlowStepOutput) -> dict:
        """Rows logged every log_every steps beside train/loss."""
        terms = out.terms
        rows = {
            "train/meanflow_mse": terms.residual.square().mean(),  # per element, in unit-variance data units
            "train/r_neq_t": (terms.r < terms.t).float().mean(),
            "train/t_median": terms.t.median(),
        }
        return rows | ({"train/c": float(out.c)} if out.c is not None else {})

    def get_extra_state(self) -> dict:
        c = self.c.state_dict() if self.c is not None else {}
        return {"gen_times": self.gen_times.get_state(), "gen_noise": self.gen_noise.get_state(), "c": c}

    def set_extra_state(self, state: dict) -> None:
        self.gen_times.set_state(state["gen_times"])
        self.gen_noise.set_state(state["gen_noise"])
        if self.c is not None:
            self.c.load_state_dict(state["c"])


def _check_options(p_std, ratio, adaptive_p, adaptive_c, metric, c) -> None:
    """LctError naming the `method.meanflow` key (or `method.c`) whose value cannot work."""
    if not p_std > 0:
        raise LctError(f"method.meanflow.p_std must be > 0, got {p_std}")
    if not 0.0 <= ratio <= 1.0:
        raise LctError(f"method.meanflow.ratio (the fraction of r != t) must be in [0, 1], got {ratio}")
    if not adaptive_p >= 0 or not adaptive_c > 0:
        raise LctError(f"method.meanflow needs adaptive_p >= 0 and adaptive_c > 0, got {adaptive_p}, {adaptive_c}")
    if metric is not None and c is None:
        raise LctError("a MeanFlow run with method.metric needs method.c (a c_schedule): e.g. c_schedule=ict")
    if type(c).__name__ == "AdaptiveC":
        raise LctError(
            "c_schedule=adaptive follows the consistency curriculum's N, which MeanFlow has not: "
            "use c_schedule=ict, constant or online with method.kind=meanflow"
        )


# ----------------------------------------------------------------------------
# The registry entry (lct.core.kinds): method.kind=meanflow, set by conf/experiment/meanflow.yaml.

OPTIONS = ("p_mean", "p_std", "ratio", "adaptive_p", "adaptive_c", "time_scale")


def meanflow_objective(student: nn.Module, ctx: BuildContext) -> MeanFlowObjective:
    """MeanFlowObjective from `method.meanflow` and the optional parts `method.{coupling,metric,c}`."""
    opts = ctx.options("meanflow", OPTIONS, "conf/experiment/meanflow.yaml")
    opts.pop("time_scale", None)  # the student's (MeanFlowNet)
    metric = ctx.part("metric") if ctx.method.get("metric") is not None else None
    c = None
    if metric is not None and ctx.method.get("c") is not None:
        c = ctx.part("c", _partial_=True)(dim=ctx.dim, total_steps=ctx.total_steps)
    coupling = ctx.part("coupling") if ctx.method.get("coupling") is not None else None
    return MeanFlowObjective(ctx.levels, coupling, metric, c, **opts, seed=ctx.seed)


def flow_time(sigma: float, sigma_data: float) -> float:
    """The flow time t whose z_t has the noise-to-signal ratio of lct's noise level sigma: t / (1 - t) = sigma /
    sigma_data in unit-variance data, so t = sigma / (sigma + sigma_data)."""
    return float(sigma) / (float(sigma) + sigma_data)


def kind_times(levels: NoiseLevels, nfe: int, sigma_mid: float | None = None) -> list[float]:
    """The sampling times of `nfe` evaluations; a 2-NFE sigma_mid (the consistency model's intermediate noise
    level, NoiseLevels.sigma_mid) becomes the flow time of the same noise-to-signal ratio."""
    return meanflow_times(nfe, None if sigma_mid is None else flow_time(sigma_mid, levels.sigma_data))


def kind_sample(model, noise: torch.Tensor, times, levels: NoiseLevels, generator=None) -> torch.Tensor:
    """meanflow_sample from unit noise, returned in lct's latent scale (times sigma_data); draws nothing."""
    return levels.sigma_data * meanflow_sample(model, noise, times)


MEANFLOW = register_kind(
    Kind(
        name="meanflow",
        student=MeanFlowNet,
        objective=meanflow_objective,
        sample=kind_sample,
        nfe_times=kind_times,
        default_nfe=(1, 2),  # the paper's 1 and 2 NFE
        summary="MeanFlow, Geng et al. 2025: experiment=meanflow",
        student_keys={"time_scale": TIME_SCALE_BEFORE_KEY},
    )
)
