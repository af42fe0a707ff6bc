"""The model kinds (`method.kind`): one registry entry per objective, read by every place that used to branch.

A `Kind` says how to build the sampled model around a backbone (`student`), how to build the training
objective (`objective`), how to sample (`sample`), which sampling times `nfe` evaluations take
(`nfe_times`) and which NFEs a run evaluates unless told (`default_nfe`). lct.builders, the training
module, the checkpoint Bundle, the in-loop callbacks, lct.sample and lct.evaluate all go through
`get_kind` (or lct.core.sampling's `nfe_sigmas` / `sample`, which dispatch here), so a new objective is
one `register_kind(Kind(...))` in its own lct.core module, imported by lct.core's __init__, plus its
conf/experiment YAML (docs/method.md, "Objectives as kinds"). The built-in entries: lct.core.builtin_kinds
(consistency, diffusion), lct.core.scm, lct.core.meanflow.

"Times" are in the kind's own time variable: noise levels sigma for consistency and diffusion, TrigFlow
times t in [0, pi/2] for scm (lct.core.scm).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lct.errors import LctError

from .noise_levels import NoiseLevels


@dataclass(frozen=True)
class BuildContext:
    """What an objective builder gets besides the student: the run's `method` node and its derived values."""

    method: Any  # the run's `method` config node (a mapping)
    levels: NoiseLevels
    total_steps: int
    latent_shape: tuple[int, ...]
    seed: int
    # part(key, **kwargs): `method.<key>` instantiated from its _target_ (lct.builders; one LctError on failure)
    part: Callable[..., Any] = field(repr=False)

    @property
    def dim(self) -> int:
        """D = C*H*W."""
        return math.prod(int(s) for s in self.latent_shape)

    def options(self, key: str, allowed: tuple[str, ...], doc: str) -> dict:
        """`method.<key>` as a dict of plain values; LctError naming unknown keys and `doc` (where they are)."""
        node = self.method.get(key) if hasattr(self.method, "get") else None
        values = dict(node or {})
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise LctError(f"method.{key} has unknown keys {unknown}; it takes {', '.join(allowed)} ({doc})")
        return values


@dataclass(frozen=True)
class Kind:
    """One `method.kind`: its model, objective, sampler and NFE rules."""

    name: str
    student: Callable[..., nn.Module]  # (backbone, levels, **student_keys) -> the sampled model
    objective: Callable[[nn.Module, BuildContext], nn.Module]  # (student, context) -> the training objective
    sample: Callable[..., torch.Tensor]  # (model, unit noise, times, levels, generator) -> x0
    nfe_times: Callable[[NoiseLevels, int, float | None], list[float]]  # (levels, nfe, sigma_mid) -> times
    default_nfe: tuple[int, ...]  # the NFEs the in-loop callbacks and lct.evaluate use unless told
    summary: str = ""  # one phrase for error messages: what the kind is and which experiment sets it
    # Keys of `method.<name>` the student is built with, each mapped to the value that a stored config lacking
    # the key was trained with (the key was added later; lct.builders.build_student reads them).
    student_keys: Mapping[str, Any] = field(default_factory=dict)


KINDS: dict[str, Kind] = {}  # name -> Kind; iterating gives the names (`method.kind`'s choices)


def register_kind(kind: Kind) -> Kind:
    """Add `kind` to the registry; a name is registered once."""
    old = KINDS.get(kind.name)
    if old is not None and old is not kind:
        raise ValueError(f"method.kind {kind.name!r} is already registered")
    KINDS[kind.name] = kind
    return kind


def kind_choices() -> str:
    """The registered kinds with what sets each, for error messages."""
    return "; ".join(f"{k.name} ({k.summary})" if k.summary else k.name for k in KINDS.values())


def get_kind(name: str) -> Kind:
    """The registered Kind called `name`; LctError listing the choices otherwise."""
    if name not in KINDS:
        raise LctError(f"method.kind={name!r} is invalid: choose one of {kind_choices()}")
    return KINDS[name]


class _DefaultNFE(Mapping):
    """{kind: its default NFEs}, a live view of the registry (kinds registered later are in it too)."""

    def __getitem__(self, name: str) -> tuple[int, ...]:
        return KINDS[name].default_nfe

    def __iter__(self) -> Iterator[str]:
        return iter(KINDS)

    def __len__(self) -> int:
        return len(KINDS)


DEFAULT_NFE: Mapping[str, tuple[int, ...]] = _DefaultNFE()


def nfe_sigmas(kind: str, levels: NoiseLevels, nfe: int, sigma_mid: float | None = None) -> list[float]:
    """The sampling times that `sample` takes for `nfe` evaluations of a `kind` model (LctError if it cannot)."""
    return get_kind(kind).nfe_times(levels, nfe, sigma_mid)


def sample(
    kind: str, model, noise: torch.Tensor, sigmas, levels: NoiseLevels, generator: torch.Generator | None = None
) -> torch.Tensor:
    """x0 from unit noise through the sampling times `sigmas` (from nfe_sigmas) with the kind's sampler."""
    return get_kind(kind).sample(model, noise, sigmas, levels, generator)
