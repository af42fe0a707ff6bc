"""ConsistencyModule: orchestration only; the method is the objective (lct.core.ConsistencyObjective, or
lct.core.EDMObjective for the diffusion baseline, whose student is an EDM Denoiser)."""

from __future__ import annotations

import copy
import functools
import logging
import time
from pathlib import Path

import lightning as L
import torch
from torch import nn

from lct import core
from lct.errors import LctError
from lct.io.checkpoint import ema_key, selected_ema, weight_prefixes
from lct.train import preemption

log = logging.getLogger(__name__)


class ConsistencyModule(L.LightningModule):
    """The student (f_theta, or D_theta for EDM), its evaluation EMAs, and the objective; logs and skips
    non-finite steps. `init_from` describes the EDM checkpoint the student started from (lct.io.checkpoint)."""

    def __init__(
        self,
        student: nn.Module,
        objective: nn.Module,
        optimizer,
        ema: dict,
        latent_shape,
        log_every: int = 25,
        max_nonfinite: int = 20,
        run_config: dict | None = None,
        init_from: dict | None = None,
        total_steps: int | None = None,
        lr_cooldown: float = 0.0,
    ):
        super().__init__()
        self.student, self.objective, self.ema_cfg = student, objective, ema
        # Evaluation EMAs (paper: 0.99993) are parameters-only copies, excluded from the optimizer.
        self.emas = nn.ModuleDict({ema_key(d): copy.deepcopy(student).requires_grad_(False) for d in ema["decays"]})
        self.optimizer_factory, self.latent_shape = optimizer, tuple(int(s) for s in latent_shape)
        self.log_every, self.max_nonfinite, self.run_config = log_every, max_nonfinite, run_config or {}
        self.nonfinite_run = self.nonfinite_total = 0
        self.last_finite_step: int | None = None
        self._skipped, self._t_last, self._step = False, None, 0
        self.stop_now = False  # a stop signal reached some rank before this step ended (lct.train.preemption)
        # Seconds in the training loop summed over every attempt of the run (a resume adds to the stored
        # sum); timed_from_step > 0 when the run resumed from a checkpoint written before lct kept the sum.
        self.train_seconds, self.timed_from_step, self._t_start = 0.0, 0, None
        self.init_from = init_from
        if lr_cooldown and not total_steps:
            raise ValueError("an lr cooldown needs the run's total_steps")
        self.total_steps, self.lr_cooldown = total_steps, lr_cooldown

    @property
    def noise_levels(self) -> core.NoiseLevels:
        return self.objective.levels

    @property
    def kind(self) -> str:
        """ "consistency" or "diffusion": which sampler `generate` runs (lct.core.sampling)."""
        return self.objective.kind

    # ---------------------------------------------------------------- the step

    def training_step(self, x0: torch.Tensor, batch_idx: int):
        self._step = self.global_step
        world = self.trainer.world_size
        gather = (lambda t: self.all_gather(t).flatten(0, 1)) if world > 1 else None
        out = self.objective.step(self.student, x0, self._step, self.global_rank, world, gather)
        if not out.finite:
            log.warning("step %d: %s", self._step, out.error)
        # One all-reduce for both decisions, so that every rank skips, and stops (lct.train.preemption), together.
        nonfinite, self.stop_now = self._any_rank(not out.finite, preemption.STOP.signum is not None)
        if nonfinite:
            return self._skip_step(out)
        self.objective.observe(out)
        self.nonfinite_run, self._skipped, self.last_finite_step = 0, False, self._step
        self._log_step(out, x0.shape[0])
        return out.terms.loss

    def _any_rank(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag, true when it is true on any rank."""
        if self.trainer.world_size == 1:
            return flags
        t = torch.tensor([float(f) for f in flags], device=self.device)
        return tuple(bool(v) for v in (self.trainer.strategy.reduce(t, reduce_op="max") > 0).tolist())

    def _skip_step(self, out):
        """Every non-finite input or loss: skip, count, log; stop with a checkpoint after max_nonfinite in a row."""
        self.nonfinite_run += 1
        self.nonfinite_total += 1
        self._skipped = True
        self.log("train/nonfinite_total", float(self.nonfinite_total), on_step=True, sync_dist=False)
        if self.nonfinite_run >= self.max_nonfinite:
            path = Path(self.trainer.default_root_dir) / "checkpoints" / "nonfinite-stop.ckpt"
            self.trainer.save_checkpoint(path, weights_only=False)
            self.nonfinite_stop_path = str(path)  # the run record reads it (status stopped_nonfinite)
            last = (
                f"the last finite loss was at step {self.last_finite_step}"
                if self.last_finite_step is not None
                else "no step of this run had a finite loss"
            )
            raise LctError(
                f"{self.nonfinite_run} non-finite losses in a row at step {self.global_step} "
                f"({out.error or 'non-finite on another rank'}); stopped. Saved the current weights to {path} "
                f"({last}; they may already have diverged): check the data for NaN/Inf, lower the lr, or resume "
                "from an earlier checkpoint."
            )
        return None

    def _log_step(self, out, b: int) -> None:
        self.log("train/loss", out.terms.loss.detach(), prog_bar=True)
        if self.global_step % self.log_every:
            return
        now = time.perf_counter()
        rows = {**self.objective.diagnostics(out), "train/lr": self.trainer.optimizers[0].param_groups[0]["lr"]}
        if self._t_last is not None:  # a rate needs a previous timestamp: none on a run's (or resume's) first row
            rows["train/samples_per_s"] = self.log_every * b * self.trainer.world_size / (now - self._t_last)
        self._t_last = now
        self.log_dict(rows)

    def on_before_optimizer_step(self, optimizer) -> None:
        grads = [p.grad for p in self.student.parameters() if p.grad is not None]
        if grads and self.global_step % self.log_every == 0:
            self.log("train/grad_norm", torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        # Averages are updated here, inside the step, so a checkpoint written by a callback at the end
        # of this batch already holds them (on_train_batch_end runs callbacks before the module).
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if not self._skipped:
            for decay in self.ema_cfg["decays"]:
                core.ema_update(
                    self.emas[ema_key(decay)].parameters(),
                    self.student.parameters(),
                    core.ema_decay(self._step, decay, self.ema_cfg.get("warmup", False)),
                )
            self.objective.after_optimizer_step(self.student)

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=[p for p in self.student.parameters() if p.requires_grad])
        if not self.lr_cooldown:
            return optimizer
        factor = functools.partial(core.lr_factor, total_steps=self.total_steps, cooldown=self.lr_cooldown)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)  # lr at step k: lr * factor(k)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ---------------------------------------------------------------- sampling and checkpoints

    def nfe_sigmas(self, nfe: int, sigma_mid: float | None = None) -> list[float]:
        """The sigmas `generate` takes for `nfe` evaluations (consistency: 1 or 2; diffusion: any odd NFE, Heun)."""
        return core.nfe_sigmas(self.kind, self.noise_levels, nfe, sigma_mid)

    @torch.no_grad()
    def generate(self, noise: torch.Tensor, sigmas, ema: bool | float = True, generator=None) -> torch.Tensor:
        """x0 latents from `noise` (B,C,H,W) through `sigmas` (from nfe_sigmas) with an EMA or the student."""
        key = selected_ema(ema, self.ema_cfg["decays"])
        net = self.student if key is None else self.emas[key]
        was_training = net.training
        net.eval()
        try:
            return core.sample(self.kind, net, noise, sigmas, self.noise_levels, generator)
        finally:
            net.train(was_training)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # Everything sampling needs rides along: config, noise levels, latent shape, codec, weight prefixes.
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        codec = getattr(dm, "codec", None)
        checkpoint["lct"] = {
            "config": self.run_config,
            "kind": self.kind,
            "init_from": self.init_from,
            "noise_levels": self.noise_levels.state_dict(),
            "latent_shape": list(self.latent_shape),
            "codec": codec.state_dict() if codec is not None else None,
            "weights": weight_prefixes(self.ema_cfg["decays"]),
            "nonfinite_total": self.nonfinite_total,
            "last_finite_step": self.last_finite_step,
            "torch_rng": torch.get_rng_state(),
            "train_seconds": self.elapsed_train_seconds(),
            "timed_from_step": self.timed_from_step,
        }

    def on_train_start(self) -> None:
        self._t_start = time.monotonic()

    def elapsed_train_seconds(self) -> float:
        """The stored sum of earlier attempts plus this attempt's time in the training loop so far."""
        return self.train_seconds + (time.monotonic() - self._t_start if self._t_start is not None else 0.0)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("lct", {})
        self.nonfinite_total = state.get("nonfinite_total", 0)
        self.last_finite_step = state.get("last_finite_step")
        self.init_from = state.get("init_from", self.init_from)  # a resumed run keeps where it started from
        if "torch_rng" in state:
            torch.set_rng_state(state["torch_rng"])
        if "train_seconds" in state:
            self.train_seconds, self.timed_from_step = float(state["train_seconds"]), int(state["timed_from_step"])
        else:  # written before the sum was kept: time from here on only
            self.train_seconds, self.timed_from_step = 0.0, int(checkpoint.get("global_step", 0))
