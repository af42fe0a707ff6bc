"""Rerunning into a run directory: which checkpoint to resume, which config the weights were trained
with, and the temporary files an interrupted checkpoint write left behind."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from lct.core.ema import warmup_width
from lct.errors import LctError
from lct.io.ckpt_file import read_checkpoint_file
from lct.train.callbacks import TMP_PATTERN
from lct.train.rundir import make_run_dir

log = logging.getLogger(__name__)

CONFIG = "config_resolved.yaml"
# Keys that may differ between attempts of one run without changing how the weights are trained.
IGNORED_KEYS = ("paths", "ckpt_path", "resume_changes")
# A key that a stored config lacks was added by a later version of lct and is not a change, unless it is listed
# here and the new config sets it to another value than this default (a choice the user made).
ADDED_KEYS = {
    "lr_schedule.cooldown": 0.0,  # conf/lr_schedule (constant: the paper's lr throughout)
    "trainer.flush_denormal": True,  # conf/trainer: only denormal floats (|x| < 1.2e-38) are treated otherwise
    "data.skip_nonfinite": False,  # conf/data: true leaves rows out of the data order
    "method.scm.time_scale": 1000.0,  # c_noise(t) = 1000 t before the key: not the same training as t
    "method.meanflow.time_scale": 1000.0,
}
RUN_DIR = "<run dir>"  # how paths inside the run directory compare: a copied or moved run dir is the same run
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
    path = newest_checkpoint(checkpoint_dir(cfg))
    if path is None:
        return None
    check_trained_with(path, cfg)
    return str(path)


def check_trained_with(path: Path, cfg: DictConfig) -> None:
    """LctError when the checkpoint's own stored config differs from this run's (unless resume_changes=allow):
    ckpt_path=auto never continues another configuration's weights, whatever config_resolved.yaml says."""
    stored = (read_checkpoint_file(path, mmap=True).get("lct") or {}).get("config")
    if not stored or cfg.resume_changes == "allow":
        return
    changes = config_changes(stored, OmegaConf.to_container(cfg, resolve=True))
    if changes:
        raise LctError(
            f"ckpt_path=auto would resume {path}, which was trained with another config: {_shown(changes)}. "
            "Rerun with that checkpoint's settings, give this run its own directory (hydra.run.dir=...), or pass "
            "resume_changes=allow to continue those weights with this config"
        )


def _shown(changes: list[str], n: int = 8) -> str:
    return "; ".join(changes[:n]) + (f"; ... {len(changes) - n} more" if len(changes) > n else "")


def _comparable(container: dict) -> dict:
    """The config without IGNORED_KEYS, with paths below its run dir as <run dir>/... and data.root absolute."""
    paths = container.get("paths") or {}
    run_dir, launch_dir = paths.get("output_dir"), paths.get("root_dir")

    def rebase(v):
        if isinstance(v, dict):
            return {k: rebase(x) for k, x in v.items()}
        if isinstance(v, list):
            return [rebase(x) for x in v]
        if isinstance(v, str) and run_dir and (v == run_dir or v.startswith(run_dir.rstrip("/") + "/")):
            return RUN_DIR + v[len(run_dir.rstrip("/")) :]
        return v

    out = rebase({k: v for k, v in container.items() if k not in IGNORED_KEYS})
    root = (out.get("data") or {}).get("root")
    if isinstance(root, str) and launch_dir and not os.path.isabs(root):  # recorded before lct made it absolute
        out["data"] = {**out["data"], "root": os.path.normpath(os.path.join(launch_dir, root))}
    return out


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
    """`key: old -> new` for every leaf that differs (keys in IGNORED_KEYS aside). A key that the older config
    lacks is no change (a later version added it) unless ADDED_KEYS lists it with another value; a key that
    the new one lacks is no change (a later version removed it); the keys of SAME_MEANING compare by meaning,
    and paths inside the run directory relative to it, so a moved run dir resumes without resume_changes=allow."""
    a, b = _flatten(_comparable(old)), _flatten(_comparable(new))
    missing = "<absent>"

    def same(k: str) -> bool:
        if k not in b or (k not in a and k not in ADDED_KEYS):
            return True
        x, y = a.get(k, ADDED_KEYS.get(k)), b[k]
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
    has_checkpoints = any(ckpt_dir.glob("*.ckpt"))
    if cfg.ckpt_path is None and has_checkpoints and cfg.resume_changes != "allow":
        raise LctError(
            f"ckpt_path=null starts a fresh run, but {ckpt_dir} holds the checkpoints of an earlier run, which it "
            "would overwrite; resume that run with ckpt_path=auto, give the new run its own directory "
            "(hydra.run.dir=...), or pass resume_changes=allow to overwrite them"
        )
    if stored_path.is_file():
        stored = OmegaConf.to_container(OmegaConf.load(stored_path), resolve=False)
        changes = config_changes(stored, new)
        if changes and cfg.ckpt_path is not None and has_checkpoints and cfg.resume_changes != "allow":
            raise LctError(
                f"the config differs from {stored_path}, which trained the checkpoints in {ckpt_dir}: "
                f"{_shown(changes)}. Rerun with the recorded settings, choose another run directory "
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
        make_run_dir(out)
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
