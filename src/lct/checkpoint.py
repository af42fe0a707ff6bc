"""Training checkpoints for sampling and evaluation: the checkpoint alone rebuilds f_theta and its codec.

A checkpoint's `lct` dict holds the run config, the noise levels, the latent shape, the latent codec
(mu, s, VAE reference) and the state-dict prefix of every set of weights ("student", "ema_<decay>").
Files are read with torch.load(weights_only=True): a checkpoint cannot run code.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from lct.core import ConsistencyFunction, NoiseLevels
from lct.ckpt_io import read_checkpoint_file
from lct.errors import LctError


@dataclass
class Bundle:
    """What lct.sample / lct.evaluate need: f_theta in eval mode, the run config, noise levels, codec."""

    model: ConsistencyFunction
    cfg: DictConfig
    latent_shape: tuple[int, int, int]
    weights: str                        # "student" or "ema_<decay>"
    noise: NoiseLevels
    codec_state: dict | None = None
    _codec: object = None

    @property
    def codec(self):
        """The run's latent codec, rebuilt from the checkpoint (the VAE loads on first decode)."""
        if self._codec is None:
            if self.codec_state is None:
                raise LctError(f"this checkpoint was trained on data without a latent codec "
                               f"({self.cfg.data.get('_target_')}): there is nothing to decode its samples with")
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


def load_for_sampling(path, ema: bool | float = True, map_location: str | torch.device = "cpu") -> Bundle:
    """Rebuild f_theta from a checkpoint (EMA weights by default; ema=False for the student)."""
    from lct.builders import build_student
    ckpt = _read(path)
    meta = ckpt["lct"]
    if "weights" not in meta or "noise_levels" not in meta:
        raise LctError(f"{path} was written by an older lct without its noise levels and weight prefixes; "
                       "sample it with the lct version that trained it, or retrain")
    cfg = OmegaConf.create(meta["config"])
    decays = list(cfg.ema.decays)
    key = selected_ema(ema, decays)
    name = "student" if key is None else f"ema_{key}"
    prefixes = meta["weights"]
    if name not in prefixes:
        raise LctError(f"{path} holds no {name} weights; it has {sorted(prefixes)} (pass ema=False or one of "
                       f"the EMA decays {decays})")
    prefix = prefixes[name]
    weights = {k[len(prefix):]: v for k, v in ckpt["state_dict"].items() if k.startswith(prefix)}
    model = build_student(cfg)
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise LctError(f"checkpoint {path} does not match backbone {cfg.backbone.get('_target_')}: "
                       f"{str(err).splitlines()[0]}") from None
    model.to(map_location).eval().requires_grad_(False)
    return Bundle(model=model, cfg=cfg, latent_shape=tuple(meta["latent_shape"]), weights=name,
                  noise=NoiseLevels.from_state_dict(meta["noise_levels"]), codec_state=meta["codec"])
