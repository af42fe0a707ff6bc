"""Training checkpoints for sampling and evaluation: the checkpoint alone rebuilds the model and its codec.

A checkpoint's `lct` dict holds the run config, the model kind ("consistency": f_theta; "diffusion": the
EDM denoiser D_theta), the noise levels, the latent shape, the latent codec (mu, s, VAE reference), the
state-dict prefix of every set of weights ("student", "ema_<decay>") and, for a run started with
`init_from`, the EDM checkpoint it started from. Files are read with torch.load(weights_only=True): a
checkpoint cannot run code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from lct import core
from lct.core import ConsistencyFunction, Denoiser, NoiseLevels
from lct.core.edm import consistency_state_from_edm
from lct.errors import LctError
from lct.io.ckpt_file import read_checkpoint_file


@dataclass
class Bundle:
    """What lct.sample / lct.evaluate need: the model in eval mode, its kind, the run config, noise levels, codec."""

    model: ConsistencyFunction | Denoiser
    cfg: DictConfig
    latent_shape: tuple[int, int, int]
    weights: str  # "student" or "ema_<decay>"
    noise: NoiseLevels
    codec_state: dict | None = None
    kind: str = "consistency"  # "diffusion": an EDM denoiser, sampled with Heun
    _codec: object = None

    def nfe_sigmas(self, nfe: int, sigma_mid: float | None = None) -> list[float]:
        """The sigmas of `nfe` evaluations: 1 or 2 for consistency, any odd NFE for diffusion (LctError otherwise)."""
        return core.nfe_sigmas(self.kind, self.noise, nfe, sigma_mid)

    def sample(self, noise: torch.Tensor, sigmas) -> torch.Tensor:
        """x0 latents from unit noise through `sigmas` (from nfe_sigmas)."""
        return core.sample(self.kind, self.model, noise, sigmas, self.noise)

    @property
    def codec(self):
        """The run's latent codec, rebuilt from the checkpoint (the VAE loads on first decode)."""
        if self._codec is None:
            if self.codec_state is None:
                raise LctError(
                    f"this checkpoint was trained on data without a latent codec "
                    f"({self.cfg.data.get('_target_')}): there is nothing to decode its samples with"
                )
            from lct.data import LatentCodec

            self._codec = LatentCodec.from_state_dict(self.codec_state, sigma_data=self.noise.sigma_data)
        return self._codec


def ema_key(decay: float) -> str:
    """Key of an evaluation EMA in the module and its checkpoint ('0.99993' -> '0_99993': no dots in keys)."""
    return f"{decay}".replace(".", "_")


def selected_ema(ema: bool | float, decays) -> str | None:
    """Key of the EMA that `ema` names (True: the first decay; a decay: that one); None means the student."""
    if ema is False or not decays:
        return None
    return ema_key(decays[0] if ema is True else ema)


def weight_prefixes(decays) -> dict[str, str]:
    """{name: state-dict prefix} of every set of f_theta weights the training module holds."""
    return {"student": "student.", **{f"ema_{ema_key(d)}": f"emas.{ema_key(d)}." for d in decays}}


def _read(path) -> dict:
    ckpt = read_checkpoint_file(path)
    if "lct" not in ckpt or "state_dict" not in ckpt:
        raise LctError(f"{path} is not an lct training checkpoint (written by `python -m lct.train`)")
    return ckpt


def _weights(path, ckpt: dict, ema: bool | float) -> tuple[str, str]:
    """(name, state-dict prefix) of the weights `ema` selects (True: the first EMA; False: the student)."""
    meta = ckpt["lct"]
    if "weights" not in meta or "noise_levels" not in meta:
        raise LctError(
            f"{path} was written by an older lct without its noise levels and weight prefixes; "
            "sample it with the lct version that trained it, or retrain"
        )
    decays = list(meta["config"]["ema"]["decays"])
    key = selected_ema(ema, decays)
    name = "student" if key is None else f"ema_{key}"
    prefixes = meta["weights"]
    if name not in prefixes:
        raise LctError(
            f"{path} holds no {name} weights; it has {sorted(prefixes)} (pass ema=False or one of "
            f"the EMA decays {decays})"
        )
    return name, prefixes[name]


def load_for_sampling(path, ema: bool | float = True, map_location: str | torch.device = "cpu") -> Bundle:
    """Rebuild the model (f_theta, or the EDM denoiser of a diffusion checkpoint) with EMA weights by default
    (ema=False: the student)."""
    from lct.builders import build_student, kind

    ckpt = _read(path)
    meta = ckpt["lct"]
    name, prefix = _weights(path, ckpt, ema)
    cfg = OmegaConf.create(meta["config"])
    weights = {k[len(prefix) :]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    model = build_student(cfg)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise LctError(
            f"checkpoint {path} does not match backbone {cfg.backbone.get('_target_')}: {str(err).splitlines()[0]}"
        ) from None
    model.to(map_location).eval().requires_grad_(False)
    return Bundle(
        model=model,
        cfg=cfg,
        latent_shape=tuple(meta["latent_shape"]),
        weights=name,
        noise=NoiseLevels.from_state_dict(meta["noise_levels"]),
        codec_state=meta["codec"],
        kind=kind(cfg),
    )


def init_from_edm(path, student: ConsistencyFunction, cfg) -> dict:
    """Load the backbone of the EDM checkpoint at `path` (its first EMA, else its student) into the consistency
    student (Geng et al. 2025: consistency training from a diffusion model); returns what to record.

    The backbone weights carry over unchanged (lct.core.edm.consistency_state_from_edm); the run's config
    must build the same backbone (LctError naming the differing keys otherwise).
    """
    from lct.builders import kind

    ckpt = _read(path)
    meta = ckpt["lct"]
    source = OmegaConf.create(meta["config"])
    if kind(source) != "diffusion":
        raise LctError(
            f"init_from={path} is a {kind(source)} checkpoint; init_from takes an EDM checkpoint "
            "(trained with experiment=edm)"
        )
    ours, theirs = (OmegaConf.to_container(c.backbone, resolve=True) for c in (cfg, source))
    differ = sorted(k for k in set(ours) | set(theirs) if ours.get(k) != theirs.get(k))
    if differ:
        raise LctError(
            f"init_from={path}: its backbone differs from this run's in {differ} (e.g. {differ[0]}: "
            f"{theirs.get(differ[0])!r} there, {ours.get(differ[0])!r} here); train the EDM run with "
            "the same backbone=/norm= options"
        )
    if float(source.method.sigma.data) != float(cfg.method.sigma.data):
        raise LctError(
            f"init_from={path}: its method.sigma.data={source.method.sigma.data} differs from this "
            f"run's {cfg.method.sigma.data}; the backbone's input scaling c_in depends on it"
        )
    has_ema = bool(source.ema.decays)
    name, prefix = _weights(path, ckpt, ema=has_ema)
    try:
        student.load_state_dict(consistency_state_from_edm(ckpt["state_dict"], prefix), strict=True)
    except RuntimeError as err:
        raise LctError(f"init_from={path} does not fit this run's backbone: {str(err).splitlines()[0]}") from None
    return {"path": str(Path(path).resolve()), "weights": name, "global_step": int(ckpt.get("global_step", -1))}
