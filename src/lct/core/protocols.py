"""The protocols of the objective's parts. Each part is one small class that Hydra instantiates from
its `_target_` (conf/<group>/*.yaml); a new metric, c schedule, coupling or sampler is one class that
follows its protocol plus one YAML.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn


class RobustMetric(Protocol):
    """`method.metric`: rho_c per sample."""

    def __call__(self, d: torch.Tensor, c) -> torch.Tensor:
        """d (B, ...) the TD residual, c > 0 the scale -> (B,)."""


class CSchedule(Protocol):
    """`method.c`: the metric's scale c. Built with the run's shape as keyword arguments: `dim` = D = C*H*W
    and `total_steps` = K (a schedule that needs neither still accepts both)."""

    def __call__(self, n_scales: int, step: int) -> float:
        """c for the current grid size N(k) at global step k."""

    def observe(self, residual: torch.Tensor) -> None:
        """Called with the detached TD residual after every step whose loss was finite on all ranks."""

    def state_dict(self) -> dict:
        """Any state, as tensors and Python scalars (stored in checkpoints, loaded with weights_only)."""

    def load_state_dict(self, state: dict) -> None: ...


class Coupling(Protocol):
    """`method.coupling`: pairs this rank's data with noise rows of the global batch."""

    def __call__(
        self,
        x0: torch.Tensor,
        noise_g: torch.Tensor,
        sl: slice,
        generator: torch.Generator | None,
        gather: Callable[[torch.Tensor], torch.Tensor] | None,
    ) -> torch.Tensor:
        """x0 (b, ...) this rank's data, noise_g (b*W, ...) the global unit noise, sl this rank's rows,
        gather(x0) -> the global x0 (None in a single process). Returns this rank's (b, ...) noise."""


class IndexSampler(Protocol):
    """`method.noise`: the distribution p(i) of the grid interval i drawn per sample."""

    def probs(self, sigmas: torch.Tensor) -> torch.Tensor:
        """sigmas (N,) descending -> p (N-1,) summing to 1."""


class Teacher(Protocol):
    """`method.teacher`: the target network of the TD pair (an nn.Module: its weights are checkpointed)."""

    def bind(self, student: nn.Module) -> None:
        """Called once with the student at build time."""

    def target(self, student: nn.Module) -> nn.Module:
        """The network that evaluates the less noisy point of the pair (run without gradient)."""

    def update(self, student: nn.Module) -> None:
        """Called after every optimizer step that was not skipped."""


class Curriculum(Protocol):
    """`method.curriculum`: the number of grid points N(k)."""

    def __call__(self, step: int, total_steps: int) -> int: ...
