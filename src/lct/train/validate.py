"""Checks of a composed run config, once at start, before any data, model or file is touched."""

from __future__ import annotations

import math
import typing
from numbers import Real

from lightning.fabric.connector import _PRECISION_INPUT
from omegaconf import DictConfig, OmegaConf

from lct.core.kinds import KINDS, kind_choices
from lct.errors import LctError

RESUME_CHANGES = ("refuse", "allow")
# Every spelling Lightning's Trainer accepts for `precision` (ints, "32-true", aliases such as "bf16").
PRECISIONS = tuple(v for group in typing.get_args(_PRECISION_INPUT) for v in typing.get_args(group))


def _get(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key, default=None)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _bad(key: str, value, want: str) -> LctError:
    return LctError(
        f"{key}={value!r} is invalid: it must be {want}; set `{key}=...` on the command line or in the config"
    )


def validate_config(cfg: DictConfig) -> None:
    """Raise LctError naming the key, its value and the fix for the first invalid setting."""
    bad = _bad

    batch = _get(cfg, "data.batch_size")
    if not _is_int(batch) or batch <= 0:
        raise bad("data.batch_size", batch, "a positive integer (the global batch)")
    max_steps = _get(cfg, "trainer.max_steps")
    if max_steps is not None and (not _is_int(max_steps) or (max_steps <= 0 and max_steps != -1)):
        raise bad("trainer.max_steps", max_steps, "a positive number of steps (-1 or null: from data.epochs)")
    for key in ("log_every", "max_nonfinite"):
        value = _get(cfg, key)
        if value is not None and (not _is_int(value) or value <= 0):
            raise bad(key, value, "a positive integer")
    skip = _get(cfg, "data.skip_nonfinite")
    if skip is not None and not isinstance(skip, bool):
        raise bad("data.skip_nonfinite", skip, "true (leave NaN/inf latents out of sampling) or false (refuse them)")
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
        raise bad("method.kind", kind, f"one of {kind_choices()}")
    if _get(cfg, "init_from") is not None and kind == "diffusion":
        raise LctError(
            f"init_from={_get(cfg, 'init_from')} starts consistency training from an EDM checkpoint, but "
            "this run is experiment=edm; drop init_from (to continue an EDM run, pass ckpt_path=...)"
        )
    changes = _get(cfg, "resume_changes")
    if changes not in RESUME_CHANGES:
        raise bad("resume_changes", changes, " or ".join(RESUME_CHANGES))
    validate_trainer(cfg)


def validate_trainer(cfg: DictConfig) -> None:
    """The optimizer, precision, checkpoint period and DDP split: what Torch and Lightning would otherwise
    refuse only after the model is built (or the ranks have spawned), with a traceback."""
    lr, decay = _get(cfg, "optimizer.lr"), _get(cfg, "optimizer.weight_decay")
    if not _is_number(lr) or not math.isfinite(lr) or lr <= 0:
        raise _bad("optimizer.lr", lr, "a finite number > 0 (the paper: 1e-4)")
    if decay is not None and (not _is_number(decay) or not math.isfinite(decay) or decay < 0):
        raise _bad("optimizer.weight_decay", decay, "a finite number >= 0")
    precision = _get(cfg, "trainer.precision")
    if precision is not None and precision not in PRECISIONS:
        raise _bad(
            "trainer.precision", precision, "one of Lightning's " + ", ".join(dict.fromkeys(map(str, PRECISIONS)))
        )
    for name, node in (_get(cfg, "callbacks") or {}).items():
        for key in ("every_n_train_steps", "every_n_steps"):
            value = node.get(key) if isinstance(node, DictConfig) else None
            if value is not None and (not _is_int(value) or value < (0 if key == "every_n_train_steps" else 1)):
                want = (
                    "an integer >= 0 (0 or null: no step-based checkpoints)"
                    if key == "every_n_train_steps"
                    else "a positive integer"
                )
                raise _bad(f"callbacks.{name}.{key}", value, want)
    _validate_world_split(cfg)
    if _get(cfg, "backbone._target_") == "lct.nn.build_backbone":
        from lct.nn.registry import check_backbone_name

        check_backbone_name(_get(cfg, "backbone.name"))


def world_size(cfg: DictConfig) -> int | None:
    """devices x num_nodes of the trainer config, None where Lightning decides at launch (devices=auto)."""
    devices, nodes = _get(cfg, "trainer.devices"), _get(cfg, "trainer.num_nodes") or 1
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        devices = int(devices)
    elif isinstance(devices, str) and "," in devices:
        devices = len([d for d in devices.split(",") if d.strip()])
    if not _is_int(devices) and devices is not None and not isinstance(devices, str):
        devices = len(devices)  # a list of device indices
    if devices == -1 and _get(cfg, "trainer.accelerator") in ("gpu", "cuda"):
        import torch

        devices = torch.cuda.device_count()
    if not _is_int(devices) or devices < 1 or not _is_int(nodes):
        return None
    return devices * nodes


def _validate_world_split(cfg: DictConfig) -> None:
    """The global batch is split evenly over devices x num_nodes processes: checked before any rank spawns."""
    world, batch = world_size(cfg), _get(cfg, "data.batch_size")
    if world and world > 1 and batch % world:
        raise LctError(
            f"data.batch_size={batch} (the global batch) does not split evenly over the {world} processes "
            f"(trainer.devices x trainer.num_nodes); set data.batch_size to a multiple of {world}, e.g. "
            f"data.batch_size={max(world, batch // world * world)}"
        )
