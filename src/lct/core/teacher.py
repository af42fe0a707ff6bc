"""The target network f_theta^- of the TD pair (the `method.teacher` part, protocol `Teacher`)."""

from __future__ import annotations

import copy

from torch import nn

from .ema import ema_update


class StopGrad(nn.Module):
    """iCT: theta^- = stopgrad(theta), the student's current weights (no copy kept)."""

    def bind(self, student: nn.Module) -> None:
        pass

    def target(self, student: nn.Module) -> nn.Module:
        return student

    def update(self, student: nn.Module) -> None:
        pass


class EMATeacher(nn.Module):
    """Option: an EMA target theta^- <- mu theta^- + (1 - mu) theta, updated after each optimizer step."""

    def __init__(self, decay: float = 0.999):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            from lct.errors import LctError

            raise LctError(f"method.teacher.decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.net: nn.Module | None = None

    def bind(self, student: nn.Module) -> None:
        self.net = copy.deepcopy(student).requires_grad_(False)

    def target(self, student: nn.Module) -> nn.Module:
        return self.net

    def update(self, student: nn.Module) -> None:
        ema_update(self.net.parameters(), student.parameters(), self.decay)
