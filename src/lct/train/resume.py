"""Rerunning into a run directory: which checkpoint to resume, which config the weights were trained
with, and the temporary files an interrupted checkpoint write left behind."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from lct.ckpt_io import read_checkpoint_file
from lct.core.ema import warmup_width
from lct.errors import LctError
from lct.train.callbacks import TMP_PATTERN

log = logging.getLogger(__name__)

CONFIG = "config_resolved.yaml"
# Keys that may differ between attempts of one run without changing how the weights are trained.
IGNORED_KEYS = ("paths", "ckpt_path", "resume_changes")
# Keys added after runs were already made, with the value that reproduces how those runs trained: a stored
# config without the key compares equal to a new one holding this value.
ADDED_KEYS = {
    "lr_schedule.cooldown": 0.0,  # conf/lr_schedule (constant: the paper's lr throughout)
    "trainer.flush_denormal": False,  # conf/trainer: runs before it kept denormal floats
}
# Keys whose spellings changed while their meaning did not: compared through these maps.
SAME_MEANING = {"ema.warmup": lambda v: _safe(warmup_width, v)}  # `true` is w = 10 (docs/method.md §6)
# Written when the run stops on non-finite losses: kept for inspection, never resumed automatically.
NOT_RESUMED = ("nonfinite-stop.ckpt",)


def checkpoint_dir(cfg: DictConfig) -> Path:
    return Path(cfg.paths.output_dir) / "checkpoints"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_tmp(ckpt_dir: Path) -> list[Path]:
    """Remove temporary checkpoint files of writers that no longer run (a kill mid-write); only
    files with lct's own temporary name are touched."""
    removed = []
    if not ckpt_dir.is_dir():
        return removed
    for path in sorted(ckpt_dir.iterdir()):
        match = TMP_PATTERN.match(path.name)
        if match and path.is_file() and not _pid_alive(int(match["pid"])):
            path.unlink()
            log.warning("removed %s, left by a checkpoint write that was interrupted", path)
            removed.append(path)
    return removed


def newest_checkpoint(ckpt_dir: Path) -> Path | None:
    """The readable checkpoint with the highest stored global_step (not the newest mtime); unreadable
    ones are reported and left in place."""
    best, best_step = None, -1
    for path in sorted(ckpt_dir.glob("*.ckpt")) if ckpt_dir.is_dir() else ():
        if path.name in NOT_RESUMED:
            continue
        try:
            step = int(read_checkpoint_file(path, mmap=True).get("global_step", -1))
        except LctError as err:
            log.warning("not resuming from %s: %s", path, err)
            continue
        # On a tie prefer last.ckpt, which the end of a run writes after any periodic checkpoint.
        if step > best_step or (step == best_step and path.name == "last.ckpt"):
            best, best_step = path, step
    if best is not None:
        log.info("resuming from %s (global step %d, the newest readable checkpoint in %s)", best, best_step, ckpt_dir)
    return best


def resolve_ckpt(cfg: DictConfig) -> str | None:
    """ckpt_path=auto: the newest readable checkpoint of this run directory, or None (a fresh start)."""
    if cfg.ckpt_path != "auto":
        if cfg.ckpt_path is not None and not Path(cfg.ckpt_path).is_file():
            raise LctError(
                f"ckpt_path={cfg.ckpt_path} does not exist; pass an existing .ckpt, ckpt_path=auto "
                "(resume this run directory) or ckpt_path=null (start fresh)"
            )
        return cfg.ckpt_path
    return str(newest_checkpoint(checkpoint_dir(cfg)) or "") or None


def _comparable(container: dict) -> dict:
    return {k: v for k, v in container.items() if k not in IGNORED_KEYS}


def _flatten(obj, prefix: str = "") -> dict:
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: obj}


def _safe(fn, value):
    try:
        return fn(value)
    except (TypeError, ValueError):
        return value  # not a valid value: compared as written (validation reports it)


def config_changes(old: dict, new: dict) -> list[str]:
    """`key: old -> new` for every leaf that differs (keys in IGNORED_KEYS aside). A key that an older
    config lacks compares as its ADDED_KEYS value, and the keys of SAME_MEANING compare by meaning, so a
    run made before such a change resumes without resume_changes=allow."""
    a, b = _flatten(_comparable(old)), _flatten(_comparable(new))
    missing = "<absent>"

    def same(k: str) -> bool:
        x, y = a.get(k, ADDED_KEYS.get(k, missing)), b.get(k, missing)
        norm = SAME_MEANING.get(k)
        return x == y if norm is None else norm(x) == norm(y)

    return [f"{k}: {a.get(k, missing)!r} -> {b.get(k, missing)!r}" for k in sorted(a.keys() | b.keys()) if not same(k)]


def prepare_run_dir(cfg: DictConfig) -> Path:
    """Create the run directory, clean interrupted checkpoint writes, refuse a resume whose config differs
    from the stored one (unless resume_changes=allow) and record the config, keeping every earlier one."""
    out = Path(cfg.paths.output_dir)
    ckpt_dir = checkpoint_dir(cfg)
    stored_path = out / CONFIG
    new = OmegaConf.to_container(cfg, resolve=True)
    if stored_path.is_file():
        stored = OmegaConf.to_container(OmegaConf.load(stored_path), resolve=False)
        changes = config_changes(stored, new)
        resuming = cfg.ckpt_path is not None and any(ckpt_dir.glob("*.ckpt"))
        if changes and resuming and cfg.resume_changes != "allow":
            shown = "; ".join(changes[:8]) + (f"; ... {len(changes) - 8} more" if len(changes) > 8 else "")
            raise LctError(
                f"the config differs from {stored_path}, which trained the checkpoints in {ckpt_dir}: "
                f"{shown}. Rerun with the recorded settings, choose another run directory "
                "(hydra.run.dir=...), or pass resume_changes=allow to continue with the new config"
            )
        if changes and rank_zero_only.rank == 0:
            kept = _keep_previous(stored_path)
            log.warning(
                "config changed (%d keys: %s); the previous one is kept as %s",
                len(changes),
                "; ".join(changes[:4]),
                kept,
            )
    if rank_zero_only.rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        clean_stale_tmp(ckpt_dir)
        tmp = stored_path.with_name(f".{CONFIG}.tmp-{os.getpid()}")
        OmegaConf.save(OmegaConf.create(new), tmp)
        os.replace(tmp, stored_path)
    return out


def _keep_previous(path: Path) -> Path:
    """Copy `path` to the first free <stem>.<n><suffix> (n = 1, 2, ...) next to it."""
    n = 1
    while (kept := path.with_name(f"{path.stem}.{n}{path.suffix}")).exists():
        n += 1
    kept.write_bytes(path.read_bytes())
    return kept
