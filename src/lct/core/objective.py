"""ConsistencyObjective: the whole per-step method of the paper (§4; docs/method.md) in one object;
EDMObjective, the diffusion baseline's step, behind the same interface.

N(k) from the curriculum -> Karras grid -> index draw i ~ p(i) -> unit noise -> coupling -> c(N, k)
-> L = L_CT + w L_diff. The training loop (Lightning or a plain loop) calls `step`, checks `finite`,
back-propagates `terms.loss`, and after a successful optimizer step calls `observe` and
`after_optimizer_step`. The parts follow lct.core.protocols.

Data parallel: every rank draws the *global* batch's indices and noise from identically seeded
generators and keeps its own slice, so a W-process step equals the single-process step on the same
global batch; a global OT coupling gathers x0 through the `gather` callable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from lct.errors import LctError

from ._checks import NonFiniteError
from .diagnostics import residual_stats
from .edm import EDM_P_MEAN, EDM_P_STD, edm_loss, lognormal_sigmas
from .losses import LossTerms, LowNoiseDiffusion, lct_loss
from .noise_levels import NoiseLevels
from .schedules import sample_indices


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on `device`; to a GPU through pinned memory without waiting (a plain copy from pageable
    memory makes the host wait for the device's queue)."""
    if device.type != "cuda" or x.device == device:
        return x.to(device)
    return x.pin_memory().to(device, non_blocking=True)


def nonfinite_culprit(**tensors: torch.Tensor) -> str:
    """Why a step's loss is not finite: the first of `tensors` holding NaN/Inf. Only on that rare path are the
    tensors read (on a device, each read waits for it); the hot path reads just the loss."""
    for name, t in tensors.items():
        if not bool(torch.isfinite(t).all()):
            return f"{name} contains non-finite values (NaN or Inf)"
    return "the loss is not finite"


class DeviceGenerator:
    """A seeded torch.Generator made on the device it is first asked for (the data's device is known only
    at the first step); a state restored from a checkpoint before then is applied when it is made."""

    def __init__(self, seed: int):
        self.seed = int(seed)
        self._gen: torch.Generator | None = None
        self._pending: torch.Tensor | None = None

    def on(self, device: torch.device) -> torch.Generator:
        if self._gen is None or self._gen.device != device:
            self._gen = torch.Generator(device).manual_seed(self.seed)
            if self._pending is not None:
                self._gen.set_state(self._pending.cpu())
                self._pending = None
        return self._gen

    def get_state(self) -> torch.Tensor | None:
        return self._gen.get_state() if self._gen is not None else self._pending

    def set_state(self, state: torch.Tensor | None) -> None:
        self._gen, self._pending = None, state


@dataclass
class StepOutput:
    """One step's result: the loss terms (None when the step must be skipped) and what it used."""

    terms: LossTerms | None
    n_scales: int
    c: float
    error: str | None = None  # why the step is not finite (a NaN/Inf in data, noise or loss)

    @property
    def finite(self) -> bool:
        return self.error is None


