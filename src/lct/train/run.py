"""Build the run from a composed Hydra config and fit it."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from lct.builders import build_datamodule, build_objective, build_student, instantiate_part, kind, noise_levels
from lct.core.edm import preconditioning_gap
from lct.errors import LctError
from lct.io.checkpoint import init_from_edm
from lct.train import preemption, resume
from lct.train.callbacks import AtomicCheckpointIO, ReleaseProcessGroup
from lct.train.module import ConsistencyModule
from lct.train.record import RunRecord
from lct.train.rundir import RunDirLock, make_run_dir
from lct.train.speed import set_flush_denormal
from lct.train.validate import validate_config

log = logging.getLogger(__name__)


def total_steps(cfg: DictConfig, num_items: int) -> int:
    """K: trainer.max_steps when set, else epochs x floor(num_items / global batch) (the authors' K)."""
    if cfg.trainer.max_steps and cfg.trainer.max_steps > 0:
        return int(cfg.trainer.max_steps)
    epochs = cfg.data.get("epochs")
    if not epochs:
        raise LctError(
            "the total steps K are unknown: trainer.max_steps is not set (-1 or null) and data.epochs is null "
            "(the curriculum N(k) needs K); pass trainer.max_steps=<steps> or data.epochs=<epochs>"
        )
    return int(epochs) * (num_items // int(cfg.data.batch_size))


def resolve_ckpt(cfg: DictConfig) -> str | None:
    """ckpt_path=auto resumes from the newest readable checkpoint in <run dir>/checkpoints (lct.train.resume)."""
    return resume.resolve_ckpt(cfg)


def build(cfg: DictConfig, datamodule=None):
    """(module, datamodule, trainer, ckpt_path) from the composed config (and its built datamodule, if any)."""
    L.seed_everything(cfg.seed, workers=True)
    if "spawn" in str(cfg.trainer.get("strategy", "")):
        # Spawned ranks receive the module's tensors through shared memory; the default file-descriptor
        # passing fails for large storages in some sandboxes (gVisor: "unable to resize file").
        torch.multiprocessing.set_sharing_strategy("file_system")
    levels = noise_levels(cfg)
    if datamodule is None:
        datamodule = build_datamodule(cfg)
    K = total_steps(cfg, datamodule.num_items)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    ckpt = resolve_ckpt(cfg)
    student = build_student(cfg)
    # Before the module copies the student into its EMAs and the teacher binds to it; a resumed run
    # continues from its own checkpoint instead.
    init = init_student(cfg, student, levels) if cfg.get("init_from") and ckpt is None else None
    module = ConsistencyModule(
        student=student,
        objective=build_objective(cfg, student, K, datamodule.latent_shape),
        optimizer=instantiate_part(cfg.optimizer, "optimizer", _convert_="all"),
        ema=resolved["ema"],
        latent_shape=datamodule.latent_shape,
        log_every=cfg.log_every,
        max_nonfinite=cfg.max_nonfinite,
        run_config=resolved,
        init_from=init,
        total_steps=K,
        lr_cooldown=cfg.lr_schedule.cooldown,
    )
    log.info("noise levels: %s", levels)
    callbacks = [instantiate_part(c, f"callbacks.{k}") for k, c in cfg.callbacks.items() if c is not None]
    if not cfg.trainer.get("enable_progress_bar", True):  # Lightning refuses a progress-bar callback then
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    callbacks += [ReleaseProcessGroup(), preemption.Preemption(), RunRecord(cfg)]
    loggers = [instantiate_part(c, f"logger.{k}") for k, c in cfg.logger.items() if c is not None] or False
    extra = {"callbacks": callbacks, "logger": loggers, "plugins": [AtomicCheckpointIO()], "max_steps": K}
    trainer = instantiate_part(cfg.trainer, "trainer", **extra)
    return module, datamodule, trainer, ckpt


def init_student(cfg: DictConfig, student, levels) -> dict:
    """init_from: the EDM checkpoint's backbone into the consistency student; logs how far the two
    preconditionings differ on the run's sigma range (they agree except near sigma_min)."""
    if kind(cfg) != "consistency":
        raise LctError(
            f"init_from={cfg.init_from} starts consistency training from an EDM checkpoint; this run is "
            f"method.kind={kind(cfg)} (to continue an EDM run, pass its checkpoint as ckpt_path)"
        )
    init = init_from_edm(cfg.init_from, student, cfg)
    gap = preconditioning_gap(levels.karras(1000), levels)
    log.info(
        "init_from %s: loaded its %s backbone (step %d); the consistency and EDM preconditionings differ by "
        "at most |dc_skip| = %.2g (at sigma %.3g) and |dc_out| = %.2g (at sigma %.3g)",
        init["path"],
        init["weights"],
        init["global_step"],
        gap.c_skip,
        gap.sigma_c_skip,
        gap.c_out,
        gap.sigma_c_out,
    )
    return {**init, "gap_c_skip": gap.c_skip, "gap_c_out": gap.c_out}


def train(cfg: DictConfig) -> Path:
    """Fit and return the run directory; Preempted (exit status 143) when a stop signal ended the run early."""
    # Before any tensor op makes the OpenMP thread pool, whose threads inherit it (lct.train.speed).
    set_flush_denormal(bool(cfg.trainer.get("flush_denormal", False)))
    validate_config(cfg)
    record_data_root(cfg)
    out = Path(cfg.paths.output_dir)
    # One run per run directory (the launching rank holds the lock); nothing is written there before it.
    with RunDirLock(make_run_dir(out)) if rank_zero_only.rank == 0 else contextlib.nullcontext():
        datamodule = build_datamodule(cfg)  # before the run directory records the config: fills the latent shape
        resume.prepare_run_dir(cfg)
        module, datamodule, trainer, ckpt = build(cfg, datamodule)
        torch.set_float32_matmul_precision("high")  # TF32 on Ampere+, as the authors' runs
        fit(trainer, module, datamodule, ckpt, out / "checkpoints")
    log.info("run directory: %s", out)
    last = out / "checkpoints" / "last.ckpt"
    if trainer.is_global_zero and last.is_file():
        # The published protocol (README "FID protocols"): 1,000 samples on noise seeds 10,000 + i against 1,000 real
        # images (for the built-in data the same fixed digits as every published number), KID on subsets of 500.
        log.info(
            "Inception FID at 1 and 2 NFE, as README's numbers: python -m lct.evaluate %s --out %s --num-samples 1000 "
            "--num-reference 1000 --seed 10000 --kid-subset-size 500",
            last,
            out / "eval",
        )
    return out


def record_data_root(cfg: DictConfig) -> None:
    """A relative data.root becomes absolute (from the launch directory) before the config is recorded, so the
    run's checkpoints find their data from any directory (lct.evaluate, lct.sample)."""
    root = OmegaConf.select(cfg, "data.root", throw_on_missing=False)
    if isinstance(root, str) and root and not os.path.isabs(os.path.expanduser(root)):
        with open_dict(cfg):
            cfg.data.root = str(launch_dir() / os.path.expanduser(root))


def launch_dir() -> Path:
    """The directory the run was launched in (Hydra's runtime cwd: with hydra.job.chdir Hydra leaves it)."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.cwd) if HydraConfig.initialized() else Path.cwd()


def fit(trainer: L.Trainer, module, datamodule, ckpt: str | None, ckpt_dir: Path) -> None:
    """trainer.fit with the stop signals routed to lct.train.preemption, in this process and its ranks."""
    previous = preemption.install_handlers()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt)
    except Exception as err:
        if preemption.STOP.signum is None:
            raise
        raise preemption.Preempted(
            f"{signal.Signals(preemption.STOP.signum).name} stopped the run before it could write a checkpoint "
            f"({type(err).__name__}); rerun the same command: it resumes from the newest checkpoint in "
            f"{ckpt_dir}"
        ) from err
    finally:
        preemption.restore_handlers(previous)
    step = preemption.preempted_step(trainer)
    if step is None:
        return
    if preemption.STOP.signum in preemption.REQUEUE_SIGNALS and rank_zero_only.rank == 0:
        preemption.requeue_slurm_job()
    raise preemption.Preempted(
        f"preempted at step {step} by a stop signal; checkpoint {ckpt_dir / 'last.ckpt'} written; rerun the "
        "same command to resume"
    )
