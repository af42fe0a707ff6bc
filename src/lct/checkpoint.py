"""Load a training checkpoint for sampling/evaluation: the EMA (or student) consistency function + codec."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from lct.core import ConsistencyFunction


@dataclass
class Bundle:
    """What lct.sample / lct.evaluate need: f_theta in eval mode, the resolved run config, the latent shape."""

    model: ConsistencyFunction
    cfg: DictConfig
    latent_shape: tuple[int, int, int]
    weights: str                        # "student" or "ema_<decay>"
    _codec: object = field(default=None, repr=False)

    @property
    def codec(self):
        """The run's latent codec (mu/s + VAE), loaded on first use from the run's data root."""
        if self._codec is None:
            from lct.data import LatentCodec
            root = self.cfg.data.get("root")
            if root is None:
                raise ValueError(f"the run's data config ({self.cfg.data.get('_target_')}) has no latent root to decode with")
            self._codec = LatentCodec.from_root(root)
            shape = tuple(self._codec.latent_shape)
            if shape != self.latent_shape:
                raise ValueError(f"checkpoint latent shape {self.latent_shape} != latents at {root}: {shape}")
        return self._codec


def ema_key(decay: float) -> str:
    """Key of an evaluation EMA in the module and its checkpoint ('0.99993' -> '0_99993': no dots in keys)."""
    return f"{decay}".replace(".", "_")


def selected_ema(ema: bool | float, decays) -> str | None:
    """Key of the EMA that `ema` names (True: the first decay; a decay: that one); None means the student."""
    if ema is False or not decays:
        return None
    return ema_key(decays[0] if ema is True else ema)


def _read(path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if "lct" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path} is not an lct training checkpoint (written by `python -m lct.train`)")
    return ckpt


def _pick_weights(state: dict, ema, decays) -> tuple[str, dict]:
    key = selected_ema(ema, decays)
    prefix, name = ("student.", "student") if key is None else (f"emas.{key}.", f"ema_{key}")
    weights = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not weights:
        raise ValueError(f"checkpoint has no weights under {prefix!r}; EMA decays saved: {decays}")
    return name, weights


def load_for_sampling(path, ema: bool | float = True, map_location: str | torch.device = "cpu") -> Bundle:
    """Rebuild f_theta from a checkpoint (EMA weights by default; ema=False for the student)."""
    from hydra.utils import instantiate
    ckpt = _read(path)
    cfg = OmegaConf.create(ckpt["lct"]["config"])
    sig = cfg.method.sigma
    model = ConsistencyFunction(instantiate(cfg.backbone, _convert_="all"), sig.data, sig.min, sig.max)
    name, weights = _pick_weights(ckpt["state_dict"], ema, list(cfg.ema.decays))
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        raise ValueError(f"checkpoint {path} does not match backbone {cfg.backbone.get('_target_')}: {err}") from None
    model.to(map_location).eval().requires_grad_(False)
    return Bundle(model=model, cfg=cfg, latent_shape=tuple(cfg.latent_shape), weights=name)
