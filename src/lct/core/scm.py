"""sCM: continuous-time consistency training in the TrigFlow parametrisation (Lu & Song 2024, "Simplifying,
Stabilizing and Scaling Continuous-Time Consistency Models", arXiv 2410.11081), as lct's `method.kind=scm`.

TrigFlow (§2.2): x_t = cos t x0 + sin t z, z ~ N(0, sigma_d^2 I), t in [0, pi/2];
    f_theta(x_t, t) = cos t x_t - sin t sigma_d F_theta(x_t / sigma_d, c_noise(t)).
Training (§3, §4.2): with the tangent g = cos t df_theta^-/dt (one JVP through the backbone), warm-up r and
normalisation g / (||g|| + c),
    L = mean_B[ e^{w_phi(t)} rho(F_theta - F_theta^- - g) - w_phi(t) ],  rho(d) = ||d||^2 / D (the paper),
t from the proposal tan t = e^tau / sigma_d, tau ~ N(P_mean, P_std^2). docs/method.md, "sCM", writes each
equation beside the function and config key that implement it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lct.errors import LctError

from ._checks import NonFiniteError, check_finite
from .c_schedules import ict_default_c
from .jvp import jvp
from .kinds import BuildContext, Kind, register_kind
from .metrics import L2
from .noise_levels import NoiseLevels
from .objective import DeviceGenerator, nonfinite_culprit
from .scm_sampling import check_times, scm_sample, scm_times  # noqa: F401  (check_times: re-exported)
from .time_embedding import sinusoidal_embedding

# Lu & Song 2024: consistency-training constants. P_mean, P_std: App. G's CIFAR-10 sCT proposal (ImageNet 64
# sCT uses -0.8, 1.6); tangent normalisation c = 0.1 and warm-up over 10k iterations: §4.2; t_mid = 1.1: the
# 2-step sampler's intermediate time, §5.
P_MEAN, P_STD = -1.0, 1.4
TANGENT_C = 0.1
WARMUP_STEPS = 10_000
T_MID = 1.1
# c_noise(t) = t (§4.1, identity time transformation): the backbone's sinusoidal embedding sees t itself
# (`method.scm.time_scale` multiplies it). §4.1's point: d/dt of the embedding enters the tangent, so its
# frequencies times the scale must stay small; a 2-D sCT run at 1000 t diverges where t learns
# (docs/method.md, "sCM"). Checkpoints made before the key existed were trained at 1000 t.
TIME_SCALE = 1.0
TIME_SCALE_BEFORE_KEY = 1000.0
WEIGHT_FEATURES = 128  # sinusoidal features of c_noise(t) under w_phi's linear layer


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.to(like).view(-1, *([1] * (like.ndim - 1)))


class AdaptiveWeight(nn.Module):
    """w_phi(t): one linear layer on sinusoidal features of c_noise(t) (§4.2), zero-initialised (w = 0: weight 1)."""

    def __init__(self, features: int = WEIGHT_FEATURES, time_scale: float = TIME_SCALE):
        super().__init__()
        self.features, self.time_scale = int(features), float(time_scale)
        self.linear = nn.Linear(self.features, 1)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        feats = sinusoidal_embedding(self.time_scale * t, self.features)  # [cos, sin] of c_noise(t)
        return self.linear(feats.to(self.linear.weight.dtype)).squeeze(1)  # (B,)


class TrigFlowFunction(nn.Module):
    """f_theta(x_t, t) = cos t x_t - sin t sigma_d F_theta(x_t / sigma_d, c_noise(t)), c_noise(t) = time_scale * t,
    with w_phi riding along (trained with the student; unused when sampling)."""

    def __init__(self, backbone: nn.Module, levels: NoiseLevels, time_scale: float = TIME_SCALE):
        super().__init__()
        if not float(time_scale) > 0:
            raise LctError(f"method.scm.time_scale must be > 0, got {time_scale} (conf/experiment/scm.yaml)")
        self.backbone, self.sigma_data = backbone, float(levels.sigma_data)
        self.time_scale = float(time_scale)
        self.weighting = AdaptiveWeight(time_scale=self.time_scale)

    def times(self, t, x: torch.Tensor) -> torch.Tensor:
        """t as a (B,) tensor in x's dtype and device; a number or one-element tensor is broadcast."""
        t = torch.as_tensor(t, dtype=x.dtype, device=x.device).reshape(-1)
        return t.expand(x.shape[0]) if t.numel() == 1 else t

    def raw(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """F_theta(x_t / sigma_d, c_noise(t)), (B, C, H, W); t (B,)."""
        return self.backbone(x_t / self.sigma_data, self.time_scale * t)

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        # Not range-checked: the samplers check their times; training draws t inside (0, pi/2).
        t = self.times(t, x)
        cos, sin = _bcast(torch.cos(t), x), _bcast(torch.sin(t), x)
        return cos * x - sin * self.sigma_data * self.raw(x, t)


# ----------------------------------------------------------------------------
# The loss (§4.2), split so that tests can plug in exact F and dF/dt.


def proposal_times(tau: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """t = arctan(e^tau / sigma_d): EDM's lognormal sigma = e^tau mapped to TrigFlow time."""
    return torch.atan(torch.exp(tau) / sigma_data)


def scm_tangent(
    F_minus, dF_dt, x_t, dx_dt, t, sigma_data: float, r: float = 1.0, c: float = TANGENT_C
) -> tuple[torch.Tensor, torch.Tensor]:
    """(g normalised, ||g|| per sample): g = -cos^2 t (sigma_d F^- - dx_t/dt) - r cos t sin t (x_t + sigma_d dF^-/dt),
    i.e. cos t df^-/dt with the warm-up factor r on its second term, then g / (||g|| + c) (c = 0 skips it)."""
    cos, sin = _bcast(torch.cos(t), x_t), _bcast(torch.sin(t), x_t)
    g = -(cos**2) * (sigma_data * F_minus - dx_dt) - r * cos * sin * (x_t + sigma_data * dF_dt)
    norm = torch.linalg.vector_norm(g.flatten(1), dim=1)  # (B,)
    return (g / _bcast(norm + c, g) if c > 0 else g), norm


def scm_loss(F, F_minus, g, w, metric=None, c=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(per-sample e^w rho(F - F^- - g) - w, the residual F - F^- - g); F^- and g never receive gradient.
    rho = ||d||^2 / D (metric None or L2); a robust metric (lct.core.metrics) gives rho_c(||d||^2 / D)."""
    d = F - F_minus.detach() - g.detach()
    rho = d.flatten(1).square().mean(1) if metric is None else metric(d, c)
    return torch.exp(w) * rho - w, d


class SCMObjective(nn.Module):
    """sCT's per-step loss behind ConsistencyObjective's interface (step / observe / after_optimizer_step /
    diagnostics; generator state in the state dict). Data parallel as the other objectives: every rank draws
    the global batch's tau and noise from one identically seeded generator and keeps its slice."""

    kind = "scm"

    def __init__(
        self,
        levels: NoiseLevels,
        coupling=None,
        metric=None,
        c: float | None = None,
        p_mean: float = P_MEAN,
        p_std: float = P_STD,
        tangent_c: float = TANGENT_C,
        warmup_steps: int = WARMUP_STEPS,
        seed: int = 0,
    ):
        super().__init__()
        if not p_std > 0 or tangent_c < 0 or warmup_steps < 0:
            raise LctError(
                f"method.scm needs p_std > 0, tangent_c >= 0 and warmup_steps >= 0; got p_std={p_std}, "
                f"tangent_c={tangent_c}, warmup_steps={warmup_steps} (conf/experiment/scm.yaml)"
            )
        # metric=l2 is the paper's mean square, per sample or element-wise alike: no scale c to check.
        self.metric = None if isinstance(metric, L2) else metric
        self.levels, self.coupling = levels, coupling
        self.c = None if self.metric is None else float(c)
        self.p_mean, self.p_std, self.tangent_c = float(p_mean), float(p_std), float(tangent_c)
        self.warmup_steps, self.seed = int(warmup_steps), int(seed)
        self.gen = DeviceGenerator(self.seed + 1)
        self.gen_host = torch.Generator().manual_seed(self.seed)  # the coupling's draws (sinkhorn), as iCT's

    def warmup(self, step: int) -> float:
        """r = min(1, k / warmup_steps): the tangent's second term fades in (§4.2); 1 without warm-up."""
        return 1.0 if self.warmup_steps == 0 else min(1.0, step / self.warmup_steps)

    def draw(self, shape: tuple, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The global batch's times t (B,) and unit noise (B, C, H, W), identical on every rank."""
        gen = self.gen.on(device)
        tau = self.p_mean + self.p_std * torch.randn(shape[0], generator=gen, device=device)
        return proposal_times(tau, self.levels.sigma_data), torch.randn(shape, generator=gen, device=device)

    def step(self, student, x0: torch.Tensor, step: int, rank: int = 0, world: int = 1, gather=None):
        """The loss of global step `step` for this rank's batch x0 (b, C, H, W)."""
        b, sd = x0.shape[0], self.levels.sigma_data
        sl = slice(rank * b, (rank + 1) * b)
        t_g, noise_g = self.draw((b * world, *x0.shape[1:]), x0.device)
        t, r = t_g[sl].to(x0.dtype), self.warmup(step)
        try:
            noise = noise_g[sl] if self.coupling is None else self.coupling(x0, noise_g, sl, self.gen_host, gather)
            terms = self.terms(student, x0, sd * noise.to(x0.dtype), t, r)
        except NonFiniteError as err:
            return SCMStepOutput(None, r, str(err))
        if not bool(torch.isfinite(terms.loss)):  # the step's one device read
            return SCMStepOutput(None, r, nonfinite_culprit(x0=x0, noise=noise, residual=terms.residual))
        return SCMStepOutput(terms, r)

    def terms(self, student, x0: torch.Tensor, z: torch.Tensor, t: torch.Tensor, r: float) -> SCMTerms:
        """The loss at x_t = cos t x0 + sin t z; the JVP's and the student's passes see the same random draws."""
        if x0.device.type == "cpu":
            check_finite("x0", x0)
        cos, sin = _bcast(torch.cos(t), x0), _bcast(torch.sin(t), x0)
        x_t, dx_dt = cos * x0 + sin * z, cos * z - sin * x0
        devices = [x0.device.index or 0] if x0.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            F_minus, dF_dt = jvp(student.raw, (x_t, t), (dx_dt, torch.ones_like(t)))
        F = student.raw(x_t, t)
        g, g_norm = scm_tangent(F_minus, dF_dt, x_t, dx_dt, t, self.levels.sigma_data, r, self.tangent_c)
        w = student.weighting(t)
        per_sample, d = scm_loss(F, F_minus, g, w, self.metric, self.c)
        return SCMTerms(per_sample.mean(), d.detach(), t, w.detach(), g_norm)

    def observe(self, out) -> None:
        """Nothing adapts to the loss (w_phi is trained by the optimizer with the student)."""

    def after_optimizer_step(self, student: nn.Module) -> None:
        """The teacher is the student under stop-gradient: nothing to update."""

    def diagnostics(self, out) -> dict:
        """Rows logged every log_every steps beside train/loss."""
        terms = out.terms
        return {
            "train/t_median": terms.t.median(),
            "train/warmup_r": float(out.r),
            "train/tangent_norm": terms.tangent_norm.mean(),
            "train/w_mean": terms.w.mean(),
            "train/residual_rms": terms.residual.square().mean().sqrt(),
        }

    def get_extra_state(self) -> dict:
        return {"gen": self.gen.get_state(), "gen_host": self.gen_host.get_state()}

    def set_extra_state(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
        self.gen_host.set_state(state["gen_host"])


@dataclass
class SCMTerms:
    """One step's loss and what it used (all but `loss` detached)."""

    loss: torch.Tensor  # ()
    residual: torch.Tensor  # (B, C, H, W): F - F^- - g
    t: torch.Tensor  # (B,)
    w: torch.Tensor  # (B,): w_phi(t)
    tangent_norm: torch.Tensor  # (B,): ||g|| before normalisation


@dataclass
class SCMStepOutput:
    """`terms` None when the step must be skipped (`error` says why); r the step's warm-up factor."""

    terms: SCMTerms | None
    r: float
    error: str | None = None

    @property
    def finite(self) -> bool:
        return self.error is None


# ----------------------------------------------------------------------------
# The registry entry (lct.core.kinds).

SCM_KEYS = ("p_mean", "p_std", "tangent_c", "warmup_steps", "c", "time_scale")


def scm_objective(student, ctx: BuildContext) -> SCMObjective:
    """SCMObjective from `method.scm` (SCM_KEYS) plus the optional parts `method.coupling` and `method.metric`."""
    opts = ctx.options("scm", SCM_KEYS, "conf/experiment/scm.yaml")
    c = opts.pop("c", None)
    opts.pop("time_scale", None)  # the student's (TrigFlowFunction)
    has = lambda key: ctx.method.get(key) is not None  # noqa: E731
    metric = ctx.part("metric") if has("metric") else None
    if c is None:  # iCT's 0.00054 sqrt(D) on the per-element mean, as lct's ConstantC
        c = ict_default_c(ctx.dim)
    return SCMObjective(
        ctx.levels,
        coupling=ctx.part("coupling") if has("coupling") else None,
        metric=metric,
        c=c,
        seed=ctx.seed,
        **opts,
    )


def _scm_sample(model, noise, times, levels: NoiseLevels, generator=None):
    return scm_sample(model, noise, times, levels.sigma_data, generator)


SCM = register_kind(
    Kind(
        name="scm",
        student=TrigFlowFunction,
        objective=scm_objective,
        sample=_scm_sample,
        nfe_times=scm_times,
        default_nfe=(1, 2),
        summary="continuous-time consistency training: experiment=scm",
        student_keys={"time_scale": TIME_SCALE_BEFORE_KEY},
    )
)