class ConsistencyObjective(nn.Module):
    """The per-step method; an nn.Module so that a teacher network and the state travel with the model."""

    kind = "consistency"

    def __init__(
        self,
        levels: NoiseLevels,
        metric,
        c,
        coupling,
        noise,
        teacher: nn.Module,
        diffusion: LowNoiseDiffusion,
        curriculum,
        total_steps: int,
        seed: int = 0,
    ):
        super().__init__()
        self.levels, self.metric, self.c, self.coupling, self.sampler = levels, metric, c, coupling, noise
        self.teacher, self.diffusion, self.curriculum = teacher, diffusion, curriculum
        self.total_steps, self.seed = int(total_steps), int(seed)
        self._grids: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._device_grids: dict[tuple, torch.Tensor] = {}  # (N, device, dtype) -> the grid, copied once
        self.gen_idx = torch.Generator().manual_seed(self.seed)  # same on every rank: global draws
        self.gen_noise = DeviceGenerator(self.seed + 1)

    def grid(self, n_scales: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(sigmas float64 CPU, index probabilities) of the N-point grid, validated once on the host: strictly
        decreasing also in float32, so that every lambda = 1/(sigma_i - sigma_{i+1}) is finite and positive."""
        if n_scales not in self._grids:
            sigmas = self.levels.karras(n_scales)
            s32 = sigmas.float()
            if not bool((s32[:-1] > s32[1:]).all()):
                raise LctError(
                    f"the {n_scales}-point noise grid is not strictly decreasing in float32 (sigma_min "
                    f"{self.levels.sigma_min}, sigma_max {self.levels.sigma_max}): lower the curriculum's N"
                )
            self._grids[n_scales] = sigmas, self.sampler.probs(sigmas)
        return self._grids[n_scales]

    def device_grid(self, n_scales: int, like: torch.Tensor) -> torch.Tensor:
        """The N-point grid in `like`'s dtype on its device, copied there once per N (not per step)."""
        key = (n_scales, like.device, like.dtype)
        if key not in self._device_grids:
            self._device_grids[key] = self.grid(n_scales)[0].to(like)
        return self._device_grids[key]

    def n_scales(self, step: int) -> int:
        return self.curriculum(step, self.total_steps)

    def draw(self, probs: torch.Tensor, shape: tuple, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """One step's global draws, identical on every rank: grid indices (from `probs`) and unit noise."""
        idx = sample_indices(probs, shape[0], self.gen_idx)
        return idx, torch.randn(shape, generator=self.gen_noise.on(device), device=device)

    def step(
        self,
        student: nn.Module,
        x0: torch.Tensor,
        step: int,
        rank: int = 0,
        world: int = 1,
        gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> StepOutput:
        """The loss terms of global step `step` for this rank's batch x0 (b, C, H, W)."""
        n = self.n_scales(step)
        b = x0.shape[0]
        sl = slice(rank * b, (rank + 1) * b)
        idx_g, noise_g = self.draw(self.grid(n)[1], (b * world, *x0.shape[1:]), x0.device)  # grid(n)[1]: p(i)
        tail = self.diffusion.mask(idx_g, n).sum().item() / world
        c = self.c(n, step)
        idx = to_device(idx_g[sl], x0.device)  # the step's one host-to-device copy; the grid is already there
        grid = self.device_grid(n, x0)
        try:
            noise = self.coupling(x0, noise_g, sl, self.gen_idx, gather if world > 1 else None)
            terms = lct_loss(
                student,
                self.teacher.target(student),
                x0,
                noise,
                sigma_i=grid[idx],
                sigma_next=grid[idx + 1],
                indices=idx,
                n_scales=n,
                metric=self.metric,
                c=c,
                diffusion=self.diffusion,
                sigma_data=self.levels.sigma_data,
                diffusion_denominator=tail,
            )
        except NonFiniteError as err:
            return StepOutput(None, n, c, str(err))
        if not bool(torch.isfinite(terms.loss)):  # the step's one device read: any NaN/Inf upstream lands here
            return StepOutput(None, n, c, nonfinite_culprit(x0=x0, noise=noise, network_output=terms.residual))
        return StepOutput(terms, n, c)

    def observe(self, out: StepOutput) -> None:
        """After a step that was finite on every rank: let the c schedule see the residual."""
        self.c.observe(out.terms.residual)

    def after_optimizer_step(self, student: nn.Module) -> None:
        self.teacher.update(student)

    def diagnostics(self, out: StepOutput) -> dict:
        """Rows logged every log_every steps beside train/loss: the terms, N, c and the TD residual's shape."""
        terms, stats = out.terms, residual_stats(out.terms.residual)
        return {
            "train/consistency": terms.consistency,
            "train/diffusion": terms.diffusion,
            "train/diffusion_fraction": terms.diffusion_fraction,
            "train/N": float(out.n_scales),
            "train/c": float(out.c),
            "train/lambda_mean": terms.weight.mean(),
            "train/td_std": stats["std"],
            "train/td_kurtosis": stats["kurtosis"],
            "train/td_outer_fence": stats["outer_fence_frac"],
        }

    # State beyond parameters (generators, the c schedule) rides in the module's state_dict.
    def get_extra_state(self) -> dict:
        return {"gen_idx": self.gen_idx.get_state(), "gen_noise": self.gen_noise.get_state(), "c": self.c.state_dict()}

    def set_extra_state(self, state: dict) -> None:
        self.gen_idx.set_state(state["gen_idx"])
        self.gen_noise.set_state(state["gen_noise"])
        self.c.load_state_dict(state["c"])


# ----------------------------------------------------------------------------
# The diffusion baseline's objective (lct.core.edm): ConsistencyObjective's interface (step / observe /
# after_optimizer_step, generator state in the state dict), so the same training module, EMA,
# checkpoints, resume and DDP serve it.


@dataclass
class EDMTerms:
    """One step's EDM loss: the batch mean `loss` of the per-sample weighted losses at noise levels `sigma`."""

    loss: torch.Tensor  # ()
    per_sample: torch.Tensor  # (B,), detached
    sigma: torch.Tensor  # (B,)


@dataclass
class EDMStepOutput:
    terms: EDMTerms | None
    error: str | None = None  # why the step is not finite (a NaN/Inf in data or loss)

    @property
    def finite(self) -> bool:
        return self.error is None


class EDMObjective(nn.Module):
    """EDM training (Karras et al. 2022, Table 1): ln sigma ~ N(P_mean, P_std^2), loss lambda(sigma) |D - x0|^2.

    Data parallel as ConsistencyObjective: every rank draws the global batch's sigma and noise from one
    identically seeded generator and keeps its own slice, so a W-process step equals the single-process one.
    """

    kind = "diffusion"

    def __init__(self, levels: NoiseLevels, p_mean: float = EDM_P_MEAN, p_std: float = EDM_P_STD, seed: int = 0):
        super().__init__()
        if not p_std > 0:
            raise LctError(f"method.edm.p_std must be > 0, got {p_std}")
        self.levels, self.p_mean, self.p_std, self.seed = levels, float(p_mean), float(p_std), int(seed)
        self.gen = DeviceGenerator(self.seed + 1)

    def step(
        self, student: nn.Module, x0: torch.Tensor, step: int, rank: int = 0, world: int = 1, gather=None
    ) -> EDMStepOutput:
        """The EDM loss of this rank's batch x0 (b, C, H, W).

        `step` and `gather` are unused: EDM has no curriculum and no coupling."""
        b = x0.shape[0]
        sl = slice(rank * b, (rank + 1) * b)
        gen = self.gen.on(x0.device)
        sigma = lognormal_sigmas(b * world, self.p_mean, self.p_std, generator=gen, device=x0.device)[sl]
        noise = torch.randn((b * world, *x0.shape[1:]), generator=gen, device=x0.device)[sl]
        try:
            per_sample = edm_loss(student, x0, noise, sigma, self.levels.sigma_data)
        except NonFiniteError as err:
            return EDMStepOutput(None, str(err))
        loss = per_sample.mean()
        if not bool(torch.isfinite(loss)):  # the step's one device read
            return EDMStepOutput(None, nonfinite_culprit(x0=x0, noise=noise))
        return EDMStepOutput(EDMTerms(loss, per_sample.detach(), sigma))

    def observe(self, out: EDMStepOutput) -> None:
        """Nothing adapts to the loss (ConsistencyObjective's c schedule does)."""

    def after_optimizer_step(self, student: nn.Module) -> None:
        """No target network to update."""

    def diagnostics(self, out: EDMStepOutput) -> dict:
        """Rows logged every log_every steps beside train/loss."""
        return {"train/sigma_median": out.terms.sigma.median()}

    def get_extra_state(self) -> dict:
        return {"gen": self.gen.get_state()}

    def set_extra_state(self, state: dict) -> None:
        self.gen.set_state(state["gen"])
