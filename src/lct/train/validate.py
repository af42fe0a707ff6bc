"""Checks of a composed run config, once at start, before any data, model or file is touched."""

from __future__ import annotations

from numbers import Real

from omegaconf import DictConfig, OmegaConf

from lct.core.sampling import KINDS
from lct.errors import LctError

RESUME_CHANGES = ("refuse", "allow")


def _get(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key, default=None)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def validate_config(cfg: DictConfig) -> None:
    """Raise LctError naming the key, its value and the fix for the first invalid setting."""

    def bad(key: str, value, want: str) -> LctError:
        return LctError(
            f"{key}={value!r} is invalid: it must be {want}; set `{key}=...` on the command line or in the config"
        )

    batch = _get(cfg, "data.batch_size")
    if not _is_int(batch) or batch <= 0:
        raise bad("data.batch_size", batch, "a positive integer (the global batch)")
    max_steps = _get(cfg, "trainer.max_steps")
    if max_steps is not None and not _is_int(max_steps):
        raise bad("trainer.max_steps", max_steps, "an integer number of steps (-1 or null: use data.epochs)")
    for key in ("log_every", "max_nonfinite"):
        value = _get(cfg, key)
        if value is not None and (not _is_int(value) or value <= 0):
            raise bad(key, value, "a positive integer")
    epochs = _get(cfg, "data.epochs")
    if epochs is not None and (not _is_int(epochs) or epochs <= 0):
        raise bad("data.epochs", epochs, "a positive integer or null")
    seed = _get(cfg, "seed")
    if not _is_int(seed):
        raise bad("seed", seed, "an integer")
    cooldown = _get(cfg, "lr_schedule.cooldown")
    if cooldown is not None and (not _is_number(cooldown) or not 0 <= cooldown <= 1):
        raise bad("lr_schedule.cooldown", cooldown, "a fraction of the run in [0, 1] (0: constant lr)")
    warmup = _get(cfg, "ema.warmup")
    if not (warmup is None or isinstance(warmup, bool) or (_is_number(warmup) and warmup > 1)):
        raise bad("ema.warmup", warmup, "true (w = 10), false or a number w > 1 in min(decay, (1 + k)/(w + k))")
    for decay in _get(cfg, "ema.decays") or []:
        if not _is_number(decay) or not 0 <= decay < 1:
            raise bad("ema.decays", decay, "a list of decays in [0, 1)")
    weight = _get(cfg, "method.diffusion.weight")
    if weight is not None and (not _is_number(weight) or weight < 0):
        raise bad("method.diffusion.weight", weight, "a number >= 0 (0 turns the diffusion loss off)")
    ratio = _get(cfg, "method.diffusion.ratio")
    if ratio is not None and (not _is_number(ratio) or not 0 <= ratio <= 1):
        raise bad("method.diffusion.ratio", ratio, "a fraction of the noise grid in [0, 1]")
    kind = _get(cfg, "method.kind")
    if kind not in (None, *KINDS):
        raise bad("method.kind", kind, " or ".join(KINDS) + " (experiment=edm sets diffusion)")
    if _get(cfg, "init_from") is not None and kind == "diffusion":
        raise LctError(
            f"init_from={_get(cfg, 'init_from')} starts consistency training from an EDM checkpoint, but "
            "this run is experiment=edm; drop init_from (to continue an EDM run, pass ckpt_path=...)"
        )
    changes = _get(cfg, "resume_changes")
    if changes not in RESUME_CHANGES:
        raise bad("resume_changes", changes, " or ".join(RESUME_CHANGES))
