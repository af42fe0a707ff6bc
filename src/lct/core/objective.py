"""ConsistencyObjective: the whole per-step method of the paper (§4; docs/method.md) in one object.

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

from ._checks import NonFiniteError
from .diagnostics import residual_stats
from .losses import LossTerms, LowNoiseDiffusion, lct_loss
from .noise_levels import NoiseLevels
from .schedules import sample_indices


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
        self.gen_idx = torch.Generator().manual_seed(self.seed)  # same on every rank: global draws
        self._gen_noise: torch.Generator | None = None
        self._pending_noise_state: torch.Tensor | None = None  # restored once the device is known

    def grid(self, n_scales: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(sigmas float64 CPU, index probabilities) of the N-point grid."""
        if n_scales not in self._grids:
            sigmas = self.levels.karras(n_scales)
            self._grids[n_scales] = sigmas, self.sampler.probs(sigmas)
        return self._grids[n_scales]

    def n_scales(self, step: int) -> int:
        return self.curriculum(step, self.total_steps)

    def _noise_generator(self, device: torch.device) -> torch.Generator:
        if self._gen_noise is None or self._gen_noise.device != device:
            self._gen_noise = torch.Generator(device).manual_seed(self.seed + 1)
            if self._pending_noise_state is not None:
                self._gen_noise.set_state(self._pending_noise_state.cpu())
                self._pending_noise_state = None
        return self._gen_noise

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
        sigmas, probs = self.grid(n)
        b = x0.shape[0]
        sl = slice(rank * b, (rank + 1) * b)
        idx_g = sample_indices(probs, b * world, self.gen_idx)
        noise_g = torch.randn((b * world, *x0.shape[1:]), generator=self._noise_generator(x0.device), device=x0.device)
        tail = self.diffusion.mask(idx_g, n).sum().item() / world
        c = self.c(n, step)
        idx = idx_g[sl]
        try:
            noise = self.coupling(x0, noise_g, sl, self.gen_idx, gather if world > 1 else None)
            terms = lct_loss(
                student,
                self.teacher.target(student),
                x0,
                noise,
                sigma_i=sigmas[idx].to(x0),
                sigma_next=sigmas[idx + 1].to(x0),
                indices=idx.to(x0.device),
                n_scales=n,
                metric=self.metric,
                c=c,
                diffusion=self.diffusion,
                sigma_data=self.levels.sigma_data,
                diffusion_denominator=tail,
            )
        except NonFiniteError as err:
            return StepOutput(None, n, c, str(err))
        if not bool(torch.isfinite(terms.loss)):
            return StepOutput(None, n, c, "the loss is not finite")
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
        noise = self._gen_noise.get_state() if self._gen_noise is not None else self._pending_noise_state
        return {"gen_idx": self.gen_idx.get_state(), "gen_noise": noise, "c": self.c.state_dict()}

    def set_extra_state(self, state: dict) -> None:
        self.gen_idx.set_state(state["gen_idx"])
        self._gen_noise, self._pending_noise_state = None, state["gen_noise"]
        self.c.load_state_dict(state["c"])
