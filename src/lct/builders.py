"""Build the model and the objective from a run config: one path for training, sampling and evaluation."""

from __future__ import annotations

import re

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from lct.core import BuildContext, NoiseLevels, get_kind
from lct.core.kinds import KINDS, kind_choices
from lct.errors import LctError, debug_requested


def noise_levels(cfg) -> NoiseLevels:
    """The run's noise levels (`method.sigma`)."""
    return NoiseLevels.from_config(cfg.method.sigma)


def kind(cfg) -> str:
    """`method.kind`: a registered kind (lct.core.kinds): consistency (the paper's method), diffusion
    (the EDM baseline, experiment=edm), scm (experiment=scm), meanflow (experiment=meanflow)."""
    value = cfg.method.get("kind", "consistency")  # configs written before the EDM baseline
    if value not in KINDS:
        raise LctError(f"method.kind={value!r} is invalid: choose one of {kind_choices()}")
    return value


def instantiate_part(node, key: str, **kwargs):
    """hydra's instantiate of the config node at `key`; a failure becomes one LctError naming the key.

    The target's own LctError surfaces as itself; an unimportable target, or a ValueError/TypeError of the
    target (an unknown argument, a value it refuses), is named with the key and the fix."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        if isinstance(cause, LctError):
            raise cause from None
        target = node.get("_target_") if hasattr(node, "get") else None
        if "Error locating target" in str(err):
            raise LctError(
                f"{key}._target_ {target!r} cannot be imported; pick an option of its conf/ group or give an "
                "importable class"
            ) from None
        unknown = isinstance(cause, TypeError) and re.search(r"unexpected keyword argument '(\w+)'", str(cause))
        if unknown:  # a misspelt or stray key: no part takes **kwargs it would ignore
            raise LctError(
                f"{key}.{unknown[1]} is not a setting of {target}; drop it or fix its spelling on the command line "
                f"or in the config (`--cfg job` prints the composed {key})"
            ) from (cause if debug_requested() else None)
        # Lightning's MisconfigurationException (trainer, callbacks) is a plain Exception: named, not imported.
        if isinstance(cause, (ValueError, TypeError)) or type(cause).__name__ == "MisconfigurationException":
            detail = " ".join(str(cause).split())
            raise LctError(
                f"{key} is invalid: {target} refused its settings ({type(cause).__name__}: {detail}); fix or drop "
                f"the offending {key}.<name>=... on the command line or in the config"
            ) from (cause if debug_requested() else None)  # LCT_DEBUG=1: the target's own traceback too
        raise


def _part(cfg, key: str, **kwargs):
    """Instantiate `method.<key>`; a part's own LctError surfaces as itself (one line naming the key)."""
    node = cfg.method.get(key)
    if node is None or "_target_" not in node:
        raise LctError(f"method.{key} needs a _target_ (choose a conf/ group option); got {node}")
    return instantiate_part(node, f"method.{key}", **kwargs)


def build_datamodule(cfg):
    """The data module, scaling latents to the run's sigma_data; prepared (built-in data encoded). A null
    data.latent_channels / data.latent_resolution (data=folder) is filled in `cfg` from the root's
    metadata, so the backbone and the stored run config see the real latent shape."""
    if OmegaConf.is_missing(cfg.data, "root"):
        raise LctError(
            "data.root is not set: encode your images with `python -m lct.encode --source <image folder> "
            "--vae <hub id, folder or builtin:mnist> --size <pixels> --out ROOT`, then pass data.root=ROOT"
        )
    dm = instantiate_part(cfg.data, "data", sigma_data=noise_levels(cfg).sigma_data, _recursive_=False)
    dm.prepare_data()
    channels, resolution, _ = dm.latent_shape
    for key, value in (("latent_channels", channels), ("latent_resolution", resolution)):
        if key in cfg.data and cfg.data[key] is None:
            cfg.data[key] = value
    return dm


def build_student(cfg):
    """The configured backbone inside the run's kind's parametrization (lct.core.kinds): f_theta
    (consistency), EDM's D_theta (diffusion), TrigFlow's f_theta (scm), ..."""
    backbone = instantiate_part(cfg.backbone, "backbone", _convert_="all")
    k = get_kind(kind(cfg))
    node = cfg.method.get(k.name) or {}
    # A key a stored config lacks takes the value its version trained with (Kind.student_keys).
    opts = {key: node.get(key, absent) for key, absent in k.student_keys.items()}
    return k.student(backbone, noise_levels(cfg), **opts)


def build_objective(cfg, student, total_steps: int, latent_shape):
    """The run's kind's per-step objective from `method.*` (lct.core.kinds): e.g. ConsistencyObjective,
    whose c schedule gets D = C*H*W and whose teacher binds to the student, or EDM's (`method.edm`)."""
    ctx = BuildContext(
        method=cfg.method,
        levels=noise_levels(cfg),
        total_steps=int(total_steps),
        latent_shape=tuple(int(s) for s in latent_shape),
        seed=int(cfg.seed),
        part=lambda key, **kwargs: _part(cfg, key, **kwargs),
    )
    return get_kind(kind(cfg)).objective(student, ctx)
