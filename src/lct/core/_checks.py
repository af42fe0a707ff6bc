"""Input validation shared by the core functions: clear ValueErrors, never a silent NaN."""

from __future__ import annotations

import torch

# Karras grids computed in float32 can land a hair outside [sigma_min, sigma_max].
_REL_TOL = 1e-5


class NonFiniteError(ValueError):
    """A NaN/Inf reached a core function; the training loop catches this to skip the step."""


def check_finite(name: str, x: torch.Tensor) -> None:
    """Raise if `x` holds NaN/Inf (one host sync; the price of never passing a NaN on)."""
    if not bool(torch.isfinite(x).all()):
        raise NonFiniteError(f"{name} contains non-finite values (NaN or Inf)")


def check_finite_on_host(name: str, x: torch.Tensor) -> None:
    """check_finite for a CPU tensor; a tensor on an accelerator is left unread, since reading it makes the
    host wait for the device. For the training step's tensors that is safe: a NaN/Inf in x0, the noise or
    the network's outputs reaches the loss, which the objective checks with one read per step and then
    names the culprit (lct.core.objective; benchmarks/README.md, "The objective's host cost")."""
    if x.device.type == "cpu":
        check_finite(name, x)


def check_sigma_range(name: str, sigma, sigma_min: float, sigma_max: float) -> None:
    """Raise if any sigma lies outside [sigma_min, sigma_max] (with a small relative tolerance)."""
    s = torch.as_tensor(sigma, dtype=torch.float64)
    check_finite(name, s)
    lo, hi = sigma_min * (1 - _REL_TOL), sigma_max * (1 + _REL_TOL)
    if bool((s < lo).any()) or bool((s > hi).any()):
        raise ValueError(
            f"{name} must lie in [sigma_min={sigma_min}, sigma_max={sigma_max}], "
            f"got range [{float(s.min()):.6g}, {float(s.max()):.6g}]"
        )


def check_same_shape(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    """Raise if two tensors that must be compared elementwise differ in shape."""
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {name_a} {tuple(a.shape)} vs {name_b} {tuple(b.shape)}")


def check_choice(name: str, value: str, choices) -> None:
    """Raise LctError if `value` is not one of `choices`, naming the key and listing them."""
    if value not in choices:
        from lct.errors import LctError

        raise LctError(f"unknown {name} {value!r}; choose one of {sorted(choices)}")
